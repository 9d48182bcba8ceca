package testimage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/elfdeps"
	"github.com/provisioner/provisioner/internal/run"
)

// countWriter counts bytes, so the image size is known without keeping the image.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestPrepareReal downloads (first run on a machine) or reuses the real kit and checks
// what a boot depends on. It logs the timings and sizes.
func TestPrepareReal(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads a kernel: not with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cache := DefaultCacheDir()
	start := time.Now()
	k, err := Prepare(ctx, run.Exec{}, cache)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no kernel and busybox from apt: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	start = time.Now()
	k2, err := Prepare(ctx, run.Exec{}, cache)
	if err != nil {
		t.Fatal(err)
	}
	second := time.Since(start)
	if !kitsEqual(k, k2) {
		t.Errorf("second Prepare gave %+v, first %+v", k2, k)
	}
	t.Logf("kernel %s in %s; Prepare %v, again %v", k.KernelVersion, cache, first.Round(time.Millisecond), second.Round(time.Millisecond))

	// A bzImage has the setup header magic "HdrS" at 0x202.
	f, err := os.Open(k.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, 0x202); err != nil || string(magic) != "HdrS" {
		t.Errorf("%s: %q at 0x202 (%v), want a bzImage's \"HdrS\"", k.Vmlinuz, magic, err)
	}

	gz, err := os.ReadFile(k.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	_, content := readCpioGz(t, gz)
	if content["init"] != stage1Init {
		t.Error("the initrd's /init is not the stage-1 script")
	}
	if !bytes.HasPrefix([]byte(content["bin/busybox"]), []byte("\x7fELF")) {
		t.Error("the initrd's /bin/busybox is not an ELF binary")
	}
	// The Debian 12 cloud kernel builds all six as modules.
	for _, m := range stage1Modules {
		if !bytes.HasPrefix([]byte(content["lib/modules/"+m]), []byte("\x7fELF")) {
			t.Errorf("the initrd lacks module %s", m)
		}
	}
	if len(k.Modules) != len(stage1Modules) {
		t.Errorf("kit modules %q, want all of %q", k.Modules, stage1Modules)
	}
	// It builds virtio_net and its dependencies as modules too; stage 1 loads them
	// after the block modules.
	var order []string
	for _, m := range slices.Concat(stage1Modules, netModules) {
		order = append(order, m)
		if !bytes.HasPrefix([]byte(content["lib/modules/"+m]), []byte("\x7fELF")) {
			t.Errorf("the initrd lacks module %s", m)
		}
	}
	if got, want := content["lib/modules/load-order"], strings.Join(order, "\n")+"\n"; got != want {
		t.Errorf("initrd load order %q, want %q", got, want)
	}
	if len(k.NetModules) != len(netModules) {
		t.Errorf("kit network modules %q, want all of %q", k.NetModules, netModules)
	}

	for _, m := range storageModules {
		if !slices.ContainsFunc(k.StorageModules, func(p string) bool { return filepath.Base(p) == m }) {
			t.Errorf("kit storage modules %q lack %s (the cloud kernel builds it as a module)", k.StorageModules, m)
		}
	}
	if elfdeps.FindProgram("lvm", storageToolDirs) != "" && elfdeps.FindProgram("mdadm", storageToolDirs) != "" {
		if err := k.PrepareStorage(ctx); err != nil {
			t.Fatal(err)
		}
		sgz, err := os.ReadFile(k.StorageInitrd)
		if err != nil {
			t.Fatal(err)
		}
		_, sc := readCpioGz(t, sgz)
		for _, f := range []string{"bin/lvm", "bin/mdadm", "lib/modules/dm-mod.ko", "lib/modules/raid1.ko", "lib/modules/virtio_net.ko", "lib64/ld-linux-x86-64.so.2"} {
			if !bytes.HasPrefix([]byte(sc[f]), []byte("\x7fELF")) {
				t.Errorf("the storage initrd lacks %s", f)
			}
		}
		t.Logf("storage initrd %d B", len(sgz))
	}

	var img countWriter
	start = time.Now()
	if err := k.WriteTarGz(&img, Options{Name: "a", Marker: "BOOTED-IMAGE-A", PrettyName: "Tiny test image A"}); err != nil {
		t.Fatal(err)
	}
	var util countWriter
	if err := k.WriteTarGz(&util, Options{Name: "u", NoKernel: true}); err != nil {
		t.Fatal(err)
	}
	vm, _ := os.Stat(k.Vmlinuz)
	bb, _ := os.Stat(k.Busybox)
	t.Logf("vmlinuz %d B, busybox %d B, initrd %d B; image tar.gz %d B (written in %v), utility image %d B",
		vm.Size(), bb.Size(), len(gz), img.n, time.Since(start).Round(time.Millisecond), util.n)
}
