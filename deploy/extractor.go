package deploy

import (
	"archive/tar"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// extractor is the state of one ExtractTar: the root's directory fd, through which every
// path is resolved, and what is reused from entry to entry.
type extractor struct {
	rootFD int // O_RDONLY, so "./" entries can be fchown'd and fchmod'd through it
	chown  bool
	sparse bool
	log    *slog.Logger
	buf    []byte
	stats  ExtractStats

	// cache is the last parent directory opened: archives list a directory's files
	// together, so most entries skip the path walk. It is forgotten (valid false)
	// whenever something already in the tree is removed, since that may change where a
	// path leads; its fd stays open until replaced, as the current entry may use it.
	cache struct {
		dir   string
		fd    int
		valid bool
	}
	dirTimes  []dirTime
	warnedACL bool
}

// dirTime is a directory's times, set after everything was extracted: creating entries
// inside a directory changes its mtime.
type dirTime struct {
	path, name string // path in the root ("" for the root) and the entry's name
	ts         [2]unix.Timespec
}

// openExtractor opens root and checks that the kernel can resolve paths safely in it.
func openExtractor(root string, opts ExtractOptions) (*extractor, error) {
	fd, err := openat(unix.AT_FDCWD, root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the extraction root %s: %w", root, err)
	}
	// Fail here, clearly, on a kernel without openat2 (Linux < 5.6) rather than on the
	// first entry: there is no safe way to resolve paths without it.
	probe, err := openat2(fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("extracting into %s: openat2 with RESOLVE_IN_ROOT (Linux 5.6 or later) is needed: %w", root, err)
	}
	unix.Close(probe)
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	x := &extractor{
		rootFD: fd,
		chown:  os.Geteuid() == 0,
		sparse: opts.Sparse,
		log:    log,
		buf:    make([]byte, extractBufSize),
	}
	x.cache.fd = -1
	return x, nil
}

// close releases the fds; it is deferred by ExtractTar, so also runs on errors.
func (x *extractor) close() {
	if x.cache.fd >= 0 {
		unix.Close(x.cache.fd)
	}
	unix.Close(x.rootFD)
}

// parentDir returns an fd (owned by the cache: do not close it) of directory dir of the
// root, resolved in the root. With create, missing directories are made (mode 0755, as
// GNU tar makes them for archives that do not list every directory).
func (x *extractor) parentDir(entry, dir string, create bool) (int, error) {
	if dir == "" {
		return x.rootFD, nil
	}
	if x.cache.valid && x.cache.dir == dir {
		return x.cache.fd, nil
	}
	fd, err := x.resolve(entry, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err == unix.ENOENT && create {
		fd, err = x.mkdirAll(entry, dir)
	}
	if err != nil {
		var he *HostileEntryError
		if errors.As(err, &he) {
			return -1, err
		}
		return -1, fmt.Errorf("extracting %q: opening its directory %s: %w", entry, dir, err)
	}
	if x.cache.fd >= 0 {
		unix.Close(x.cache.fd)
	}
	x.cache.dir, x.cache.fd, x.cache.valid = dir, fd, true
	return fd, nil
}

// resolve opens p (relative to the root) with flags, as if the root were "/". Almost
// every path resolves beneath the root without help (RESOLVE_BENEATH); one that goes
// through an absolute symlink, or climbs out with "..", fails that with EXDEV and is
// looked at closer: climbing out is hostile, an absolute symlink is followed inside the
// root (RESOLVE_IN_ROOT). Magic links (/proc/self/...) are never followed.
func (x *extractor) resolve(entry, p string, flags int) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := openat2(x.rootFD, p, &how)
	if err != unix.EXDEV {
		return fd, err
	}
	reason, err := x.leavesRoot(p)
	if err != nil {
		return -1, err
	}
	if reason != "" {
		return -1, &HostileEntryError{Entry: entry, Reason: reason}
	}
	how.Resolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS
	return openat2(x.rootFD, p, &how)
}

// maxSymlinks is the kernel's limit on symlinks followed in one path walk.
const maxSymlinks = 40

// leavesRoot walks p from the root as the kernel does, reading symlinks, and says why
// when the walk would climb above the root (which RESOLVE_IN_ROOT would silently clamp):
// a symlink whose target climbs out of the tree exists only to escape. It only reads;
// the walk stops, with no reason, where the path does not exist (yet).
func (x *extractor) leavesRoot(p string) (string, error) {
	// step is a path component still to walk and the symlink whose target it came
	// from ("" for the entry's own name), which is the one to blame for a "..".
	type step struct{ c, from string }
	var todo []step
	for c := range strings.SplitSeq(p, "/") {
		todo = append(todo, step{c: c})
	}
	var stack []string // real directories from the root down to where the walk is
	buf := make([]byte, unix.PathMax)
	for links := 0; len(todo) > 0; {
		s := todo[0]
		todo = todo[1:]
		switch s.c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return fmt.Sprintf("its path goes through the symlink %s, which leads out of the root", s.from), nil
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := strings.Join(append(stack[:len(stack):len(stack)], s.c), "/")
		n, err := unix.Readlinkat(x.rootFD, cur, buf)
		switch {
		case err == unix.EINVAL: // not a symlink
			stack = append(stack, s.c)
			continue
		case err == unix.ENOENT || err == unix.ENOTDIR:
			return "", nil
		case err != nil:
			return "", err
		}
		if links++; links > maxSymlinks {
			return "", unix.ELOOP
		}
		target := string(buf[:n])
		from := fmt.Sprintf("%q -> %q", cur, target)
		if strings.HasPrefix(target, "/") {
			stack = stack[:0]
		}
		var expanded []step
		for c := range strings.SplitSeq(target, "/") {
			expanded = append(expanded, step{c: c, from: from})
		}
		todo = append(expanded, todo...)
	}
	return "", nil
}

// mkdirAll makes the missing directories of dir, each inside the one before it as
// resolved in the root, and returns an fd of dir. A symlink in the way that leads
// nowhere in the root ("evil -> /elsewhere", then "evil/x") is hostile: following it
// would mean creating the symlink's target, which a real tree's archive never needs.
func (x *extractor) mkdirAll(entry, dir string) (int, error) {
	cur := x.rootFD
	release := func() {
		if cur != x.rootFD {
			unix.Close(cur)
		}
	}
	prefix := ""
	for c := range strings.SplitSeq(dir, "/") {
		if prefix != "" {
			prefix += "/"
		}
		prefix += c
		fd, err := x.resolve(entry, prefix, unix.O_PATH|unix.O_DIRECTORY)
		if err == unix.ENOENT {
			err = unix.Mkdirat(cur, c, 0o755)
			if err == unix.EEXIST {
				var st unix.Stat_t
				if unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
					release()
					return -1, &HostileEntryError{Entry: entry, Reason: fmt.Sprintf("its directory %q is a symlink to nothing in the root", prefix)}
				}
				err = nil // made meanwhile: use it
			}
			if err == nil {
				fd, err = openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		release()
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// fdMeta sets owner, mode and xattrs through an open fd, in the order that keeps setuid
// bits and capabilities (chown clears both).
func (x *extractor) fdMeta(hdr *tar.Header, fd int) error {
	if x.chown {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("extracting %q: setting owner %d:%d: %w", hdr.Name, hdr.Uid, hdr.Gid, err)
		}
	}
	if err := unix.Fchmod(fd, tarMode(hdr)); err != nil {
		return fmt.Errorf("extracting %q: setting mode %04o: %w", hdr.Name, tarMode(hdr), err)
	}
	return setXattrs(hdr, func(attr string, value []byte) error { return unix.Fsetxattr(fd, attr, value, 0) })
}

// pathMeta sets owner, mode (not for symlinks, which have none), xattrs and times of
// something that cannot be opened without side effects (a symlink would be followed, a
// device opened, a FIFO block): by name in its parent, never following a symlink.
func (x *extractor) pathMeta(hdr *tar.Header, pfd int, base string, isLink bool) error {
	if x.chown {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("extracting %q: setting owner %d:%d: %w", hdr.Name, hdr.Uid, hdr.Gid, err)
		}
	}
	if !isLink {
		// base was just made by mknodat in pfd, so it is no symlink to follow.
		if err := unix.Fchmodat(pfd, base, tarMode(hdr), 0); err != nil {
			return fmt.Errorf("extracting %q: setting mode %04o: %w", hdr.Name, tarMode(hdr), err)
		}
	}
	if hasXattrs(hdr) {
		// There is no lsetxattrat: name the file through the parent's fd in /proc; the
		// last component is not followed.
		p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
		if err := setXattrs(hdr, func(attr string, value []byte) error { return unix.Lsetxattr(p, attr, value, 0) }); err != nil {
			return err
		}
	}
	return setTimes(hdr, pfd, base)
}

func hasXattrs(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, xattrPrefix) {
			return true
		}
	}
	return false
}

