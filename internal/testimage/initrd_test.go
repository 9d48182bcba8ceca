package testimage

import (
	"bytes"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/provisioner/provisioner/internal/deb/debtest"
)

// readCpioGz returns the records of a gzip'ed newc archive, in archive order, with their
// contents.
func readCpioGz(t *testing.T, gz []byte) ([]cpio.Record, map[string]string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(bytes.NewReader(raw))})
	if err != nil {
		t.Fatal(err)
	}
	content := map[string]string{}
	for _, r := range recs {
		b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatal(err)
		}
		content[r.Name] = string(b)
	}
	return recs, content
}

func TestWriteInitrd(t *testing.T) {
	dir := t.TempDir()
	bb := debtest.WriteTemp(t, dir, "busybox", []byte("\x7fELF busybox"))
	mods := []string{
		debtest.WriteTemp(t, dir, "virtio_ring.ko", []byte("MOD ring")),
		debtest.WriteTemp(t, dir, "virtio_blk.ko", []byte("MOD blk")),
	}
	var a, b bytes.Buffer
	if err := writeInitrd(&a, bb, mods, nil); err != nil {
		t.Fatal(err)
	}
	if err := writeInitrd(&b, bb, mods, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two builds from the same input differ")
	}
	recs, content := readCpioGz(t, a.Bytes())

	type want struct {
		mode uint64 // type and permission bits
		data string // checked when not empty
	}
	wants := map[string]want{
		"bin":                        {cpio.S_IFDIR | 0o755, ""},
		"dev":                        {cpio.S_IFDIR | 0o755, ""},
		"lib":                        {cpio.S_IFDIR | 0o755, ""},
		"lib/modules":                {cpio.S_IFDIR | 0o755, ""},
		"newroot":                    {cpio.S_IFDIR | 0o755, ""},
		"proc":                       {cpio.S_IFDIR | 0o555, ""},
		"sys":                        {cpio.S_IFDIR | 0o555, ""},
		"dev/console":                {cpio.S_IFCHR | 0o600, ""},
		"bin/busybox":                {cpio.S_IFREG | 0o755, "\x7fELF busybox"},
		"init":                       {cpio.S_IFREG | 0o755, stage1Init},
		"lib/modules/virtio_ring.ko": {cpio.S_IFREG | 0o644, "MOD ring"},
		"lib/modules/virtio_blk.ko":  {cpio.S_IFREG | 0o644, "MOD blk"},
		"lib/modules/load-order":     {cpio.S_IFREG | 0o644, "virtio_ring.ko\nvirtio_blk.ko\n"},
	}
	for _, a := range stage1Applets {
		wants["bin/"+a] = want{cpio.S_IFLNK | 0o777, "busybox"}
	}
	seen := map[string]bool{}
	for _, r := range recs {
		w, ok := wants[r.Name]
		if !ok {
			t.Errorf("unexpected entry %s", r.Name)
			continue
		}
		if r.Mode != w.mode {
			t.Errorf("%s: mode %#o, want %#o", r.Name, r.Mode, w.mode)
		}
		if w.data != "" && content[r.Name] != w.data {
			t.Errorf("%s: content %q, want %q", r.Name, content[r.Name], w.data)
		}
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d, want zeros", r.Name, r.MTime, r.UID, r.GID)
		}
		if d := path.Dir(r.Name); d != "." && !seen[d] {
			t.Errorf("%s comes before its directory %s", r.Name, d)
		}
		seen[r.Name] = true
	}
	for n := range wants {
		if !seen[n] {
			t.Errorf("missing entry %s", n)
		}
	}
	if console := recordNamed(recs, "dev/console"); console.Rmajor != 5 || console.Rminor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", console.Rmajor, console.Rminor)
	}
	// The parts of /init the boot depends on.
	for _, s := range []string{
		"mount -t devtmpfs devtmpfs /dev", "insmod /lib/modules/$m", "findfs \"$root\"",
		"mount -o ro \"$dev\" /newroot", "poweroff -f", "exec switch_root /newroot /sbin/init",
		"mdadm --incremental --quiet /dev/$name", "mdadm --incremental --run --scan", "lvm vgchange -ay --sysinit",
	} {
		if !strings.Contains(stage1Init, s) {
			t.Errorf("/init lacks %q", s)
		}
	}
}

func TestWriteInitrdNoModules(t *testing.T) {
	bb := debtest.WriteTemp(t, t.TempDir(), "busybox", []byte("bb"))
	var buf bytes.Buffer
	if err := writeInitrd(&buf, bb, nil, nil); err != nil {
		t.Fatal(err)
	}
	_, content := readCpioGz(t, buf.Bytes())
	if got, ok := content["lib/modules/load-order"]; !ok || got != "" {
		t.Errorf("load-order = %q (present %v), want an empty file", got, ok)
	}
	if err := writeInitrd(&buf, filepath.Join(t.TempDir(), "missing"), nil, nil); err == nil {
		t.Error("a missing busybox gave no error")
	}
}

// Extra files get their parent directories, keep their modes, and may not replace an
// entry of the archive's own.
func TestWriteInitrdExtraFiles(t *testing.T) {
	bb := debtest.WriteTemp(t, t.TempDir(), "busybox", []byte("bb"))
	extra := map[string]File{
		"bin/mdadm":                        {Data: []byte("MDADM"), Mode: 0o755},
		"usr/lib/x86_64-linux-gnu/libc.so": {Data: []byte("LIBC")},
		"lib64/ld-linux-x86-64.so.2":       {Data: []byte("../lib/ld.so"), Mode: fs.ModeSymlink},
	}
	var buf bytes.Buffer
	if err := writeInitrd(&buf, bb, nil, extra); err != nil {
		t.Fatal(err)
	}
	recs, content := readCpioGz(t, buf.Bytes())
	seen := map[string]bool{}
	for _, r := range recs {
		if d := path.Dir(r.Name); d != "." && !seen[d] {
			t.Errorf("%s comes before its directory %s", r.Name, d)
		}
		seen[r.Name] = true
	}
	for name, mode := range map[string]uint64{
		"bin/mdadm": cpio.S_IFREG | 0o755, "usr": cpio.S_IFDIR | 0o755, "usr/lib/x86_64-linux-gnu": cpio.S_IFDIR | 0o755,
		"usr/lib/x86_64-linux-gnu/libc.so": cpio.S_IFREG | 0o644, "lib64/ld-linux-x86-64.so.2": cpio.S_IFLNK | 0o777,
	} {
		if r := recordNamed(recs, name); r.Mode != mode {
			t.Errorf("%s: mode %#o, want %#o", name, r.Mode, mode)
		}
	}
	if content["bin/mdadm"] != "MDADM" || content["lib64/ld-linux-x86-64.so.2"] != "../lib/ld.so" {
		t.Errorf("extra contents: %q", content)
	}
	for _, bad := range []string{"init", "bin", "/etc/x", "a/../b"} {
		if err := writeInitrd(io.Discard, bb, nil, map[string]File{bad: {Data: []byte("x")}}); err == nil {
			t.Errorf("extra file %q was accepted", bad)
		}
	}
}

func recordNamed(recs []cpio.Record, name string) cpio.Record {
	for _, r := range recs {
		if r.Name == name {
			return r
		}
	}
	return cpio.Record{}
}
