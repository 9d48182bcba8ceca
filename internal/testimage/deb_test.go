package testimage

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/deb/debtest"
)

func TestExtractKernel(t *testing.T) {
	for _, comp := range []string{"xz", "zst"} {
		t.Run(comp, func(t *testing.T) {
			dir := t.TempDir()
			deb := debtest.WriteTemp(t, dir, "k.deb", debtest.Deb(t, comp, kernelDebFiles()...))
			out := t.TempDir()
			kf, err := extractKernel(context.Background(), deb, testVer, out)
			if err != nil {
				t.Fatal(err)
			}
			if got := debtest.ReadString(t, kf.Vmlinuz); got != "KERNEL" {
				t.Errorf("vmlinuz = %q", got)
			}
			var names []string
			for _, m := range kf.Modules {
				names = append(names, filepath.Base(m))
				if got, want := debtest.ReadString(t, m), "MOD "+strings.TrimSuffix(filepath.Base(m), ".ko"); got != want {
					t.Errorf("%s = %q, want %q", m, got, want)
				}
			}
			// Load order, not archive order; the built-in one is skipped.
			want := []string{"virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko", "virtio_pci.ko", "virtio_blk.ko"}
			if !slices.Equal(names, want) {
				t.Errorf("modules %v, want %v", names, want)
			}
			names = nil
			for _, m := range kf.StorageModules {
				names = append(names, filepath.Base(m))
			}
			if want := []string{"dm-mod.ko", "raid1.ko"}; !slices.Equal(names, want) {
				t.Errorf("storage modules %v, want %v", names, want)
			}
			names = nil
			for _, m := range kf.NetModules {
				names = append(names, filepath.Base(m))
				if got, want := debtest.ReadString(t, m), "MOD "+strings.TrimSuffix(filepath.Base(m), ".ko"); got != want {
					t.Errorf("%s = %q, want %q", m, got, want)
				}
			}
			// Dependencies first, whatever the archive's order.
			if want := []string{"failover.ko", "net_failover.ko", "virtio_net.ko"}; !slices.Equal(names, want) {
				t.Errorf("network modules %v, want %v", names, want)
			}
		})
	}
}

func TestExtractKernelErrors(t *testing.T) {
	mod := "./lib/modules/" + testVer + "/"
	without := func(drop string) []debtest.TarFile {
		var fs []debtest.TarFile
		for _, f := range kernelDebFiles() {
			if f.Name != drop {
				fs = append(fs, f)
			}
		}
		return fs
	}
	tests := []struct {
		name  string
		files []debtest.TarFile
		want  string
	}{
		{"no kernel", without("./boot/vmlinuz-" + testVer), "no boot/vmlinuz-" + testVer},
		{"module neither file nor built in", without(mod + "kernel/drivers/block/virtio_blk.ko"), "virtio_blk.ko is neither"},
		{"storage module neither file nor built in", without(mod + "kernel/drivers/md/raid1.ko"), "raid1.ko is neither"},
		{"network module neither file nor built in", without(mod + "kernel/net/core/failover.ko"), "failover.ko is neither"},
		{"compressed module", append(without(mod+"kernel/drivers/block/virtio_blk.ko"),
			debtest.TarFile{Name: mod + "kernel/drivers/block/virtio_blk.ko.xz", Data: "xz"}), "is compressed (.xz)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deb := debtest.WriteTemp(t, t.TempDir(), "k.deb", debtest.Deb(t, "xz", tt.files...))
			_, err := extractKernel(context.Background(), deb, testVer, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// Merged-/usr packages keep the modules under usr/lib/modules.
func TestExtractKernelMergedUsr(t *testing.T) {
	var files []debtest.TarFile
	for _, f := range kernelDebFiles() {
		if strings.HasPrefix(f.Name, "./lib/") {
			f.Name = "./usr/lib/" + strings.TrimPrefix(f.Name, "./lib/")
		}
		files = append(files, f)
	}
	deb := debtest.WriteTemp(t, t.TempDir(), "k.deb", debtest.Deb(t, "xz", files...))
	kf, err := extractKernel(context.Background(), deb, testVer, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Modules) != 5 || len(kf.NetModules) != 3 {
		t.Errorf("modules %q and network modules %q, want 5 and 3", kf.Modules, kf.NetModules)
	}
}

// A network module the package lists as built in is skipped; the others keep their
// order.
func TestExtractKernelBuiltinNetModule(t *testing.T) {
	var files []debtest.TarFile
	for _, f := range kernelDebFiles() {
		switch {
		case strings.HasSuffix(f.Name, "/failover.ko"):
			continue
		case strings.HasSuffix(f.Name, "modules.builtin"):
			f.Data += "kernel/net/core/failover.ko\n"
		}
		files = append(files, f)
	}
	deb := debtest.WriteTemp(t, t.TempDir(), "k.deb", debtest.Deb(t, "zst", files...))
	kf, err := extractKernel(context.Background(), deb, testVer, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range kf.NetModules {
		names = append(names, filepath.Base(m))
	}
	if want := []string{"net_failover.ko", "virtio_net.ko"}; !slices.Equal(names, want) {
		t.Errorf("network modules %v, want %v", names, want)
	}
}

// Without a modules.builtin to consult, a missing module is taken as built in.
func TestExtractKernelNoBuiltinList(t *testing.T) {
	var files []debtest.TarFile
	for _, f := range kernelDebFiles() {
		if !strings.HasSuffix(f.Name, "modules.builtin") && !strings.HasSuffix(f.Name, "/virtio_blk.ko") {
			files = append(files, f)
		}
	}
	deb := debtest.WriteTemp(t, t.TempDir(), "k.deb", debtest.Deb(t, "zst", files...))
	kf, err := extractKernel(context.Background(), deb, testVer, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Modules) != 4 {
		t.Errorf("modules %v, want 4", kf.Modules)
	}
}

func TestExtractBusybox(t *testing.T) {
	dir := t.TempDir()
	deb := debtest.WriteTemp(t, dir, "b.deb", debtest.Deb(t, "xz", busyboxDebFiles()...))
	dst := filepath.Join(dir, "busybox")
	if err := extractBusybox(context.Background(), deb, dst); err != nil {
		t.Fatal(err)
	}
	if got := debtest.ReadString(t, dst); got != "\x7fELF busybox" {
		t.Errorf("busybox = %q", got)
	}
	empty := debtest.WriteTemp(t, dir, "e.deb", debtest.Deb(t, "xz", debtest.TarFile{Name: "./usr/"}))
	if err := extractBusybox(context.Background(), empty, dst); err == nil || !strings.Contains(err.Error(), "no bin/busybox") {
		t.Errorf("package without busybox: %v", err)
	}
}
