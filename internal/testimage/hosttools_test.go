package testimage

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/deb/debtest"
	"github.com/provisioner/provisioner/internal/elfdeps"
)

func useHostToolDirs(t *testing.T, dirs ...string) {
	t.Helper()
	old := hostToolDirs
	hostToolDirs = dirs
	t.Cleanup(func() { hostToolDirs = old })
}

// Host tools land in usr/sbin (scripts here: not ELF, so no libraries), and a File of
// the same path wins.
func TestWriteTarGzHostToolsFake(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"mke2fs", "blkid"} {
		if err := os.Chmod(debtest.WriteTemp(t, dir, n, []byte("#!/bin/sh\necho "+n+"\n")), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	useHostToolDirs(t, t.TempDir(), dir)
	_, _, es := imageTarGz(t, fakeKit(t), Options{Name: "a", Marker: "M", HostTools: []string{"mke2fs", "blkid"},
		Files: map[string]File{"usr/sbin/blkid": {Data: []byte("mine"), Mode: 0o755}}})
	if e := es["usr/sbin/mke2fs"]; e.hdr == nil || e.hdr.Mode != 0o755 || !strings.Contains(e.data, "echo mke2fs") {
		t.Errorf("usr/sbin/mke2fs: %+v", e)
	}
	if got := es["usr/sbin/blkid"].data; got != "mine" {
		t.Errorf("usr/sbin/blkid = %q, want the File's content", got)
	}
}

// Every missing tool is named, in one error.
func TestWriteTarGzHostToolsMissing(t *testing.T) {
	useHostToolDirs(t, t.TempDir())
	err := fakeKit(t).WriteTarGz(io.Discard, Options{Name: "a", Marker: "M", HostTools: []string{"mke2fs", "blkid"}})
	if err == nil || !strings.Contains(err.Error(), "host tools: not found in ") || !strings.Contains(err.Error(), ": mke2fs, blkid") {
		t.Error("want both tools named, got", err)
	}
}

// The host's real tools bring their loader (over the image's empty placeholder) and
// libraries at the paths the loader searches.
func TestWriteTarGzHostToolsHost(t *testing.T) {
	for _, n := range []string{"mke2fs", "blkid"} {
		if elfdeps.FindProgram(n, hostToolDirs) == "" {
			t.Skipf("no %s on this machine", n)
		}
	}
	_, _, es := imageTarGz(t, fakeKit(t), Options{Name: "a", Marker: "M", HostTools: []string{"mke2fs", "blkid"}})
	for _, want := range []string{"usr/sbin/mke2fs", "usr/sbin/blkid", "lib64/ld-linux-x86-64.so.2"} {
		if !strings.HasPrefix(es[want].data, "\x7fELF") {
			t.Errorf("%s is missing or not ELF", want)
		}
	}
	var libext2fs bool
	for name := range es {
		libext2fs = libext2fs || strings.Contains(name, "/libext2fs.so")
	}
	if !libext2fs {
		t.Error("mke2fs came without libext2fs")
	}
}

// A panicking image's init exits instead of powering off, after the test's lines.
func TestWriteTarGzPanicAfterMarker(t *testing.T) {
	k := fakeKit(t)
	_, _, es := imageTarGz(t, k, Options{Name: "p", Marker: "M", InitScript: "echo extra", PanicAfterMarker: true})
	init := es["sbin/init"].data
	if strings.Contains(init, "poweroff") || !strings.HasSuffix(init, "\nexit 1\n") || strings.Index(init, "echo extra") > strings.Index(init, "exit 1") {
		t.Errorf("panicking init:\n%s", init)
	}
	_, _, es = imageTarGz(t, k, Options{Name: "a", Marker: "M"})
	if init := es["sbin/init"].data; !strings.HasSuffix(init, "\npoweroff -f\n") || strings.Contains(init, "exit 1") {
		t.Errorf("normal init:\n%s", init)
	}
}

// A corrupt kernel keeps its name and size, is not the kit's kernel nor a bzImage, and
// is the same in every image.
func TestWriteTarGzCorruptKernel(t *testing.T) {
	k := fakeKit(t)
	kernel := bytes.Repeat([]byte("KERNEL"), 20000)
	if err := os.WriteFile(k.Vmlinuz, kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Name: "c", Marker: "M", CorruptKernel: true}
	first, _, es := imageTarGz(t, k, o)
	got := es["boot/vmlinuz-"+testVer].data
	if len(got) != len(kernel) || got == string(kernel) || got[0x202:0x206] == "HdrS" {
		t.Errorf("corrupt kernel: %d bytes (want %d), starts %q", len(got), len(kernel), got[:16])
	}
	if again, _, _ := imageTarGz(t, k, o); !bytes.Equal(first, again) {
		t.Error("two images with a corrupt kernel differ")
	}
	if _, _, es := imageTarGz(t, k, Options{Name: "a", Marker: "M"}); es["boot/vmlinuz-"+testVer].data != string(kernel) {
		t.Error("the kernel is not the kit's without CorruptKernel")
	}
}

func TestWriteTarGzNewOptionErrors(t *testing.T) {
	k := fakeKit(t)
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{Name: "u", NoKernel: true, PanicAfterMarker: true}, "cannot panic"},
		{Options{Name: "u", NoKernel: true, CorruptKernel: true}, "corrupt kernel"},
		{Options{Name: "a", Marker: "M", HostTools: []string{"usr/sbin/mke2fs"}}, "host tool"},
		{Options{Name: "a", Marker: "M", HostTools: []string{""}}, "host tool"},
	} {
		if err := k.WriteTarGz(io.Discard, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one containing %q", tt.o, err, tt.want)
		}
	}
}
