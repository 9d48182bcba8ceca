package bootloader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
)

// TestMain lets the test binary act as the confined prober child, as cmd/provisioner
// does, so that the loop-device test runs the real re-execution path.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ConfinedProberArg {
		var r run.Runner = run.Exec{}
		if f := os.Getenv(spyEnv); f != "" {
			r = spyRunner{r, f}
		}
		if err := ConfinedProberMain(context.Background(), r, os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// spyEnv names a file into which the child, when it runs os-prober, writes what
// os-prober can see: the partitions it walks (/sys/block/*/*[0-9] with a start file) and
// the devices in /proc/partitions, and the volumes mounted read-only for it, one
// "part NAME", "proc NAME" or "ro NAME" line each, and "lvs" when it can run lvs.
const spyEnv = "PROVISIONER_TEST_PROBER_SPY"

type spyRunner struct {
	run.Runner
	file string
}

func (s spyRunner) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	if cmd.Argv[0] == "os-prober" {
		var b strings.Builder
		parts, _ := filepath.Glob("/sys/block/*/*[0-9]")
		for _, p := range parts {
			if _, err := os.Stat(filepath.Join(p, "start")); err == nil {
				fmt.Fprintf(&b, "part %s\n", filepath.Base(p))
			}
		}
		procParts, _ := os.ReadFile("/proc/partitions")
		for _, line := range strings.Split(string(procParts), "\n")[1:] {
			if f := strings.Fields(line); len(f) == 4 {
				fmt.Fprintf(&b, "proc %s\n", f[3])
			}
		}
		// Whether os-prober's shell finds lvs (a regular executable file on PATH).
		if p, err := exec.LookPath("lvs"); err == nil {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				b.WriteString("lvs\n")
			}
		}
		// The volumes the child mounted read-only for the probers, in mount order.
		info, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(info), "\n") {
			f := strings.Fields(line)
			if len(f) > 9 && strings.HasPrefix(f[4], proberMounts+"/") && strings.HasPrefix(f[5], "ro,") {
				fmt.Fprintf(&b, "ro %s\n", filepath.Base(f[len(f)-2]))
			}
		}
		if err := os.WriteFile(s.file, []byte(b.String()), 0o644); err != nil {
			return run.Result{}, err
		}
	}
	return s.Runner.Run(ctx, cmd)
}

