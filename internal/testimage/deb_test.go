package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArReader(t *testing.T) {
	for _, gnu := range []bool{false, true} {
		members := []member{
			{"debian-binary", []byte("2.0\n")},
			{"odd", []byte("abc")}, // padded to even
			{"empty", nil},
			{"data.tar.xz", []byte("payload")},
		}
		ar, err := newArReader(bytes.NewReader(arBytes(t, gnu, members...)))
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range members {
			name, r, err := ar.next()
			if err != nil {
				t.Fatalf("gnu=%v member %d: %v", gnu, i, err)
			}
			if name != want.name {
				t.Errorf("gnu=%v member %d: name %q, want %q", gnu, i, name, want.name)
			}
			// Leave the odd member unread: next must skip the rest and the padding.
			if want.name == "odd" {
				continue
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, want.data) {
				t.Errorf("gnu=%v member %s: %q, %v; want %q", gnu, name, got, err, want.data)
			}
		}
		if _, _, err := ar.next(); !errors.Is(err, io.EOF) {
			t.Errorf("gnu=%v after the last member: %v, want io.EOF", gnu, err)
		}
	}
}

func TestArReaderErrors(t *testing.T) {
	good := arBytes(t, false, member{"debian-binary", []byte("2.0\n")}, member{"data.tar", []byte("0123456789")})
	if _, err := newArReader(strings.NewReader("PK\x03\x04 not ar")); err == nil {
		t.Error("a zip file was taken for ar")
	}
	// Cut inside the second member's data: reading it must fail, not end cleanly.
	ar, err := newArReader(bytes.NewReader(good[:len(good)-3]))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ar.next(); err != nil {
		t.Fatal(err)
	}
	_, r, err := ar.next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading a truncated member: %v, want io.ErrUnexpectedEOF", err)
	}
	// Skipping the truncated member unread must fail the same way.
	ar, err = newArReader(bytes.NewReader(good[:len(good)-3]))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, _, err := ar.next(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ar.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("skipping a truncated member: %v, want io.ErrUnexpectedEOF", err)
	}
	// Cut inside a header.
	ar, err = newArReader(bytes.NewReader(good[:len(arMagic)+30]))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ar.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated header: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestExtractKernel(t *testing.T) {
	for _, comp := range []string{"xz", "zst"} {
		t.Run(comp, func(t *testing.T) {
			dir := t.TempDir()
			deb := writeTemp(t, dir, "k.deb", debBytes(t, comp, kernelDebFiles()...))
			out := t.TempDir()
			kf, err := extractKernel(context.Background(), deb, testVer, out)
			if err != nil {
				t.Fatal(err)
			}
			if got := readString(t, kf.Vmlinuz); got != "KERNEL" {
				t.Errorf("vmlinuz = %q", got)
			}
			var names []string
			for _, m := range kf.Modules {
				names = append(names, filepath.Base(m))
				if got, want := readString(t, m), "MOD "+strings.TrimSuffix(filepath.Base(m), ".ko"); got != want {
					t.Errorf("%s = %q, want %q", m, got, want)
				}
			}
			// Load order, not archive order; the built-in one is skipped.
			want := []string{"virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko", "virtio_pci.ko", "virtio_blk.ko"}
			if !slices.Equal(names, want) {
				t.Errorf("modules %v, want %v", names, want)
			}
		})
	}
}

func TestExtractKernelErrors(t *testing.T) {
	mod := "./lib/modules/" + testVer + "/"
	without := func(drop string) []tarFile {
		var fs []tarFile
		for _, f := range kernelDebFiles() {
			if f.name != drop {
				fs = append(fs, f)
			}
		}
		return fs
	}
	tests := []struct {
		name  string
		files []tarFile
		want  string
	}{
		{"no kernel", without("./boot/vmlinuz-" + testVer), "no boot/vmlinuz-" + testVer},
		{"module neither file nor built in", without(mod + "kernel/drivers/block/virtio_blk.ko"), "virtio_blk.ko is neither"},
		{"compressed module", append(without(mod+"kernel/drivers/block/virtio_blk.ko"),
			tarFile{name: mod + "kernel/drivers/block/virtio_blk.ko.xz", data: "xz"}), "is compressed (.xz)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deb := writeTemp(t, t.TempDir(), "k.deb", debBytes(t, "xz", tt.files...))
			_, err := extractKernel(context.Background(), deb, testVer, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// Merged-/usr packages keep the modules under usr/lib/modules.
func TestExtractKernelMergedUsr(t *testing.T) {
	var files []tarFile
	for _, f := range kernelDebFiles() {
		if strings.HasPrefix(f.name, "./lib/") {
			f.name = "./usr/lib/" + strings.TrimPrefix(f.name, "./lib/")
		}
		files = append(files, f)
	}
	deb := writeTemp(t, t.TempDir(), "k.deb", debBytes(t, "xz", files...))
	kf, err := extractKernel(context.Background(), deb, testVer, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Modules) != 5 {
		t.Errorf("modules %q, want 5", kf.Modules)
	}
}

// Without a modules.builtin to consult, a missing module is taken as built in.
func TestExtractKernelNoBuiltinList(t *testing.T) {
	var files []tarFile
	for _, f := range kernelDebFiles() {
		if !strings.HasSuffix(f.name, "modules.builtin") && !strings.HasSuffix(f.name, "/virtio_blk.ko") {
			files = append(files, f)
		}
	}
	deb := writeTemp(t, t.TempDir(), "k.deb", debBytes(t, "zst", files...))
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
	deb := writeTemp(t, dir, "b.deb", debBytes(t, "xz", busyboxDebFiles()...))
	dst := filepath.Join(dir, "busybox")
	if err := extractBusybox(context.Background(), deb, dst); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, dst); got != "\x7fELF busybox" {
		t.Errorf("busybox = %q", got)
	}
	empty := writeTemp(t, dir, "e.deb", debBytes(t, "xz", tarFile{name: "./usr/"}))
	if err := extractBusybox(context.Background(), empty, dst); err == nil || !strings.Contains(err.Error(), "no bin/busybox") {
		t.Errorf("package without busybox: %v", err)
	}
}

func TestWalkDebDataErrors(t *testing.T) {
	dir := t.TempDir()
	noData := writeTemp(t, dir, "n.deb", arBytes(t, false, member{"debian-binary", []byte("2.0\n")}))
	bz := writeTemp(t, dir, "z.deb", arBytes(t, false, member{"data.tar.bz2", []byte("BZh")}))
	badXz := writeTemp(t, dir, "x.deb", arBytes(t, false, member{"data.tar.xz", []byte("not xz at all")}))
	nop := func(string, *tar.Header, io.Reader) error { return nil }
	for p, want := range map[string]string{noData: "no data.tar", bz: "unsupported compression", badXz: "data.tar.xz"} {
		err := walkDebData(context.Background(), p, nop)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file and containing %q", filepath.Base(p), err, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ok := writeTemp(t, dir, "ok.deb", debBytes(t, "xz", busyboxDebFiles()...))
	if err := walkDebData(ctx, ok, nop); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}
