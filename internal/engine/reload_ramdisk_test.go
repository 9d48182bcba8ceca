package engine

import (
	"context"
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
