package deploy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

// class is what an error must match: an image error (exit 4), a write failure (exit 5)
// or neither.
type class int

const (
	classNone class = iota
	classImage
	classWrite
)

func (c class) String() string {
	return [...]string{"unclassified", "an image error", "a write failure"}[c]
}

func classOf(err error) class {
	img, wr := errors.Is(err, ErrImage), errors.Is(err, ErrWrite)
	switch {
	case img && !wr:
		return classImage
	case wr && !img:
		return classWrite
	case !img && !wr:
		return classNone
	}
	return -1 // both: never right
}

// randomBytes are n bytes that neither compress nor hold a zero block.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}

// TestExtractErrorClass: archives whose shape the tree cannot take (loops, a file
// where a directory goes, names too long, impossible owners) are image errors naming
// the entry; so is every failure of the stream under the tar (a decompressor's
// checksum, a truncation, trailing garbage, the network). A cancelled run is neither.
func TestExtractErrorClass(t *testing.T) {
	tarOf := func(m ...member) func(t *testing.T) io.Reader {
		return func(t *testing.T) io.Reader { return bytes.NewReader(buildTar(t, m...)) }
	}
	decoded := func(codec string, d Decompressor, damage func([]byte) []byte) func(t *testing.T) io.Reader {
		return func(t *testing.T) io.Reader {
			if d.Run != nil {
				if _, err := exec.LookPath("xz"); err != nil {
					t.Skip("xz is not installed")
				}
			}
			in := damage(compress(t, codec, buildTar(t, reg("a", string(randomBytes(300<<10))), reg("b", "b"))))
			rc, err := d.Open(context.Background(), bytes.NewReader(in), codec)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rc.Close() })
			return rc
		}
	}
	gzipBadCRC := func(b []byte) []byte { // the trailer is CRC32, then ISIZE
		c := bytes.Clone(b)
		binary.LittleEndian.PutUint32(c[len(c)-8:], binary.LittleEndian.Uint32(c[len(c)-8:])^1)
		return c
	}
	half := func(b []byte) []byte { return b[:len(b)/2] }
	garbage := func(b []byte) []byte { return append(bytes.Clone(b), "trailing garbage"...) }
	hugeUID := reg("owner", "x")
	hugeUID.Uid = 1 << 40
	minusOne := reg("owner", "x")
	minusOne.Uid = 1<<32 - 1
	odd := reg("odd", "")
	odd.Typeflag = 'Z'

	tests := []struct {
		name   string
		input  func(t *testing.T) io.Reader
		root   bool // needs root (mknod)
		want   class
		detail string // in the error: the entry, or what failed
	}{
		{"symlink loop", tarOf(symlink("a", "b"), symlink("b", "a"), reg("a/x", "1")), false, classImage, `"a/x"`},
		{"a file where a directory is expected", tarOf(reg("f", "1"), reg("f/x", "2")), false, classImage, `"f/x"`},
		{"a FIFO where a directory is expected", tarOf(fifo("p"), reg("p/x", "2")), false, classImage, `"p/x"`},
		{"a device where a directory is expected", tarOf(chardev("null", 1, 3), reg("null/x", "2")), true, classImage, `"null/x"`},
		{"a non-empty directory in the way", tarOf(dirm("d/"), reg("d/f", "1"), reg("d", "x")), false, classImage, `"d"`},
		{"a huge uid", tarOf(hugeUID), false, classImage, `"owner"`},
		{"uid 2^32-1", tarOf(minusOne), false, classImage, `"owner"`},
		{"a name too long", tarOf(reg(strings.Repeat("n", 300), "x")), false, classImage, strings.Repeat("n", 300)},
		{"a path too long", tarOf(reg(strings.Repeat("d/", 2100)+"f", "x")), false, classImage, "file name too long"},
		{"an unknown entry type", tarOf(odd), false, classImage, `"odd"`},
		{"a hostile entry", tarOf(reg("../x", "1")), false, classImage, `"../x"`},
		{"a tar header checksum error", func(t *testing.T) io.Reader {
			b := buildTar(t, reg("a", "x"))
			b[100] ^= 1
			return bytes.NewReader(b)
		}, false, classImage, "invalid tar header"},
		{"gzip checksum mismatch", decoded(compGzip, Decompressor{}, gzipBadCRC), false, classImage, "gzip"},
		{"truncated xz (Go decoder)", decoded(compXz, Decompressor{}, half), false, classImage, "xz"},
		{"truncated xz (xz program)", decoded(compXz, Decompressor{Run: run.Exec{}}, half), false, classImage, "xz"},
		{"truncated zstd", decoded(compZstd, Decompressor{}, half), false, classImage, "zstd"},
		{"trailing garbage after zstd", decoded(compZstd, Decompressor{}, garbage), false, classImage, "zstd"},
		{"a network error", func(t *testing.T) io.Reader {
			return io.MultiReader(bytes.NewReader(buildTar(t, reg("a", "x"))[:700]), &failingReader{errors.New("connection reset")})
		}, false, classImage, "connection reset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				requireRoot(t)
			}
			s := newSandbox(t)
			_, err := ExtractTar(context.Background(), tt.input(t), s.root, ExtractOptions{Sparse: true})
			if got := classOf(err); got != tt.want || !strings.Contains(fmt.Sprint(err), tt.detail) {
				t.Errorf("error = %v: %v, want %v with %q", err, got, tt.want, tt.detail)
			}
			s.check(t)
		})
	}
}

