package engine

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/partition"
)

// multibootPartition returns the number of the multiboot partition of the case's disk.
func (c *reloadCase) multibootPartition() int {
	for _, p := range c.layout.Disks[0].Partitions {
		if p.Role == partition.RoleMultiboot {
			return p.Number
		}
	}
	return 0
}

// putRamdisk writes a (fake) kept ramdisk onto the case's multiboot partition.
func (c *reloadCase) putRamdisk(t *testing.T) {
	t.Helper()
	withPartition(t, c.img, c.layout.Disks[0], c.multibootPartition(), func(t *testing.T, mnt string) {
		for name, data := range map[string]string{
			bootloader.RamdiskKernel: "kernel", bootloader.RamdiskInitrd: "initramfs", bootloader.RamdiskCmdline: "console=ttyS0,115200 panic=10\n",
		} {
			p := filepath.Join(mnt, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// ramdiskCfg reads ramdisk.cfg off the multiboot partition ("" when missing).
func (c *reloadCase) ramdiskCfg(t *testing.T) string {
	t.Helper()
	var cfg []byte
	withPartition(t, c.img, c.layout.Disks[0], c.multibootPartition(), func(t *testing.T, mnt string) {
		cfg, _ = os.ReadFile(filepath.Join(mnt, bootloader.RamdiskCfgPath))
	})
	return string(cfg)
}

// TestStageReloadViaRamdisk: the staging writes the ramdisk's entry with the reload's
// words and makes grub boot it once; refusals write nothing.
func TestStageReloadViaRamdisk(t *testing.T) {
	c := newReloadCase(t)
	c.srv.blobs["gamma.tar.gz"] = gzipBytes(rootfsTar(t, "gamma"))
	stage := func(t *testing.T, blob string, v ViaRamdiskOptions, edit func(*ReloadOptions)) (*StagedReload, error) {
		t.Helper()
		o := c.options("beta", blob, "")
		o.Tries = 2
		if edit != nil {
			edit(&o)
		}
		res, err := StageReloadViaRamdisk(context.Background(), o, v)
		if m := mountedUnder(t, c.tmp); len(m) > 0 {
			t.Errorf("still mounted: %v", m)
		}
		noLoopFor(t, c.img)
		return res, err
	}
	_, envBefore, histBefore := c.bootFiles(t)
	unchanged := func(t *testing.T, what string) {
		t.Helper()
		if _, env, hist := c.bootFiles(t); env != envBefore || hist != histBefore || c.ramdiskCfg(t) != "" {
			t.Errorf("%s: the boot files changed:\n%s\n%s", what, env, hist)
		}
	}

	if _, err := stage(t, "gamma.tar.gz", ViaRamdiskOptions{}, nil); ExitCode(err) != ExitEnvironment || !strings.Contains(fmt.Sprint(err), "--ramdisk-url") {
		t.Errorf("no ramdisk kept: exit %d: %v", ExitCode(err), err)
	}
	unchanged(t, "no ramdisk")
	c.putRamdisk(t)
	if _, err := stage(t, "missing.tar.gz", ViaRamdiskOptions{}, nil); ExitCode(err) != ExitImage {
		t.Errorf("404: exit %d: %v", ExitCode(err), err)
	}
	unchanged(t, "404")
	long := ViaRamdiskOptions{Report: RamdiskReport{Callback: "http://conductor/events", Token: strings.Repeat("t", MaxCmdline)}}
	if _, err := stage(t, "gamma.tar.gz", long, nil); ExitCode(err) != ExitFailure || !strings.Contains(fmt.Sprint(err), "over the kernel's 2047") {
		t.Errorf("long token: exit %d: %v", ExitCode(err), err)
	}
	if _, err := stage(t, "gamma.tar.gz", ViaRamdiskOptions{}, func(o *ReloadOptions) { o.ImageName = `say "hi"` }); ExitCode(err) != ExitFailure || !strings.Contains(fmt.Sprint(err), "--image-name") {
		t.Errorf("quote: exit %d: %v", ExitCode(err), err)
	}
	unchanged(t, "refused words")

	var kexecArgs []string
	kexec := func(_ context.Context, kernel, initrd, cmdline string) error {
		k, _ := os.ReadFile(kernel)
		i, _ := os.ReadFile(initrd)
		kexecArgs = []string{string(k), string(i), cmdline}
		return nil
	}
	report := RamdiskReport{Callback: "http://conductor/events", Token: "tok"}
	res, err := stage(t, "gamma.tar.gz", ViaRamdiskOptions{Report: report, Kexec: kexec}, func(o *ReloadOptions) { o.ImageName = "Gamma 2" })
	if err != nil {
		t.Fatal(err)
	}
	want := `console=ttyS0,115200 panic=10 provisioner.reload=beta provisioner.url=` + c.srv.URL + `/gamma.tar.gz provisioner.image_name="Gamma 2" provisioner.tries=2 provisioner.kept=1 provisioner.callback=http://conductor/events provisioner.token=tok`
	if res.Cmdline != want || !res.Kexec || res.Element.OSID != "beta" {
		t.Errorf("staged %+v\nwant cmdline %s", res, want)
	}
	if len(kexecArgs) != 3 || kexecArgs[0] != "kernel" || kexecArgs[1] != "initramfs" || kexecArgs[2] != want {
		t.Errorf("kexec got %q", kexecArgs)
	}
	_, env, hist := c.bootFiles(t)
	if env != envBefore || !strings.Contains(lastLine(hist), "the deploy ramdisk is loaded for kexec and reloads it") {
		t.Errorf("after --kexec: grubenv\n%s\nhistory %s", env, lastLine(hist))
	}
	if cfg := c.ramdiskCfg(t); !strings.Contains(cfg, "provisioner.reload=beta") {
		t.Errorf("ramdisk.cfg:\n%s", cfg)
	}

	if _, err := stage(t, "gamma.tar.gz", ViaRamdiskOptions{Report: report}, nil); err != nil {
		t.Fatal(err)
	}
	bi, env, hist := c.bootFiles(t)
	if !strings.Contains(env, "next_entry="+bootloader.RamdiskEntryID+"\n") || bi.PendingOnce == nil || *bi.PendingOnce != bootloader.RamdiskGrubID {
		t.Errorf("one-shot: grubenv\n%s\npending_once %v", env, bi.PendingOnce)
	}
	if !strings.Contains(lastLine(hist), `"operation":"boot-ramdisk --once"`) {
		t.Errorf("history %s", lastLine(hist))
	}
	if bi.Elements[1].State != "" || bi.CurrentElement != 0 {
		t.Errorf("staging changed the elements: %+v", bi)
	}
}

// TestReloadInRamdiskSingleImage is the ramdisk's reload of a single-image node: the
// ramdisk's entry is the default while the root is rewritten, the trial falls back to it,
// its entry loses the reload's words before the trial is armed, and grub.cfg keeps
// sourcing it. A failed reload leaves the ramdisk the default.
func TestReloadInRamdiskSingleImage(t *testing.T) {
	dc := newDeployCase(t)
	ramdiskBlobs(dc.srv, fakeRamdisk(1<<20, 5), fakeRamdisk(1<<20, 6))
	res, img, err := dc.deployWith(t, ramdiskDoc(dc.srv.URL, ""), func(o *DeployOptions) {
		o.Boot.KernelCmdline = func() (string, error) { return fakeCmdline, nil }
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &reloadCase{deployCase: dc, img: img, layout: res.Layout}
	gamma := gzipBytes(rootfsTar(t, "gamma"))
	c.srv.blobs["gamma.tar.gz"] = gamma

	if _, err := c.reload(t, "alpha", "gamma.tar.gz", "", nil); ExitCode(err) != ExitFailure || !strings.Contains(fmt.Sprint(err), "only image") {
		t.Errorf("a trial of the only image outside the ramdisk: exit %d: %v", ExitCode(err), err)
	}
	after := []string{"console=ttyS0", "provisioner.kept=1", "provisioner.callback=http://conductor/events"}
	inRamdisk := func(o *ReloadOptions) { o.InRamdisk, o.RamdiskAfter, o.Tries = true, after, 2 }
	r, err := c.reload(t, "alpha", "gamma.tar.gz", "", inRamdisk)
	if err != nil {
		t.Fatal(err)
	}
	if r.MovedDefault == nil || r.MovedDefault.GrubID != bootloader.RamdiskGrubID || r.Tries != 2 {
		t.Errorf("result %+v", r)
	}
	bi, env, hist := c.bootFiles(t)
	if bi.Trial == nil || bi.Trial.Previous != bootloader.RamdiskGrubID || bi.CurrentElement != 0 {
		t.Errorf("boot info: trial %+v, current %d", bi.Trial, bi.CurrentElement)
	}
	if !strings.Contains(env, "saved_entry="+bootloader.RamdiskEntryID+"\n") || !strings.Contains(env, "trial_entry=provisioner-alpha\n") {
		t.Errorf("grubenv:\n%s", env)
	}
	if !strings.Contains(hist, "default moved from alpha to the deploy ramdisk while alpha is reloaded") {
		t.Errorf("history:\n%s", hist)
	}
	if cfg := c.ramdiskCfg(t); !strings.Contains(cfg, "linux /ramdisk/vmlinuz console=ttyS0 provisioner.kept=1 provisioner.callback=http://conductor/events\n") {
		t.Errorf("ramdisk.cfg after the reload:\n%s", cfg)
	}
	withPartition(t, c.img, c.layout.Disks[0], c.multibootPartition(), func(t *testing.T, mnt string) {
		cfg, _ := os.ReadFile(filepath.Join(mnt, "boot/grub/grub.cfg"))
		if !strings.Contains(string(cfg), `source "$prefix/ramdisk.cfg"`) || !strings.Contains(string(cfg), `if [ "${saved_entry}" = provisioner-ramdisk ] ; then set fallback=1 ; fi`) {
			t.Errorf("grub.cfg lost the ramdisk:\n%s", cfg)
		}
	})

	// A download cut for good: the image is marked failed, the ramdisk stays the default.
	c.srv.cut["gamma.tar.gz"] = len(gamma) / 2
	c.srv.noResume["gamma.tar.gz"] = true
	c.srv.whole["gamma.tar.gz"] = 1 // the preflight's
	if _, err := c.reload(t, "alpha", "gamma.tar.gz", fmt.Sprintf("sha256:%x", sha256.Sum256(gamma)), inRamdisk); ExitCode(err) != ExitImage {
		t.Fatalf("cut download: exit %d: %v", ExitCode(err), err)
	}
	bi, env, _ = c.bootFiles(t)
	if bi.Elements[0].State != bootloader.ElementFailed || !strings.Contains(env, "saved_entry="+bootloader.RamdiskEntryID+"\n") || strings.Contains(env, "trial_entry=provisioner-alpha") {
		t.Errorf("after the failed reload: %+v\n%s", bi.Elements[0], env)
	}
}