func TestPickKernel(t *testing.T) {
	e := func(kernel, initrd string) bootEntry {
		return bootEntry{Root: "/dev/sda2", Boot: "/dev/sda2", Kernel: kernel, Initrd: initrd}
	}
	tests := []struct {
		name    string
		entries []bootEntry
		want    Kernel
		ok      bool
	}{
		{"none", nil, Kernel{}, false},
		{"newest by version, not by string", []bootEntry{
			e("/boot/vmlinuz-6.1.0-9-amd64", "/boot/initrd.img-6.1.0-9-amd64"),
			e("/boot/vmlinuz-6.1.0-10-amd64", "/boot/initrd.img-6.1.0-10-amd64"),
			e("/boot/vmlinuz-6.1.0-10-amd64~rc1", ""),
		}, Kernel{Path: "/boot/vmlinuz-6.1.0-10-amd64", Initrd: "/boot/initrd.img-6.1.0-10-amd64", Version: "6.1.0-10-amd64"}, true},
		{"old, bak and rescue only when nothing else", []bootEntry{
			e("/boot/vmlinuz-7.0.old", ""),
			e("/boot/vmlinuz-0-rescue-abc", "/boot/initramfs-0-rescue-abc.img"),
			e("/boot/vmlinuz-5.10", ""),
		}, Kernel{Path: "/boot/vmlinuz-5.10", Version: "5.10"}, true},
		{"old as a last resort", []bootEntry{
			e("/boot/vmlinuz-7.0.old", ""),
			e("/boot/vmlinuz-6.0.bak", ""),
		}, Kernel{Path: "/boot/vmlinuz-7.0.old", Version: "7.0.old"}, true},
		{"unversioned names last", []bootEntry{
			e("/vmlinuz", "/initrd.img"),
			e("/boot/vmlinux-4.19", ""),
		}, Kernel{Path: "/boot/vmlinux-4.19", Version: "4.19"}, true},
		{"unversioned only", []bootEntry{e("/vmlinuz", "/initrd.img")}, Kernel{Path: "/vmlinuz", Initrd: "/initrd.img", Version: "vmlinuz"}, true},
		{"vmlinux beats an older vmlinuz", []bootEntry{
			e("/boot/vmlinuz-6.1", ""),
			e("/boot/vmlinux-6.2", ""),
		}, Kernel{Path: "/boot/vmlinux-6.2", Version: "6.2"}, true},
		{"initrd as ProbeRoot prefers it", []bootEntry{
			e("/boot/vmlinuz-6.1", "/boot/initrd-6.1"),
			e("/boot/vmlinuz-6.1", "/boot/initrd.img-6.1.old-dkms"),
			e("/boot/vmlinuz-6.1", "/boot/initramfs-6.1.img"),
		}, Kernel{Path: "/boot/vmlinuz-6.1", Initrd: "/boot/initramfs-6.1.img", Version: "6.1"}, true},
		{"else the first initrd", []bootEntry{
			e("/boot/vmlinuz-6.1", ""),
			e("/boot/vmlinuz-6.1", "/boot/initrd.img-6.1.old-dkms"),
			e("/boot/vmlinuz-6.1", "/boot/initrd.img-6.1.dpkg-bak"),
		}, Kernel{Path: "/boot/vmlinuz-6.1", Initrd: "/boot/initrd.img-6.1.old-dkms", Version: "6.1"}, true},
		{"same version: the path breaks the tie", []bootEntry{
			e("/vmlinuz-6.1", ""),
			e("/boot/vmlinuz-6.1", ""),
		}, Kernel{Path: "/vmlinuz-6.1", Version: "6.1"}, true},
	}
	for _, tt := range tests {
		got, ok := pickKernel(tt.entries)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
		// Order of the lines must not matter.
		rev := slices.Clone(tt.entries)
		slices.Reverse(rev)
		if got2, _ := pickKernel(rev); got2.Path != got.Path || got2.Version != got.Version {
			t.Errorf("%s: reversed input chose %+v, not %+v", tt.name, got2, got)
		}
	}
}

