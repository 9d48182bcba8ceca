package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// member is one ar member of a synthetic .deb.
type member struct {
	name string
	data []byte
}

// arBytes builds an ar archive the way dpkg-deb does: space-padded names (gnu adds a
// "/" suffix, which the reader also accepts), decimal sizes, odd members padded to even.
func arBytes(t *testing.T, gnuNames bool, members ...member) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(arMagic)
	for _, m := range members {
		name := m.name
		if gnuNames {
			name += "/"
		}
		hdr := fmt.Sprintf("%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(m.data))
		if len(hdr) != arHeaderLen {
			t.Fatalf("ar header of %s is %d bytes", m.name, len(hdr))
		}
		b.WriteString(hdr)
		b.Write(m.data)
		if len(m.data)%2 == 1 {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// tarFile is one entry of a synthetic data.tar; a name ending in "/" is a directory.
type tarFile struct {
	name string
	data string
	link string // makes a symlink
}

func tarBytes(t *testing.T, files ...tarFile) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}
		switch {
		case f.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, f.link, 0
		case f.name[len(f.name)-1] == '/':
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(f.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func xzBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := xz.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstdBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

// debBytes builds a .deb whose data member is data.tar.<comp> ("xz" or "zst").
func debBytes(t *testing.T, comp string, files ...tarFile) []byte {
	t.Helper()
	data := tarBytes(t, files...)
	switch comp {
	case "xz":
		data = xzBytes(t, data)
	case "zst":
		data = zstdBytes(t, data)
	default:
		t.Fatalf("compression %q", comp)
	}
	control := xzBytes(t, tarBytes(t, tarFile{name: "./control", data: "Package: x\n"}))
	return arBytes(t, false,
		member{"debian-binary", []byte("2.0\n")},
		member{"control.tar.xz", control},
		member{"data.tar." + comp, data},
	)
}

const testVer = "6.1.0-99-cloud-amd64"

// kernelDebFiles is a small linux-image package: the kernel, five of the six stage-1
// modules (virtio_pci_legacy_dev listed as built in), and things to ignore.
func kernelDebFiles() []tarFile {
	mod := "./lib/modules/" + testVer + "/"
	return []tarFile{
		{name: "./"},
		{name: "./boot/"},
		{name: "./boot/vmlinuz-" + testVer, data: "KERNEL"},
		{name: "./boot/vmlinuz-6.1.0-98-cloud-amd64", data: "OTHER KERNEL"},
		{name: "./boot/config-" + testVer, data: "CONFIG"},
		{name: mod},
		{name: mod + "modules.builtin", data: "kernel/fs/ext4/ext4.ko\nkernel/drivers/virtio/virtio_pci_legacy_dev.ko\n"},
		{name: mod + "kernel/drivers/block/virtio_blk.ko", data: "MOD virtio_blk"},
		{name: mod + "kernel/drivers/virtio/virtio.ko", data: "MOD virtio"},
		{name: mod + "kernel/drivers/virtio/virtio_ring.ko", data: "MOD virtio_ring"},
		{name: mod + "kernel/drivers/virtio/virtio_pci.ko", data: "MOD virtio_pci"},
		{name: mod + "kernel/drivers/virtio/virtio_pci_modern_dev.ko", data: "MOD virtio_pci_modern_dev"},
		{name: mod + "kernel/drivers/virtio/virtio_balloon.ko", data: "MOD virtio_balloon"},
		{name: "./lib/modules/6.1.0-98-cloud-amd64/kernel/drivers/block/virtio_blk.ko", data: "WRONG"},
		{name: "./usr/share/doc/linux-image/changelog.gz", data: "doc"},
	}
}

func busyboxDebFiles() []tarFile {
	return []tarFile{
		{name: "./"},
		{name: "./bin/"},
		{name: "./bin/busybox", data: "\x7fELF busybox"},
		{name: "./usr/share/doc/busybox-static/copyright", data: "GPL"},
	}
}

// writeTemp writes data to a new file in dir and returns its path.
func writeTemp(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
