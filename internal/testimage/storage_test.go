package testimage

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/deb/debtest"
	"github.com/provisioner/provisioner/internal/elfdeps"
)

// fakeTools makes a directory with scripts named like the storage tools: not ELF, so
// they need no libraries.
func fakeTools(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range storageTools {
		p := debtest.WriteTemp(t, dir, tool.name, []byte("#!/bin/sh\necho "+tool.name+"\n"))
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func useToolDirs(t *testing.T, dirs ...string) {
	t.Helper()
	old := storageToolDirs
	storageToolDirs = dirs
	t.Cleanup(func() { storageToolDirs = old })
}

func TestStorageFilesFake(t *testing.T) {
	dir := fakeTools(t)
	files, err := storageFiles([]string{t.TempDir(), dir})
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(maps.Keys(files))
	if want := []string{"bin/lvm", "bin/mdadm", "etc/lvm/lvm.conf"}; !slices.Equal(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}
	if f := files["bin/mdadm"]; f.Mode != 0o755 || !strings.Contains(string(f.Data), "echo mdadm") {
		t.Errorf("bin/mdadm: %v %q", f.Mode, f.Data)
	}
	if !strings.Contains(string(files["etc/lvm/lvm.conf"].Data), "udev_sync = 0") {
		t.Error("lvm.conf does not turn udev sync off")
	}
}

// Every missing tool is named with its package, in one error.
func TestStorageFilesMissing(t *testing.T) {
	_, err := storageFiles([]string{t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "mdadm (package mdadm), lvm (package lvm2)") {
		t.Error("want both tools and their packages, got", err)
	}
}

// The host's real tools bring their loader and libraries at the paths the loader
// searches.
func TestStorageFilesHost(t *testing.T) {
	for _, tool := range storageTools {
		if elfdeps.FindProgram(tool.name, storageToolDirs) == "" {
			t.Skipf("no %s on this machine (package %s)", tool.name, tool.pkg)
		}
	}
	files, err := storageFiles(storageToolDirs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bin/lvm", "bin/mdadm", "lib64/ld-linux-x86-64.so.2"} {
		if !bytes.HasPrefix(files[want].Data, []byte("\x7fELF")) {
			t.Errorf("%s is missing or not ELF", want)
		}
	}
	var libs []string
	for n := range files {
		libs = append(libs, filepath.Base(n))
	}
	for _, want := range []string{"libc.so.6", "libdevmapper.so.1.02.1", "libudev.so.1"} {
		if !slices.Contains(libs, want) {
			t.Errorf("no %s among %q", want, libs)
		}
	}
}

func TestPrepareStorage(t *testing.T) {
	useToolDirs(t, fakeTools(t))
	k := fakeKit(t)
	dir := filepath.Dir(k.Vmlinuz)
	k.Modules = []string{debtest.WriteTemp(t, dir, "virtio_blk.ko", []byte("MOD blk"))}
	k.NetModules = []string{debtest.WriteTemp(t, dir, "virtio_net.ko", []byte("MOD net"))}
	k.StorageModules = []string{debtest.WriteTemp(t, dir, "dm-mod.ko", []byte("MOD dm"))}
	if err := k.PrepareStorage(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := k.StorageInitrd
	if !strings.HasPrefix(filepath.Base(first), "initrd-storage-") || filepath.Dir(first) != dir {
		t.Errorf("StorageInitrd %s", first)
	}
	gz, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	_, content := readCpioGz(t, gz)
	if content["lib/modules/load-order"] != "virtio_blk.ko\nvirtio_net.ko\ndm-mod.ko\n" || content["bin/lvm"] == "" || content["bin/mdadm"] == "" ||
		content["etc/lvm/lvm.conf"] != stage1LVMConf || content["init"] != stage1Init {
		t.Errorf("storage initrd: load order %q, lvm %q, mdadm %q", content["lib/modules/load-order"], content["bin/lvm"], content["bin/mdadm"])
	}
	// Cached: the same inputs give the same file, new tool bytes a new one.
	if err := k.PrepareStorage(context.Background()); err != nil || k.StorageInitrd != first {
		t.Error("second PrepareStorage:", k.StorageInitrd, err)
	}
	tools := fakeTools(t)
	if err := os.WriteFile(filepath.Join(tools, "lvm"), []byte("#!/bin/sh\necho upgraded\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	useToolDirs(t, tools)
	if err := k.PrepareStorage(context.Background()); err != nil || k.StorageInitrd == first {
		t.Error("after a tool changed:", k.StorageInitrd, err)
	}

	// A storage image boots with it; a plain image keeps the plain initrd.
	_, _, es := imageTarGz(t, k, Options{Name: "s", Marker: "S", Storage: true})
	if es["boot/initrd.img-"+testVer].data != string(mustRead(t, k.StorageInitrd)) {
		t.Error("the storage image does not carry the storage initrd")
	}
	_, _, es = imageTarGz(t, k, Options{Name: "p", Marker: "P"})
	if es["boot/initrd.img-"+testVer].data != "INITRD" {
		t.Error("a plain image does not carry the plain initrd")
	}
}

func TestStorageImageErrors(t *testing.T) {
	k := fakeKit(t)
	var buf bytes.Buffer
	if err := k.WriteTarGz(&buf, Options{Name: "s", Marker: "S", Storage: true}); err == nil || !strings.Contains(err.Error(), "PrepareStorage") {
		t.Error("storage image without PrepareStorage:", err)
	}
	if err := k.WriteTarGz(&buf, Options{Name: "u", NoKernel: true, Storage: true}); err == nil || !strings.Contains(err.Error(), "utility image") {
		t.Error("storage utility image:", err)
	}
	useToolDirs(t, t.TempDir())
	if err := k.PrepareStorage(context.Background()); err == nil || !strings.Contains(err.Error(), "package lvm2") {
		t.Error("PrepareStorage without the tools:", err)
	}
	if err := (&Kit{}).PrepareStorage(context.Background()); err == nil {
		t.Error("PrepareStorage on an empty kit gave no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	useToolDirs(t, fakeTools(t))
	if err := k.PrepareStorage(ctx); err == nil {
		t.Error("PrepareStorage with a cancelled context gave no error")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
