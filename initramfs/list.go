package initramfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// Record is one entry of a ramdisk archive, as List reads it back.
type Record struct {
	Path         string      // relative to the ramdisk's root, e.g. "usr/bin/busybox"
	Mode         fs.FileMode // type and permission bits
	Size         int64       // content size of a regular file
	Link         string      // target of a symlink
	Major, Minor uint32      // device numbers of a device node
}

// String renders r as one manifest line, like ls -l: mode, size (or device numbers),
// path, and the target of a symlink.
func (r Record) String() string {
	m := lsMode(r.Mode)
	switch {
	case r.Mode&fs.ModeSymlink != 0:
		return fmt.Sprintf("%s %9s %s -> %s", m, "", r.Path, r.Link)
	case r.Mode&fs.ModeDevice != 0:
		return fmt.Sprintf("%s %9s %s", m, fmt.Sprintf("%d,%d", r.Major, r.Minor), r.Path)
	case r.Mode.IsDir():
		return fmt.Sprintf("%s %9s %s/", m, "", r.Path)
	}
	return fmt.Sprintf("%s %9d %s", m, r.Size, r.Path)
}

// lsMode renders m as ls -l does ("drwxrwxrwt", "crw-------"); fs.FileMode's own
// String uses Go's letters ("dtrwxrwxrwx", "Dcrw-------").
func lsMode(m fs.FileMode) string {
	b := []byte("-rwxrwxrwx")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	case m&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case m&fs.ModeDevice != 0:
		b[0] = 'b'
	case m&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case m&fs.ModeSocket != 0:
		b[0] = 's'
	}
	for i := range 9 {
		if m&(1<<uint(8-i)) == 0 {
			b[i+1] = '-'
		}
	}
	special := func(i int, set bool, lower, upper byte) {
		if !set {
			return
		}
		if b[i] == '-' {
			b[i] = upper
		} else {
			b[i] = lower
		}
	}
	special(3, m&fs.ModeSetuid != 0, 's', 'S')
	special(6, m&fs.ModeSetgid != 0, 's', 'S')
	special(9, m&fs.ModeSticky != 0, 't', 'T')
	return string(b)
}

// Magic numbers that tell the archive's compression.
var (
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
	gzipMagic = []byte{0x1f, 0x8b}
)

// List reads back the ramdisk archive at path (zstd- or gzip-compressed, or plain newc
// cpio, told apart by their first bytes) and returns its records in archive order, the
// trailer left out. It is the manifest tests check and `mkramdisk -list` prints.
func List(path string) ([]Record, error) {
	var recs []Record
	err := walkArchive(path, func(r Record, _ io.Reader) error {
		recs = append(recs, r)
		return nil
	})
	return recs, err
}

// walkArchive calls fn for each record of the archive at path, in order. content reads
// the record's data (a regular file's bytes, a symlink's target) and is valid until fn
// returns; fn need not read it.
func walkArchive(path string, fn func(r Record, content io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	head, err := br.Peek(4)
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", path, noEOF(err))
	}
	var r io.Reader = br
	switch {
	case bytes.Equal(head, zstdMagic):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return fmt.Errorf("initramfs: %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	case bytes.Equal(head[:2], gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("initramfs: %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	if err := readRecords(r, fn); err != nil {
		return fmt.Errorf("initramfs: %s: %w", path, err)
	}
	return nil
}

// readRecords reads a newc cpio stream up to its trailer, calling fn for each record.
func readRecords(r io.Reader, fn func(r Record, content io.Reader) error) error {
	rr := cpio.Newc.Reader(&forwardReaderAt{r: r})
	for n := 0; ; n++ {
		rec, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			if n == 0 {
				return errors.New("no cpio records")
			}
			return nil
		}
		if err != nil {
			return err
		}
		out := Record{Path: rec.Name, Mode: fileMode(rec.Mode), Major: uint32(rec.Rmajor), Minor: uint32(rec.Rminor)}
		content := io.NewSectionReader(rec, 0, int64(rec.FileSize))
		switch {
		case out.Mode&fs.ModeSymlink != 0:
			b, err := io.ReadAll(content)
			if err != nil {
				return fmt.Errorf("reading the target of %s: %w", rec.Name, err)
			}
			out.Link = string(b)
			content = io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b)))
		case out.Mode.IsRegular():
			out.Size = int64(rec.FileSize)
		}
		if err := fn(out, content); err != nil {
			return err
		}
	}
}

// fileMode converts a cpio (Linux) mode to an fs.FileMode.
func fileMode(m uint64) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&cpio.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&cpio.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&cpio.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	switch m & cpio.S_IFMT {
	case cpio.S_IFDIR:
		mode |= fs.ModeDir
	case cpio.S_IFLNK:
		mode |= fs.ModeSymlink
	case cpio.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case cpio.S_IFBLK:
		mode |= fs.ModeDevice
	case cpio.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case cpio.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	return mode
}

// forwardReaderAt serves ReadAt from a stream, for cpio's reader, which only ever reads
// forward: skipped bytes (file contents nobody asked for) are discarded.
type forwardReaderAt struct {
	r   io.Reader
	pos int64
}

func (f *forwardReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < f.pos {
		return 0, fmt.Errorf("cpio reader went back from %d to %d", f.pos, off)
	}
	if off > f.pos {
		n, err := io.CopyN(io.Discard, f.r, off-f.pos)
		f.pos += n
		if err != nil {
			return 0, noEOF(err)
		}
	}
	// io.EOF when nothing was left (the end cpio's reader expects after the trailer),
	// io.ErrUnexpectedEOF for a torn record.
	n, err := io.ReadFull(f.r, p)
	f.pos += int64(n)
	return n, err
}

// noEOF turns a bare EOF into ErrUnexpectedEOF: inside an archive, running out of bytes
// is truncation, never a clean end.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// compressor returns a writer that compresses into w with comp (compZstd or compGzip).
// Both are deterministic: the same input gives the same bytes (gzip with a zero header
// time, zstd's stream encoder whatever its concurrency).
func compressor(w io.Writer, comp string) (io.WriteCloser, error) {
	switch comp {
	case compZstd:
		// One frame with an 8 MiB window: the kernel's unzstd (lib/decompress_unzstd.c)
		// streams a single frame and sizes its buffer from the frame's window.
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(8<<20))
	case compGzip:
		return gzip.NewWriterLevel(w, gzip.BestCompression)
	}
	return nil, fmt.Errorf("initramfs: unknown compression %q", comp)
}
