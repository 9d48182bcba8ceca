// Package deb reads Debian packages in pure Go and fetches them with apt, for the
// build-host tools that assemble boot material from Debian's kernel and busybox
// (internal/testimage, initramfs). Nothing is ever installed: apt-get download writes a
// .deb into a directory and Walk reads its data member.
//
// A .deb is read in Go rather than with dpkg -x or tar because the machines that run the
// builders may lack dpkg-deb's helpers, unpacking a whole kernel (100 MB of modules) only
// to keep a few files is wasteful, and a reader here needs no root and no temp tree.
package deb

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// arMagic opens every ar archive, and so every .deb.
const arMagic = "!<arch>\n"

// arHeaderLen is the size of an ar member header: name 16, mtime 12, uid 6, gid 6,
// mode 8, size 10, and the two-byte terminator "`\n".
const arHeaderLen = 60

// arReader walks the members of an ar archive read as a stream, so a .deb is never
// loaded into memory whole.
type arReader struct {
	r       *bufio.Reader
	cur     io.Reader // the unread rest of the current member
	padding bool      // the current member has odd size: one pad byte follows it
}

// newArReader checks the global header and returns a reader positioned before the
// first member.
func newArReader(r io.Reader) (*arReader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, fmt.Errorf("reading ar header: %w", noEOF(err))
	}
	if string(magic) != arMagic {
		return nil, fmt.Errorf("not an ar archive (starts with %q)", magic)
	}
	return &arReader{r: br}, nil
}

// next skips what is left of the current member and returns the name and content of
// the following one; io.EOF after the last member.
func (a *arReader) next() (string, io.Reader, error) {
	if a.cur != nil {
		if _, err := io.Copy(io.Discard, a.cur); err != nil {
			return "", nil, fmt.Errorf("skipping ar member: %w", noEOF(err))
		}
		// A missing pad byte after the last member loses nothing: tolerate it.
		if a.padding {
			if _, err := a.r.Discard(1); err != nil && !errors.Is(err, io.EOF) {
				return "", nil, fmt.Errorf("skipping ar padding: %w", err)
			}
		}
		a.cur = nil
	}
	var hdr [arHeaderLen]byte
	n, err := io.ReadFull(a.r, hdr[:])
	if n == 0 && errors.Is(err, io.EOF) {
		return "", nil, io.EOF
	}
	if err != nil {
		return "", nil, fmt.Errorf("reading ar member header: %w", noEOF(err))
	}
	if string(hdr[58:60]) != "`\n" {
		return "", nil, fmt.Errorf("corrupt ar member header %q", hdr[:])
	}
	// GNU ar ends names with "/"; dpkg-deb pads with spaces. Accept both.
	name := strings.TrimRight(strings.TrimRight(string(hdr[0:16]), " "), "/")
	size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
	if err != nil || size < 0 {
		return "", nil, fmt.Errorf("ar member %q: bad size %q", name, hdr[48:58])
	}
	a.cur = &memberReader{r: a.r, n: size}
	a.padding = size%2 == 1
	return name, a.cur, nil
}

// memberReader reads the n bytes of one member and reports io.ErrUnexpectedEOF when the
// archive ends before them, which io.LimitedReader would pass off as a clean end.
type memberReader struct {
	r io.Reader
	n int64
}

func (m *memberReader) Read(p []byte) (int, error) {
	if m.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > m.n {
		p = p[:m.n]
	}
	n, err := m.r.Read(p)
	m.n -= int64(n)
	if errors.Is(err, io.EOF) && m.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// noEOF turns a bare EOF into ErrUnexpectedEOF: inside an archive, running out of bytes
// is always truncation, never a clean end.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ErrStop, returned by a WalkFunc, ends the walk without error: a kernel package is
// 100 MB or more of tar behind a slow pure-Go xz decoder, and callers that want a few
// files stop as soon as they have them.
var ErrStop = errors.New("stop walking the package")

// WalkFunc is called by Walk for each entry of a package's data archive. name is the
// entry's path made relative and clean ("./boot/x" becomes "boot/x"); the entry's
// content, if any, is read from r before the function returns.
type WalkFunc func(name string, hdr *tar.Header, r io.Reader) error

// Walk calls fn for every entry of the data.tar.* member of the .deb at debPath. fn's
// errors come back prefixed with the package's path; ErrStop ends the walk early with a
// nil error. ctx is checked while decompressing, because a kernel package takes seconds
// to read.
func Walk(ctx context.Context, debPath string, fn WalkFunc) error {
	f, err := os.Open(debPath)
	if err != nil {
		return fmt.Errorf("deb: %w", err)
	}
	defer f.Close()
	ar, err := newArReader(&ctxReader{ctx: ctx, r: f})
	if err != nil {
		return fmt.Errorf("deb: %s: %w", debPath, err)
	}
	for {
		name, member, err := ar.next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("deb: %s: no data.tar member", debPath)
		}
		if err != nil {
			return fmt.Errorf("deb: %s: %w", debPath, err)
		}
		if !strings.HasPrefix(name, "data.tar") {
			continue
		}
		if err := walkTar(name, member, fn); err != nil {
			return fmt.Errorf("deb: %s: %w", debPath, err)
		}
		return nil
	}
}

// walkTar decompresses the member called name (data.tar, .gz, .xz or .zst, the
// compressions dpkg-deb can write) and calls fn for each entry.
func walkTar(name string, member io.Reader, fn WalkFunc) error {
	var r io.Reader
	switch name {
	case "data.tar":
		r = member
	case "data.tar.gz":
		zr, err := gzip.NewReader(member)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer zr.Close()
		r = zr
	case "data.tar.xz":
		xr, err := xz.NewReader(member)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r = xr
	case "data.tar.zst":
		zr, err := zstd.NewReader(member)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer zr.Close()
		r = zr
	default:
		return fmt.Errorf("%s: unsupported compression", name)
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rel := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if err := fn(rel, hdr, tr); errors.Is(err, ErrStop) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// ctxReader fails reads once ctx is done, so a long decompression stops on cancel.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ExtractFile writes the regular file called name (relative, e.g. "bin/busybox") of the
// .deb at debPath to dst with mode perm, and stops reading the package there. A package
// without that file is an error naming both.
func ExtractFile(ctx context.Context, debPath, name, dst string, perm os.FileMode) error {
	done := false
	err := Walk(ctx, debPath, func(n string, hdr *tar.Header, r io.Reader) error {
		if n != name || hdr.Typeflag != tar.TypeReg {
			return nil
		}
		done = true
		if err := WriteFile(dst, r, perm); err != nil {
			return err
		}
		return ErrStop
	})
	if err != nil {
		return err
	}
	if !done {
		return fmt.Errorf("deb: %s has no %s", debPath, name)
	}
	return nil
}

// WriteFile creates name with mode perm and copies r into it. Its errors carry no
// package prefix: inside a WalkFunc, Walk adds the package's path.
func WriteFile(name string, r io.Reader, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err // names the file already
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