// TestProbeFake drives Probe with a canned child: the argv and namespace it asks for,
// canonical keys, roots without kernels left out, names cleaned.
func TestProbeFake(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Stand-ins for device nodes: a link to a "dm-3", as /dev/mapper/vg-root is one.
	dm := filepath.Join(dir, "dm-3")
	part := filepath.Join(dir, "loop4p4")
	for _, f := range []string{dm, part} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mapper := filepath.Join(dir, "vg-root")
	if err := os.Symlink("dm-3", mapper); err != nil {
		t.Fatal(err)
	}
	rep := proberReport{Format: proberFormat, Roots: []proberRoot{
		{Partition: part, Name: "Tiny\ttest\x1b image A", Entries: []bootEntry{
			{Root: part, Boot: part, Kernel: "/boot/vmlinuz-6.1.0-9-test", Initrd: "/boot/initrd.img-6.1.0-9-test"},
			{Root: part, Boot: part, Kernel: "/boot/vmlinuz-6.1.0-10-test", Initrd: "/boot/initrd.img-6.1.0-10-test"},
		}},
		{Partition: mapper, Name: "", Entries: []bootEntry{{Root: mapper, Boot: "/dev/sda1", Kernel: "/boot/vmlinuz-5.10"}}},
		{Partition: filepath.Join(dir, "failed"), Name: "C", Error: "exit status 1"},
		{Partition: filepath.Join(dir, "empty"), Name: "D"},
	}}
	child, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	f := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		return run.Result{Stdout: child}, nil
	}}
	p := OSProber{Run: f, Self: []string{"/proc/self/exe", "--flag"}}
	got, err := p.Probe(context.Background(), ProberVolumes{Roots: []string{"/dev/loop4p4", "/dev/dm-3"}, Boot: []string{"/dev/loop4p5"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Kernel{
		part: {Path: "/boot/vmlinuz-6.1.0-10-test", Initrd: "/boot/initrd.img-6.1.0-10-test", Version: "6.1.0-10-test", OSName: "Tiny test image A"},
		dm:   {Path: "/boot/vmlinuz-5.10", Version: "5.10", OSName: "Linux"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Probe:\n got %+v\nwant %+v", got, want)
	}
	calls := f.Calls()
	if len(calls) != 1 || !calls[0].MountNamespace ||
		!slices.Equal(calls[0].Argv, []string{"/proc/self/exe", "--flag", ConfinedProberArg, "/dev/loop4p4", "/dev/dm-3", "boot=/dev/loop4p5"}) {
		t.Errorf("calls: %+v", calls)
	}
}

func TestProbeFakeErrors(t *testing.T) {
	ctx := context.Background()
	answer := func(stdout string, err error) *run.Fake {
		return &run.Fake{Handler: func(c run.Call) (run.Result, error) {
			return run.Result{Stdout: []byte(stdout)}, err
		}}
	}

	f := answer("", nil)
	got, err := OSProber{Run: f, Self: []string{"self"}}.Probe(ctx, ProberVolumes{})
	if err != nil || len(got) != 0 || len(f.Calls()) != 0 {
		t.Errorf("no disks: %v, %v, %d calls", got, err, len(f.Calls()))
	}
	if _, err := (OSProber{Run: f}).Probe(ctx, ProberVolumes{Roots: []string{"/dev/sda"}}); err == nil {
		t.Error("no Self: accepted")
	}
	if _, err := (OSProber{Run: f, Self: []string{"self"}}).Probe(ctx, ProberVolumes{Roots: []string{"/dev/sda1"}, Boot: []string{"sda2"}}); err == nil {
		t.Error("a relative disk path: accepted")
	}

	childErr := run.Fail([]string{"self", ConfinedProberArg, "/dev/sda"}, 1, "confined os-prober: refusing ...\n")
	_, err = OSProber{Run: answer("", childErr), Self: []string{"self"}}.Probe(ctx, ProberVolumes{Roots: []string{"/dev/sda"}})
	var re *run.Error
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "/dev/sda") || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("a failing child: %v", err)
	}

	_, err = OSProber{Run: answer(`{"format":99}`, nil), Self: []string{"self"}}.Probe(ctx, ProberVolumes{Roots: []string{"/dev/sda"}})
	if err == nil || !strings.Contains(err.Error(), "format 99") {
		t.Errorf("another format: %v", err)
	}

	// A root os-prober named that is gone by the time the parent looks: no silent wrong key.
	missing := fmt.Sprintf(`{"format":%d,"roots":[{"partition":"/dev/provisioner-test-missing","name":"X","entries":[{"root":"/dev/x","boot":"/dev/x","kernel":"/boot/vmlinuz-1"}]}]}`, proberFormat)
	if _, err := (OSProber{Run: answer(missing, nil), Self: []string{"self"}}).Probe(ctx, ProberVolumes{Roots: []string{"/dev/sda"}}); err == nil {
		t.Error("an unresolvable root: accepted")
	}
}

// TestOSProberOnLoopDisks runs the real os-prober and linux-boot-prober through Probe on
// a loop disk with two fake Linux roots, one of them with a separate /boot volume, and a
// fourth partition holding a Linux tree that is not a root given to Probe (as a utility
// image's volume would), while a second loop disk holding another root is attached but
// not given: Probe must report exactly the two roots, as ProbeRoot sees the same trees,
// and os-prober must not even have looked at the rest.
func TestOSProberOnLoopDisks(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
	if !OSProberAvailable() {
		t.Skip("os-prober or linux-boot-prober is not installed")
	}
	for _, tool := range []string{"sgdisk", "mkfs.ext4", "grub-mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (make test installs it)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	ctx := context.Background()
	dir := t.TempDir()
	sh := func(argv ...string) {
		t.Helper()
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}

	const bootUUID = "5d2b7c1e-3f4a-4b8e-9c0d-1e2f3a4b5c6d"
	ld := map[string]string{"lib64/ld-linux-x86-64.so.2": "", "boot/": ""}
	files := func(m ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, x := range m {
			for k, v := range x {
				out[k] = v
			}
		}
		return out
	}
	treeA := files(ld, map[string]string{
		"etc/os-release":                "NAME=FakeA\nPRETTY_NAME=\"Fake A: \\\"one\\\" 1.0\"\n",
		"boot/vmlinuz-6.1.0-1-test":     "kernel 1",
		"boot/initrd.img-6.1.0-1-test":  "initrd 1",
		"boot/vmlinuz-6.1.0-10-test":    "kernel 10",
		"boot/initrd.img-6.1.0-10-test": "initrd 10",
		"boot/vmlinuz-6.1.0-9-test":     "kernel 9",
		"boot/vmlinuz-7.0.0-1-test.old": "old kernel",
	})
	bootFiles := map[string]string{
		"vmlinuz-6.1.0-1-test":    "kernel B",
		"initrd.img-6.1.0-1-test": "initrd B",
	}
	treeB := files(ld, map[string]string{
		"etc/os-release": "PRETTY_NAME='Fake B'\n",
		"etc/fstab":      "# separate /boot\nUUID=" + bootUUID + " /boot ext4 defaults 0 2\n",
	})
	viewB := files(treeB) // root B as the booted system sees it, for ProbeRoot
	for k, v := range bootFiles {
		viewB["boot/"+k] = v
	}
	treeOther := files(ld, map[string]string{
		"etc/os-release":               "PRETTY_NAME=\"Someone else's\"\n",
		"boot/vmlinuz-6.1.0-1-test":    "other kernel",
		"boot/initrd.img-6.1.0-1-test": "other initrd",
	})
	write := func(name string, m map[string]string) string {
		t.Helper()
		root := filepath.Join(dir, name)
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		for p, content := range m {
			full := filepath.Join(root, p)
			if strings.HasSuffix(p, "/") {
				if err := os.MkdirAll(full, 0o755); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	dirA, dirB, dirBoot, dirView, dirOther := write("a", treeA), write("b", treeB), write("boot", bootFiles), write("view-b", viewB), write("other", treeOther)

	// 16 MiB partitions at fixed sectors, so that the BLKPG layout matches sgdisk's.
	const sect, psize = 512, 32768
	attach := func(name string, nparts int) (*disk.Loop, []string) {
		t.Helper()
		img := filepath.Join(dir, name+".img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, int64((2048+nparts*psize+2048)*sect)); err != nil {
			t.Fatal(err)
		}
		args := []string{"sgdisk", "-o"}
		var parts []disk.Part
		for i := 1; i <= nparts; i++ {
			start := uint64(2048 + (i-1)*psize)
			args = append(args, fmt.Sprintf("-n%d:%d:%d", i, start, start+psize-1), fmt.Sprintf("-t%d:8300", i))
			parts = append(parts, disk.Part{Number: i, Start: start * sect, Size: psize * sect})
		}
		sh(append(args, img)...)
		loop, err := disk.AttachLoop(ctx, img, sect)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// Fails when a partition is still open, e.g. by a grub-mount left running.
			if err := loop.Detach(ctx); err != nil {
				t.Errorf("detach: %v", err)
			}
		})
		if err := (disk.Sys{}).Reread(ctx, loop.Path, parts); err != nil {
			t.Fatal(err)
		}
		var paths []string
		for i := 1; i <= nparts; i++ {
			paths = append(paths, disk.PartitionPath(loop.Path, i))
		}
		return loop, paths
	}
	target, tparts := attach("target", 4)
	other, oparts := attach("other", 1)
	sh("mkfs.ext4", "-q", "-F", "-L", "rootA", "-d", dirA, tparts[0])
	sh("mkfs.ext4", "-q", "-F", "-L", "rootB", "-d", dirB, tparts[1])
	sh("mkfs.ext4", "-q", "-F", "-L", "bootB", "-U", bootUUID, "-d", dirBoot, tparts[2])
	sh("mkfs.ext4", "-q", "-F", "-L", "other", "-d", dirOther, oparts[0])
	sh("mkfs.ext4", "-q", "-F", "-L", "utility", "-d", dirOther, tparts[3])

	want := map[string]Kernel{}
	for i, tree := range []string{dirA, dirView} {
		k, err := ProbeRoot(tree)
		if err != nil {
			t.Fatal(err)
		}
		want[tparts[i]] = k
	}
	if want[tparts[0]].Version != "6.1.0-10-test" || want[tparts[0]].OSName != `Fake A: "one" 1.0` {
		t.Fatalf("ProbeRoot on root A: %+v", want[tparts[0]])
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := OSProber{Run: run.Exec{}, Self: []string{exe}}
	spy := filepath.Join(dir, "spy")
	t.Setenv(spyEnv, spy)
	start := time.Now()
	got, err := p.Probe(ctx, ProberVolumes{Roots: tparts[:2], Boot: tparts[2:3]})
	t.Logf("os-prober confined to 2 roots of %s took %v", target.Path, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Probe(%s):\n got %+v\nwant %+v", target.Path, got, want)
	}
	// What os-prober saw: the two roots as candidates, the /boot volume for blkid only,
	// nothing else (so the absences above are not only the child's final filter).
	seen, err := os.ReadFile(spy)
	if err != nil {
		t.Fatal(err)
	}
	var wantSeen strings.Builder
	for _, p := range tparts[:2] {
		fmt.Fprintf(&wantSeen, "part %s\n", filepath.Base(p))
	}
	wantSeen.WriteString("proc " + filepath.Base(target.Path) + "\n")
	for _, p := range tparts[:3] {
		fmt.Fprintf(&wantSeen, "proc %s\n", filepath.Base(p))
	}
	// The roots and the /boot volume are mounted read-only before os-prober runs, so
	// neither prober mounts them through grub-mount.
	for _, p := range tparts[:3] {
		fmt.Fprintf(&wantSeen, "ro %s\n", filepath.Base(p))
	}
	if string(seen) != wantSeen.String() {
		t.Errorf("os-prober saw:\n%s\nwant\n%s", seen, wantSeen.String())
	}

	// The other disk's root is findable: its absence above is the confinement's doing.
	start = time.Now()
	got, err = p.Probe(ctx, ProberVolumes{Roots: oparts})
	t.Logf("os-prober confined to the root of %s took %v", other.Path, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := got[oparts[0]]; len(got) != 1 || !ok || k.OSName != "Someone else's" || k.Path != "/boot/vmlinuz-6.1.0-1-test" {
		t.Errorf("Probe(%s): %+v", other.Path, got)
	}

	// Nothing of the child's namespace may show in ours.
	if _, err := os.Stat(filepath.Join(sysBlockDir, filepath.Base(other.Path))); err != nil {
		t.Errorf("our /sys/block lost %s: %v", other.Path, err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"provisioner-sysblock", "provisioner-os-prober", proberState} {
		if strings.Contains(string(mounts), leak) {
			t.Errorf("%s is mounted in the test's namespace", leak)
		}
	}
}
