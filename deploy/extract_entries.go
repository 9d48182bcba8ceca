package deploy

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"golang.org/x/sys/unix"
)

// This file makes each kind of entry; extractor.go resolves where, and sets metadata.

// file extracts a regular file: data, then owner, mode, xattrs and times, in that order.
func (x *extractor) file(ctx context.Context, hdr *tar.Header, r io.Reader, pfd int, base string) error {
	fd, err := x.create(hdr.Name, pfd, base, false, func() (int, error) {
		return openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	})
	if err != nil {
		return err
	}
	n, err := x.writeData(ctx, fd, r)
	x.stats.Bytes += n
	if err != nil {
		err = fmt.Errorf("extracting %q: %w", hdr.Name, err)
	} else {
		err = x.fdMeta(hdr, fd)
	}
	if err == nil {
		err = setTimes(hdr, pfd, base)
	}
	// close reports delayed write errors on some filesystems, so it is checked too.
	if cerr := unix.Close(fd); cerr != nil && err == nil {
		err = fmt.Errorf("extracting %q: closing: %w", hdr.Name, cerr)
	}
	if err != nil {
		return err
	}
	x.stats.Files++
	return nil
}

// writeData copies an entry's data into fd from offset 0 and returns how many bytes the
// entry had. With Sparse, all-zero blocks are skipped and the size set at the end.
func (x *extractor) writeData(ctx context.Context, fd int, r io.Reader) (int64, error) {
	var off int64
	hole := false // the data so far ends in a skipped block
	for {
		n, rerr := fill(r, x.buf)
		if n > 0 {
			var err error
			if x.sparse {
				hole, err = writeSparse(fd, x.buf[:n], off)
			} else {
				err = pwriteAll(fd, x.buf[:n], off)
			}
			if err != nil {
				return off, fmt.Errorf("writing at byte %d: %w", off, err)
			}
			off += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return off, classify(ctx, streamFault, fmt.Errorf("reading its data: %w", rerr))
		}
		if err := ctx.Err(); err != nil {
			return off, err
		}
	}
	if hole {
		if err := unix.Ftruncate(fd, off); err != nil {
			return off, fmt.Errorf("setting the size of a sparse file: %w", err)
		}
	}
	return off, nil
}

// fill reads into b until it is full (nil error) or r ends (io.EOF, possibly with n > 0).
// Unlike io.ReadFull it keeps a clean end apart from archive/tar's io.ErrUnexpectedEOF,
// which means the stream was cut.
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// zeroBlock is what blocks are compared with: string(b) == string(zeroBlock[:n]) compiles
// to a vectorised memequal without copying, far faster than a loop over the bytes.
var zeroBlock [sparseBlock]byte

// writeSparse writes the non-zero sparseBlock-sized blocks of b (which starts at file
// offset off, a multiple of the block size) and reports whether b ended in a zero block.
func writeSparse(fd int, b []byte, off int64) (bool, error) {
	start := -1 // first block of the current run of data
	for i := 0; i < len(b); i += sparseBlock {
		end := min(i+sparseBlock, len(b))
		if string(b[i:end]) == string(zeroBlock[:end-i]) {
			if start >= 0 {
				if err := pwriteAll(fd, b[start:i], off+int64(start)); err != nil {
					return false, err
				}
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		return false, pwriteAll(fd, b[start:], off+int64(start))
	}
	return true, nil
}

// dir creates a directory or keeps the one already there, and sets its owner, mode and
// xattrs; its times are set at the very end.
func (x *extractor) dir(hdr *tar.Header, p string, pfd int, base string) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if err == unix.EEXIST {
		var isDir bool
		if isDir, err = x.clear(pfd, base, true); err == nil && !isDir {
			err = unix.Mkdirat(pfd, base, 0o700)
		}
	}
	if err != nil {
		return fmt.Errorf("extracting %q: creating the directory: %w", hdr.Name, err)
	}
	fd, err := openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("extracting %q: opening the directory: %w", hdr.Name, err)
	}
	defer unix.Close(fd)
	if err := x.fdMeta(hdr, fd); err != nil {
		return err
	}
	x.dirTimes = append(x.dirTimes, dirTime{path: p, name: hdr.Name, ts: tarTimes(hdr)})
	x.stats.Dirs++
	return nil
}

// rootDir applies a "./" entry to the root itself, as GNU tar does.
func (x *extractor) rootDir(hdr *tar.Header) error {
	if err := x.fdMeta(hdr, x.rootFD); err != nil {
		return err
	}
	x.dirTimes = append(x.dirTimes, dirTime{path: "", name: hdr.Name, ts: tarTimes(hdr)})
	x.stats.Dirs++
	return nil
}

// symlink creates a symlink as the archive has it: its target is never resolved here,
// only when a later entry's directory goes through it.
func (x *extractor) symlink(hdr *tar.Header, pfd int, base string) error {
	if _, err := x.create(hdr.Name, pfd, base, false, func() (int, error) {
		return -1, unix.Symlinkat(hdr.Linkname, pfd, base)
	}); err != nil {
		return err
	}
	if err := x.pathMeta(hdr, pfd, base, true); err != nil {
		return err
	}
	x.stats.Symlinks++
	return nil
}

