package initramfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompressionFor(t *testing.T) {
	for _, tt := range []struct {
		config, want string
	}{
		{"CONFIG_RD_GZIP=y\nCONFIG_RD_XZ=y\nCONFIG_RD_ZSTD=y\n", compZstd},
		{"CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n", compGzip},
		{"CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=m\n", compGzip},
		{"  CONFIG_RD_ZSTD=y  \r\nCONFIG_RD_GZIP=y", compZstd},
	} {
		got, err := compressionFor([]byte(tt.config))
		if err != nil || got != tt.want {
			t.Errorf("compressionFor(%q) = %q, %v; want %q", tt.config, got, err, tt.want)
		}
	}
	if _, err := compressionFor([]byte("CONFIG_RD_XZ=y\n")); err == nil {
		t.Error("a kernel with neither zstd nor gzip was accepted")
	}
}

// makeKernelDir writes a complete unpacked kernel by hand.
func makeKernelDir(t *testing.T, cache, ver string) {
	t.Helper()
	dir := filepath.Join(cache, kernelPrefix+ver)
	mods := filepath.Join(dir, "root", "lib", "modules", ver)
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"vmlinuz": "K", "config": "CONFIG_RD_ZSTD=y\n", kernelComplete: ver + "\n",
		"root/lib/modules/" + ver + "/modules.dep": "",
	} {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewestCachedKernel(t *testing.T) {
	cache := t.TempDir()
	makeKernelDir(t, cache, "6.1.0-9-amd64")
	makeKernelDir(t, cache, "6.1.0-56-amd64")
	makeKernelDir(t, cache, "6.1.0-60-cloud-amd64")
	makeKernelDir(t, cache, "6.1.0-70-amd64")
	os.Remove(filepath.Join(cache, kernelPrefix+"6.1.0-70-amd64", kernelComplete)) // incomplete: skipped
	if k := newestCachedKernel(cache, "amd64"); k == nil || k.Version != "6.1.0-56-amd64" {
		t.Errorf("amd64: %+v, want 6.1.0-56-amd64", k)
	}
	if k := newestCachedKernel(cache, "cloud-amd64"); k == nil || k.Version != "6.1.0-60-cloud-amd64" {
		t.Errorf("cloud-amd64: %+v", k)
	}
	if k := newestCachedKernel(t.TempDir(), "amd64"); k != nil {
		t.Errorf("empty cache: %+v", k)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o, fl, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Flavour != "amd64" || !fl.hardware || o.OutDir != "out" || len(o.GoCmd) != 1 || o.GoCmd[0] != "go" ||
		o.Run == nil || o.Log == nil || o.CacheDir != DefaultCacheDir() {
		t.Errorf("defaults %+v", o)
	}
	if _, _, err := (Options{Flavour: "arm64"}).withDefaults(); err == nil || !strings.Contains(err.Error(), "cloud-amd64") {
		t.Errorf("unknown flavour: %v", err)
	}
}

func TestFindHostTools(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "mke2fs")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notexec"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := findHostTools([]hostTool{{"mke2fs", "e2fsprogs"}}, []hostPath{{dir, "x"}}, []string{dir})
	if err != nil || len(got) != 2 || got[0] != exe || got[1] != dir {
		t.Errorf("findHostTools = %q, %v", got, err)
	}
	_, err = findHostTools([]hostTool{{"mke2fs", "e2fsprogs"}, {"mdadm", "mdadm"}, {"notexec", "foo"}},
		[]hostPath{{filepath.Join(dir, "grub"), "grub-pc-bin"}}, []string{dir})
	if !errors.Is(err, ErrMissingTool) {
		t.Fatalf("missing tools: %v", err)
	}
	for _, want := range []string{"mdadm (package mdadm)", "notexec (package foo)", "grub (package grub-pc-bin)", "apt-get install foo grub-pc-bin mdadm"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
