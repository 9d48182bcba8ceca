package testimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// A .deb is read in Go rather than with dpkg -x or tar because the machines that run the
// tests may lack dpkg-deb's helpers, unpacking a whole kernel (100 MB of modules) only to
// keep seven files is wasteful, and a reader here needs no root and no temp tree.

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

// errStopWalk, returned by a walkDebData callback, ends the walk without error: the
// kernel package is 100 MB of tar behind a slow pure-Go xz decoder (4-5 s), and the
// files we keep are all out after about two thirds of it.
var errStopWalk = errors.New("stop walking")

// walkDebData calls fn for every entry of the data.tar.* member of the .deb at debPath,
// with the entry's name made relative ("./boot/x" becomes "boot/x"). fn may read the
// entry's content from tr; its errors come back prefixed with the package's path. ctx is checked while decompressing, because a kernel package
// takes seconds to read.
func walkDebData(ctx context.Context, debPath string, fn func(name string, hdr *tar.Header, tr io.Reader) error) error {
	f, err := os.Open(debPath)
	if err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	defer f.Close()
	ar, err := newArReader(&ctxReader{ctx: ctx, r: f})
	if err != nil {
		return fmt.Errorf("testimage: %s: %w", debPath, err)
	}
	for {
		name, member, err := ar.next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("testimage: %s: no data.tar member", debPath)
		}
		if err != nil {
			return fmt.Errorf("testimage: %s: %w", debPath, err)
		}
		if !strings.HasPrefix(name, "data.tar") {
			continue
		}
		if err := walkTar(name, member, fn); err != nil {
			return fmt.Errorf("testimage: %s: %w", debPath, err)
		}
		return nil
	}
}

// walkTar decompresses the member called name (data.tar, .gz, .xz or .zst, the
// compressions dpkg-deb can write) and calls fn for each entry.
func walkTar(name string, member io.Reader, fn func(name string, hdr *tar.Header, tr io.Reader) error) error {
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
		if err := fn(rel, hdr, tr); errors.Is(err, errStopWalk) {
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

// stage1Modules are the modules the stage-1 initramfs loads, in this order (each needs
// the ones before it), so that /dev/vda exists: MACHINE-NOTES §5.
var stage1Modules = []string{
	"virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko",
	"virtio_pci_legacy_dev.ko", "virtio_pci.ko", "virtio_blk.ko",
}

// kernelFiles is what extractKernel keeps from a linux-image package.
type kernelFiles struct {
	Vmlinuz string   // path of the written kernel image
	Modules []string // paths of the written modules, in stage1Modules order
}

// extractKernel reads the linux-image .deb at debPath and writes boot/vmlinuz-<ver> to
// dir/vmlinuz and the stage-1 modules found under [usr/]lib/modules/<ver>/kernel to
// dir/modules/. A module that is absent must be listed in the package's modules.builtin
// (when it ships one): otherwise the kernel could not reach its root disk, and a boot
// that waits 10 s for /dev/vda is a far more confusing failure than this error.
func extractKernel(ctx context.Context, debPath, ver, dir string) (kernelFiles, error) {
	var kf kernelFiles
	wanted := make(map[string]bool, len(stage1Modules))
	for _, m := range stage1Modules {
		wanted[m] = true
	}
	found := map[string]string{}
	var builtin []byte
	sawBuiltin := false
	modRoot := "lib/modules/" + ver + "/"
	modDir := filepath.Join(dir, kitModules)
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return kf, fmt.Errorf("testimage: %w", err)
	}
	// Once the kernel and every module are out, the rest (modules.builtin included,
	// which matters only for a missing module) need not be decompressed.
	stopWhenAll := func() error {
		if kf.Vmlinuz != "" && len(found) == len(stage1Modules) {
			return errStopWalk
		}
		return nil
	}
	err := walkDebData(ctx, debPath, func(name string, hdr *tar.Header, tr io.Reader) error {
		// Merged-/usr packages (Debian 13 on) put the modules under usr/lib/modules.
		name = strings.TrimPrefix(name, "usr/")
		switch {
		case name == "boot/vmlinuz-"+ver && hdr.Typeflag == tar.TypeReg:
			kf.Vmlinuz = filepath.Join(dir, kitVmlinuz)
			if err := writeFile(kf.Vmlinuz, tr, 0o644); err != nil {
				return err
			}
			return stopWhenAll()
		case name == modRoot+"modules.builtin" && hdr.Typeflag == tar.TypeReg:
			b, err := io.ReadAll(tr)
			builtin, sawBuiltin = b, true
			return err
		case !strings.HasPrefix(name, modRoot+"kernel/"):
			return nil
		}
		base := path.Base(name)
		if wanted[base] && hdr.Typeflag == tar.TypeReg {
			dst := filepath.Join(modDir, base)
			found[base] = dst
			if err := writeFile(dst, tr, 0o644); err != nil {
				return err
			}
			return stopWhenAll()
		}
		for _, ext := range []string{".xz", ".zst", ".gz"} {
			if wanted[strings.TrimSuffix(base, ext)] && strings.HasSuffix(base, ext) {
				return fmt.Errorf("module %s is compressed (%s); the stage-1 "+
					"insmod needs plain .ko files as Debian 12 ships them", name, ext)
			}
		}
		return nil
	})
	if err != nil {
		return kf, err
	}
	if kf.Vmlinuz == "" {
		return kf, fmt.Errorf("testimage: %s has no boot/vmlinuz-%s", debPath, ver)
	}
	for _, m := range stage1Modules {
		if p, ok := found[m]; ok {
			kf.Modules = append(kf.Modules, p)
			continue
		}
		if sawBuiltin && !listsBuiltin(builtin, m) {
			return kf, fmt.Errorf("testimage: %s: %s is neither a module under %skernel nor built in", debPath, m, modRoot)
		}
	}
	return kf, nil
}

// listsBuiltin reports whether modules.builtin (lines like
// "kernel/drivers/virtio/virtio.ko") names the module with base name mod.
func listsBuiltin(builtin []byte, mod string) bool {
	for _, line := range bytes.Split(builtin, []byte("\n")) {
		if path.Base(string(bytes.TrimSpace(line))) == mod {
			return true
		}
	}
	return false
}

// extractBusybox writes bin/busybox of the busybox-static .deb at debPath to dst.
func extractBusybox(ctx context.Context, debPath, dst string) error {
	done := false
	err := walkDebData(ctx, debPath, func(name string, hdr *tar.Header, tr io.Reader) error {
		if name != "bin/busybox" || hdr.Typeflag != tar.TypeReg {
			return nil
		}
		done = true
		if err := writeFile(dst, tr, 0o755); err != nil {
			return err
		}
		return errStopWalk
	})
	if err != nil {
		return err
	}
	if !done {
		return fmt.Errorf("testimage: %s has no bin/busybox", debPath)
	}
	return nil
}

// writeFile creates name with mode and copies r into it. Its errors carry no package
// prefix: walkDebData adds it with the package's path.
func writeFile(name string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
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
