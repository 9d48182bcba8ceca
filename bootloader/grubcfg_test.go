package bootloader

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

var update = flag.Bool("update", false, "rewrite the golden grub.cfg files in testdata/")

var fakeKernel = Kernel{
	Path:    "/boot/vmlinuz-6.1.0-56-cloud-amd64",
	Initrd:  "/boot/initrd.img-6.1.0-56-cloud-amd64",
	Version: "6.1.0-56-cloud-amd64",
	OSName:  "Debian GNU/Linux 12 (bookworm)",
}

// planExample loads and plans ../examples/<file>.
func planExample(t *testing.T, file string) (*schema.Spec, *partition.Layout) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec, _, err := schema.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	l, err := partition.Plan(spec, nil, "golden")
	if err != nil {
		t.Fatal(err)
	}
	return spec, l
}

// configFor builds the menu of a plan with fakeKernel in every root image.
func configFor(t *testing.T, spec *schema.Spec, l *partition.Layout) Config {
	t.Helper()
	kernels := map[string]Kernel{}
	for _, im := range l.Images {
		if im.Target == "/" {
			kernels[im.Name] = fakeKernel
		}
	}
	entries, err := Entries(l, kernels, spec.KernelParams())
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Timeout: spec.GrubTimeout(), Entries: entries, Default: -1, Serial: true, Ramdisk: spec.KeepsRamdisk()}
	for i, e := range entries {
		if e.ID == menuEntryID(l.BootImage) {
			c.Default = i
		}
	}
	if c.Default < 0 {
		t.Fatalf("no entry for the boot image %s", l.BootImage)
	}
	return c
}

func TestGoldenGrubCfg(t *testing.T) {
	files, err := filepath.Glob("../examples/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 6 {
		t.Fatalf("found %d examples, want at least 6", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			spec, l := planExample(t, file)
			c := configFor(t, spec, l)
			checkEntries(t, l, c)
			got := Render(c)
			if !bytes.Equal(got, Render(c)) {
				t.Fatal("Render is not deterministic")
			}
			golden := filepath.Join("testdata", name+".grub.cfg")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("grub.cfg differs from %s (run with -update if intended):\n%s", golden, got)
			}
			scriptCheck(t, got)
		})
	}
}

// checkEntries asserts what the golden files show, so a careless -update cannot hide it.
func checkEntries(t *testing.T, l *partition.Layout, c Config) {
	t.Helper()
	var roots []*partition.Image
	for _, im := range l.Images {
		if im.Target == "/" {
			roots = append(roots, im)
		} else {
			for _, e := range c.Entries {
				if e.ID == menuEntryID(im.Name) {
					t.Errorf("utility image %s has an entry", im.Name)
				}
			}
		}
	}
	if len(c.Entries) != len(roots) {
		t.Fatalf("%d entries for %d root images", len(c.Entries), len(roots))
	}
	for i, im := range roots {
		e := c.Entries[i]
		if e.ID != menuEntryID(im.Name) || !strings.HasSuffix(e.Title, "("+im.Name+")") {
			t.Errorf("entry %d is %s %q, want image %s", i, e.ID, e.Title, im.Name)
		}
		if im.Boot && c.Default != i {
			t.Errorf("Default = %d, boot image %s is entry %d", c.Default, im.Name, i)
		}
		if !strings.HasPrefix(e.Cmdline, "root=UUID="+im.RootUUID+" ro") {
			t.Errorf("entry %s cmdline %q", e.ID, e.Cmdline)
		}
		var boot, root *partition.Mount
		for j := range im.Mounts {
			switch im.Mounts[j].Path {
			case "/boot":
				boot = &im.Mounts[j]
			case "/":
				root = &im.Mounts[j]
			}
		}
		want := root
		if boot != nil {
			want = boot
			if strings.HasPrefix(e.Kernel, "/boot") || strings.HasPrefix(e.Initrd, "/boot") {
				t.Errorf("entry %s: separate /boot, but paths %s %s", e.ID, e.Kernel, e.Initrd)
			}
		} else if !strings.HasPrefix(e.Kernel, "/boot/") {
			t.Errorf("entry %s: kernel %s not under /boot", e.ID, e.Kernel)
		}
		if e.BootUUID != want.FSUUID {
			t.Errorf("entry %s searches %s, want %s (%s)", e.ID, e.BootUUID, want.FSUUID, want.Path)
		}
		mods := strings.Join(e.Modules, " ")
		if strings.HasPrefix(want.Device, "/dev/md/") != strings.Contains(mods, "mdraid1x") {
			t.Errorf("entry %s on %s: modules %s", e.ID, want.Device, mods)
		}
		isLV := strings.HasPrefix(want.Device, "/dev/") && !strings.HasPrefix(want.Device, "/dev/md/")
		if isLV != strings.Contains(mods, "lvm") {
			t.Errorf("entry %s on %s: modules %s", e.ID, want.Device, mods)
		}
	}
}