// setTimes sets the entry's times on base in pfd, on a symlink itself rather than its target.
func setTimes(hdr *tar.Header, pfd int, base string) error {
	ts := tarTimes(hdr)
	if err := unix.UtimesNanoAt(pfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("extracting %q: setting times: %w", hdr.Name, err)
	}
	return nil
}

// fixDirTimes sets every extracted directory's times, now that nothing more is created
// inside them. A directory that a later entry replaced is skipped.
func (x *extractor) fixDirTimes() error {
	for _, d := range x.dirTimes {
		if d.path == "" {
			if err := unix.UtimesNanoAt(x.rootFD, ".", d.ts[:], 0); err != nil {
				return fmt.Errorf("extracting %q: setting times: %w", d.name, err)
			}
			continue
		}
		dir, base := splitName(d.path)
		pfd, err := x.parentDir(d.name, dir, false)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, ErrHostile) {
				continue
			}
			return err
		}
		var st unix.Stat_t
		if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if err := unix.UtimesNanoAt(pfd, base, d.ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("extracting %q: setting times: %w", d.name, err)
		}
	}
	return nil
}

// linkFD hard-links the file open as tfd (O_PATH) to base in pfd. AT_EMPTY_PATH needs
// CAP_DAC_READ_SEARCH; without it the /proc name of the fd does the same.
func linkFD(tfd, pfd int, base string) error {
	err := unix.Linkat(tfd, "", pfd, base, unix.AT_EMPTY_PATH)
	if err == unix.ENOENT || err == unix.EPERM {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(tfd), pfd, base, unix.AT_SYMLINK_FOLLOW)
	}
	return err
}

// openat and openat2 retry when a signal interrupted them (Go's runtime sends signals
// to preempt goroutines; slow filesystems let them interrupt), and openat2 also when a
// concurrent rename made the kernel give up on a safe walk (EAGAIN).
func openat(dirfd int, p string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, p, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func openat2(dirfd int, p string, how *unix.OpenHow) (int, error) {
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(dirfd, p, how)
		if err != unix.EINTR && (err != unix.EAGAIN || tries > 100) {
			return fd, err
		}
	}
}

// pwriteAll writes all of b at off, at most maxWrite bytes per pwrite.
func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b[:min(len(b), maxWrite)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.EIO
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}