// TestExtractCancelledIsNoImageError: a run stopped by its context fails with the
// context's error, whatever the stream under the tar says about it.
func TestExtractCancelledIsNoImageError(t *testing.T) {
	s := newSandbox(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := io.MultiReader(bytes.NewReader(buildTar(t, reg("a", "x"))[:700]), &failingReader{fmt.Errorf("reading the image: %w", context.Canceled)})
	_, err := ExtractTar(ctx, r, s.root, ExtractOptions{})
	if !errors.Is(err, context.Canceled) || classOf(err) != classNone {
		t.Errorf("error = %v (%v), want context.Canceled, unclassified", err, classOf(err))
	}
}

// smallFS mounts a tmpfs with the given options in a temporary directory (root only)
// and returns the directory; it is unmounted at the end of the test.
func smallFS(t *testing.T, flags uintptr, opts string) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, opts); err != nil {
		t.Fatalf("mounting a tmpfs (%s) on %s: %v", opts, dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// TestExtractWriteFailureClass: a target filesystem that fills up (blocks or inodes)
// or is read-only is a write failure, not an image error.
func TestExtractWriteFailureClass(t *testing.T) {
	many := []member{}
	for i := range 40 {
		many = append(many, reg(fmt.Sprintf("f%02d", i), "x"))
	}
	tests := []struct {
		name    string
		flags   uintptr
		opts    string
		archive func(t *testing.T) []byte
		errno   unix.Errno
	}{
		{"no space left", 0, "size=2m", func(t *testing.T) []byte {
			return buildTar(t, reg("big", string(randomBytes(4<<20))))
		}, unix.ENOSPC},
		{"no inodes left", 0, "size=2m,nr_inodes=16", func(t *testing.T) []byte { return buildTar(t, many...) }, unix.ENOSPC},
		{"read-only", unix.MS_RDONLY, "size=2m", func(t *testing.T) []byte { return buildTar(t, reg("a", "x")) }, unix.EROFS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			archive := tt.archive(t)
			dir := smallFS(t, tt.flags, tt.opts)
			_, err := ExtractTar(context.Background(), bytes.NewReader(archive), dir, ExtractOptions{Sparse: true})
			if classOf(err) != classWrite || !errors.Is(err, tt.errno) {
				t.Errorf("error = %v (%v), want a write failure with %v", err, classOf(err), tt.errno)
			}
		})
	}
}

// TestClassifyErrno: the errno of a failed filesystem operation says whose fault it
// is: the target's (full, failing, read-only: a write failure) or, in the extracted
// tree, the archive's (what it asks for cannot exist: an image error). Writing a device
// only knows the first. Others stay unclassified, and so does everything once the run
// is cancelled.
func TestClassifyErrno(t *testing.T) {
	for _, tt := range []struct {
		errno        unix.Errno
		tree, device class
	}{
		{unix.ENOSPC, classWrite, classWrite}, {unix.EDQUOT, classWrite, classWrite}, {unix.EIO, classWrite, classWrite},
		{unix.EROFS, classWrite, classWrite}, {unix.EFBIG, classWrite, classWrite}, {unix.EUCLEAN, classWrite, classWrite},
		{unix.EBADMSG, classWrite, classWrite}, {unix.ENXIO, classWrite, classWrite}, {unix.ENODEV, classWrite, classWrite},
		{unix.ELOOP, classImage, classNone}, {unix.ENOTDIR, classImage, classNone}, {unix.EISDIR, classImage, classNone},
		{unix.ENOTEMPTY, classImage, classNone}, {unix.EEXIST, classImage, classNone}, {unix.ENAMETOOLONG, classImage, classNone},
		{unix.EINVAL, classImage, classNone}, {unix.EOVERFLOW, classImage, classNone}, {unix.ERANGE, classImage, classNone},
		{unix.EPERM, classImage, classNone}, {unix.EMLINK, classImage, classNone}, {unix.EXDEV, classImage, classNone},
		{unix.EOPNOTSUPP, classImage, classNone}, {unix.E2BIG, classImage, classNone},
		{unix.EACCES, classNone, classNone}, {unix.ENOENT, classNone, classNone}, {unix.EBUSY, classNone, classNone},
	} {
		err := fmt.Errorf("extracting %q: %w", "x", tt.errno)
		if got := classify(context.Background(), treeFault, err); classOf(got) != tt.tree || !errors.Is(got, tt.errno) {
			t.Errorf("tree, %v: %v (%v), want %v", tt.errno, got, classOf(got), tt.tree)
		}
		if got := classify(context.Background(), deviceFault, err); classOf(got) != tt.device || !errors.Is(got, tt.errno) {
			t.Errorf("device, %v: %v (%v), want %v", tt.errno, got, classOf(got), tt.device)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, judge := range []func(error) error{treeFault, deviceFault} {
		if err := classify(ctx, judge, unix.ENOSPC); classOf(err) != classNone {
			t.Errorf("cancelled: %v is %v, want unclassified", err, classOf(err))
		}
	}
}

// extImage is a raw "ext4" image of n random bytes that passes the magic check.
func extImage(n int) []byte {
	b := randomBytes(n)
	binary.LittleEndian.PutUint16(b[1080:], 0xEF53)
	return b
}

// TestWriteRawErrorClass: a raw image that does not fit or is not the planned
// filesystem is an image error; a device that fails while written is a write failure.
func TestWriteRawErrorClass(t *testing.T) {
	ext4 := &partition.Filesystem{Type: "ext4", UUID: "0d7a6ad8-8b36-4ad6-9bcd-7b1ee0b4a2f1"}
	device := func(dir string, size int64) string {
		p := filepath.Join(dir, "dev")
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name   string
		full   bool // the device is a sparse file on a full tmpfs (root only)
		src    io.Reader
		want   class
		detail string
	}{
		{"larger than the device", false, bytes.NewReader(extImage(3 << 20)), classImage, "larger than the device"},
		{"not the planned filesystem", false, bytes.NewReader(randomBytes(1 << 20)), classImage, "the plan says ext4"},
		{"empty", false, bytes.NewReader(nil), classImage, "empty"},
		{"a read error", false, io.MultiReader(bytes.NewReader(extImage(1<<20)), &failingReader{errors.New("connection reset")}), classImage, "connection reset"},
		{"a cut that looks like an end", false, io.MultiReader(bytes.NewReader(extImage(1<<20+7)), &failingReader{io.ErrUnexpectedEOF}), classImage, "unexpected EOF"},
		{"a full device", true, bytes.NewReader(extImage(3 << 20)), classWrite, "no space left"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.full {
				dir = smallFS(t, 0, "size=1m")
			}
			dev := device(dir, 2<<20)
			if tt.full {
				dev = device(dir, 4<<20)
			}
			_, err := WriteRaw(context.Background(), &run.Fake{}, disk.Sys{}, tt.src, dev, ext4)
			if got := classOf(err); got != tt.want || !strings.Contains(fmt.Sprint(err), tt.detail) {
				t.Errorf("error = %v: %v, want %v with %q", err, got, tt.want, tt.detail)
			}
		})
	}
}

// TestHostileEntryIsImageError: a hostile entry is an image error wherever it is met.
func TestHostileEntryIsImageError(t *testing.T) {
	var err error = &HostileEntryError{Entry: "../x", Reason: "climbs"}
	if !errors.Is(err, ErrHostile) || !errors.Is(err, ErrImage) {
		t.Errorf("%v: ErrHostile %v, ErrImage %v", err, errors.Is(err, ErrHostile), errors.Is(err, ErrImage))
	}
}