// scriptCheck runs grub-script-check on cfg when grub-common is installed.
func scriptCheck(t *testing.T, cfg []byte) {
	t.Helper()
	bin, err := exec.LookPath("grub-script-check")
	if err != nil {
		t.Log("grub-script-check not installed; syntax not checked")
		return
	}
	p := filepath.Join(t.TempDir(), "grub.cfg")
	if err := os.WriteFile(p, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, p).CombinedOutput(); err != nil {
		t.Errorf("grub-script-check: %v\n%s\n%s", err, out, cfg)
	}
}

func TestGoldenExamplesCovered(t *testing.T) {
	// One example per layout the menu must serve: two roots, separate /boot, LVM, raid1, utility, UEFI.
	want := map[string]string{
		"lvm":                  "insmod lvm",
		"raid1":                "insmod mdraid1x",
		"utility-image":        "(ubuntu)",
		"uefi":                 "insmod xfs",
		"multiboot-two-images": "menuentry",
		"two-disks-shared":     "menuentry",
		"single-image-ramdisk": `source "$prefix/ramdisk.cfg"`,
	}
	for name, s := range want {
		b, err := os.ReadFile(filepath.Join("testdata", name+".grub.cfg"))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("%s.grub.cfg lacks %q", name, s)
		}
	}
	b, _ := os.ReadFile("testdata/lvm.grub.cfg")
	if !bytes.Contains(b, []byte("linux /vmlinuz-6.1.0-56-cloud-amd64 ")) {
		t.Errorf("lvm.grub.cfg: alpha's separate /boot not used:\n%s", b)
	}
	if b, _ := os.ReadFile("testdata/utility-image.grub.cfg"); bytes.Contains(b, []byte("utils")) {
		t.Errorf("utility image has an entry:\n%s", b)
	}
}

func TestRenderQuoting(t *testing.T) {
	c := Config{
		Timeout: 0,
		Entries: []MenuEntry{{
			ID:       menuEntryID("It's.A+b"),
			Title:    `Bob's "OS" $x; } {`,
			BootUUID: "1234-abcd",
			Kernel:   "/boot/vmlinuz-6.1 odd",
			Cmdline:  `root=UUID=1234 ro console=ttyS0,115200n8 quiet foo="a b" x=$y`,
			Modules:  []string{"part_gpt", "ext2"},
		}},
	}
	got := string(Render(c))
	for _, s := range []string{
		`menuentry 'Bob'\''s "OS" $x; } {' --id 'provisioner-it-s-a-b' {`,
		`linux '/boot/vmlinuz-6.1 odd' root=UUID=1234 ro console=ttyS0,115200n8 quiet 'foo="a b"' 'x=$y'` + "\n",
		"set default=provisioner-it-s-a-b\n",
		"set timeout=0\n",
		"terminal_output console\n",
	} {
		if !strings.Contains(got, s) {
			t.Errorf("missing %q in\n%s", s, got)
		}
	}
	if strings.Contains(got, "initrd") || strings.Contains(got, "serial") {
		t.Errorf("unexpected initrd or serial:\n%s", got)
	}
	scriptCheck(t, []byte(got))
}

func TestEntriesErrors(t *testing.T) {
	spec, l := planExample(t, "../examples/lvm.json")
	if _, err := Entries(l, map[string]Kernel{"alpha": fakeKernel}, ""); err == nil || !strings.Contains(err.Error(), "beta") {
		t.Error("missing kernel: err =", err)
	}
	// alpha has a separate /boot: a kernel outside it cannot be found by grub there.
	bad := fakeKernel
	bad.Path = "/vmlinuz"
	if _, err := Entries(l, map[string]Kernel{"alpha": bad, "beta": fakeKernel}, spec.KernelParams()); err == nil {
		t.Error("kernel outside the separate /boot accepted")
	}
	l.Images[1].Name = "ALPHA"
	if _, err := Entries(l, map[string]Kernel{"alpha": fakeKernel, "ALPHA": fakeKernel}, ""); err == nil {
		t.Error("colliding entry ids accepted")
	}
}