// node creates a character or block device or a FIFO.
func (x *extractor) node(hdr *tar.Header, pfd int, base string) error {
	mode := tarMode(hdr)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor > math.MaxUint32 {
		return blame(ErrImage, fmt.Errorf("extracting %q: invalid device number %d:%d", hdr.Name, hdr.Devmajor, hdr.Devminor))
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if _, err := x.create(hdr.Name, pfd, base, false, func() (int, error) {
		return -1, unix.Mknodat(pfd, base, mode, int(dev))
	}); err != nil {
		return err
	}
	if err := x.pathMeta(hdr, pfd, base, false); err != nil {
		return err
	}
	x.stats.Devices++
	return nil
}

// hardlink links base to target, which must already be inside the root and not be a
// directory. Its metadata is the target's: tar repeats it in the header, GNU tar does
// not apply it again either.
func (x *extractor) hardlink(hdr *tar.Header, target string, pfd int, base string) error {
	tfd, err := x.resolve(hdr.Name, target, unix.O_PATH|unix.O_NOFOLLOW)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return &HostileEntryError{Entry: hdr.Name, Reason: fmt.Sprintf("hard link target %q is not in the root", hdr.Linkname)}
	}
	var he *HostileEntryError
	if errors.As(err, &he) {
		return err
	}
	if err != nil {
		return fmt.Errorf("extracting %q: opening its hard link target %q: %w", hdr.Name, hdr.Linkname, err)
	}
	defer unix.Close(tfd)
	var st unix.Stat_t
	if err := unix.Fstat(tfd, &st); err != nil {
		return fmt.Errorf("extracting %q: %w", hdr.Name, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return &HostileEntryError{Entry: hdr.Name, Reason: fmt.Sprintf("hard link target %q is a directory", hdr.Linkname)}
	}
	var cur unix.Stat_t
	if unix.Fstatat(pfd, base, &cur, unix.AT_SYMLINK_NOFOLLOW) == nil && cur.Dev == st.Dev && cur.Ino == st.Ino {
		x.stats.Hardlinks++ // already that file (a link to itself, or a re-run)
		return nil
	}
	if _, err := x.create(hdr.Name, pfd, base, false, func() (int, error) {
		return -1, linkFD(tfd, pfd, base)
	}); err != nil {
		return err
	}
	x.stats.Hardlinks++
	return nil
}

// create runs mk, which makes base in pfd with O_EXCL semantics; when something is
// already there it is removed (a directory only when empty and keepDir is false) and mk
// runs again, so an existing file or symlink is replaced and never followed.
func (x *extractor) create(name string, pfd int, base string, keepDir bool, mk func() (int, error)) (int, error) {
	fd, err := mk()
	if err == unix.EEXIST {
		if _, err = x.clear(pfd, base, keepDir); err == nil {
			fd, err = mk()
		}
	}
	if err != nil {
		return -1, fmt.Errorf("extracting %q: %w", name, err)
	}
	return fd, nil
}

// clear removes what is at base in pfd so that the entry can take its place. It keeps a
// directory when keepDir is set and reports that it did.
func (x *extractor) clear(pfd int, base string, keepDir bool) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, err
	}
	flags := 0
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if keepDir {
			return true, nil
		}
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(pfd, base, flags); err != nil {
		if err == unix.ENOTEMPTY || err == unix.EEXIST {
			return false, fmt.Errorf("a non-empty directory is in the way: %w", err)
		}
		return false, fmt.Errorf("removing what is in the way: %w", err)
	}
	// What was removed may have been on the way to the cached directory.
	x.cache.valid = false
	return false, nil
}

// tarMode is the permission part of an entry's mode, with setuid, setgid and sticky.
func tarMode(hdr *tar.Header) uint32 { return uint32(hdr.Mode) & 0o7777 }

// tarTimes are the atime and mtime to set: the archive's atime only when it has one
// (PAX or GNU), otherwise the time of extraction is left.
func tarTimes(hdr *tar.Header) [2]unix.Timespec {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, timespec(hdr.ModTime.Unix(), hdr.ModTime.Nanosecond())}
	if !hdr.AccessTime.IsZero() {
		ts[0] = timespec(hdr.AccessTime.Unix(), hdr.AccessTime.Nanosecond())
	}
	return ts
}

func timespec(sec int64, nsec int) unix.Timespec { return unix.Timespec{Sec: sec, Nsec: int64(nsec)} }

// xattrPrefix marks the PAX records GNU tar and bsdtar write for extended attributes.
const xattrPrefix = "SCHILY.xattr."

// setXattrs applies the entry's xattrs with set, security.capability last: setting
// anything else afterwards must not be able to disturb it.
func setXattrs(hdr *tar.Header, set func(attr string, value []byte) error) error {
	if len(hdr.PAXRecords) == 0 {
		return nil
	}
	capability, hasCap := "", false
	for k, v := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok {
			continue
		}
		if attr == "security.capability" {
			capability, hasCap = v, true
			continue
		}
		if err := set(attr, []byte(v)); err != nil {
			return fmt.Errorf("extracting %q: setting xattr %s: %w", hdr.Name, attr, err)
		}
	}
	if hasCap {
		if err := set("security.capability", []byte(capability)); err != nil {
			return fmt.Errorf("extracting %q: setting its file capabilities: %w", hdr.Name, err)
		}
	}
	return nil
}
