// Package confine opens, reads and writes files inside a directory tree that is not trusted:
// a deployed image's root, or a boot directory that an image or a tampered disk may have
// filled. No path leads out of the tree: reads resolve symlinks as if the tree were the
// root directory (openat2 RESOLVE_IN_ROOT, as the tar extractor does), writes refuse any
// name that would leave it (os.Root). Files read or written in place must be regular
// files: a device node, FIFO or socket is refused before it is opened, and opens never
// block. Directories that files are written in, and the last component of every file
// written, must not be symlinks at all, so that a path handed to a program (grub-bios-setup)
// means the same on the host as in the tree.
//
// A refusal is an *UnsafeError naming the path, matched by errors.Is(err, ErrUnsafe).
package confine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrUnsafe is matched by every *UnsafeError.
var ErrUnsafe = errors.New("unsafe path")

// UnsafeError is a path inside a tree that is not what the provisioner expects there: a
// symlink, a device node, a FIFO or a socket where a regular file or a directory must be,
// or a name that leaves the tree.
type UnsafeError struct {
	// Path is the path as the host sees it (the tree's top joined with the name).
	Path string
	// Reason says what was found, e.g. "is a block device, not a regular file".
	Reason string
}

// Error returns "<path> <reason>".
func (e *UnsafeError) Error() string { return e.Path + " " + e.Reason }

// Is makes errors.Is(err, ErrUnsafe) true.
func (e *UnsafeError) Is(target error) bool { return target == ErrUnsafe }

// Dir is a directory tree opened for confined access.
type Dir struct {
	// root serves writes: os.Root refuses any name that leads out of the tree.
	root *os.Root
	// dir serves reads, resolved with openat2's RESOLVE_IN_ROOT: symlinks are followed as
	// if the tree were the root directory, so an image's absolute links (etc/os-release ->
	// /usr/lib/os-release) mean what they mean on the booted system, and none leads out.
	dir *os.File
	top string
}

// Open opens the tree whose top is dir. dir itself is trusted: the caller made it (a
// mount point of its own) or reached it through real directories (MakeDir, CheckDir).
func Open(dir string) (*Dir, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	return &Dir{root: r, dir: os.NewFile(uintptr(fd), dir), top: dir}, nil
}

// Close releases the tree's directory descriptors.
func (d *Dir) Close() error {
	d.dir.Close()
	return d.root.Close()
}

// resolve opens name for reading with flags, symlinks resolved inside the tree.
func (d *Dir) resolve(name string, flags uint64) (*os.File, error) {
	c, err := d.rel(name)
	if err != nil {
		return nil, err
	}
	how := unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for tries := 0; ; tries++ {
		fd, err := unix.Openat2(int(d.dir.Fd()), c, &how)
		if err == nil {
			return os.NewFile(uintptr(fd), d.Path(name)), nil
		}
		// EAGAIN: a rename elsewhere raced the lookup, which the kernel then refuses
		// rather than risk an escape; a retry settles it.
		if (errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)) && tries < 64 {
			continue
		}
		return nil, &fs.PathError{Op: "open", Path: d.Path(name), Err: err}
	}
}

// Path returns how the host sees name, for messages and for programs that take paths.
func (d *Dir) Path(name string) string {
	return filepath.Join(d.top, filepath.FromSlash(name))
}

// rel turns name into a slash-separated path relative to the tree's top ("." for the
// top itself). A leading "/" means the top, as in an image's own paths ("/boot"); a name
// that climbs with ".." is refused: every name given here is one of the provisioner's
// own, or checked with Local first.
func (d *Dir) rel(name string) (string, error) {
	name = strings.TrimLeft(filepath.ToSlash(name), "/")
	if name == "" || name == "." {
		return ".", nil
	}
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return "", &UnsafeError{Path: name, Reason: "is not a path below " + d.top}
	}
	return path.Clean(filepath.ToSlash(name)), nil
}

// Local reports whether name, a path read from a file (boot-info.json's grub_dir, say),
// stays below the directory it is relative to: not absolute, no "..", not empty.
func Local(name string) bool {
	return name != "" && filepath.IsLocal(filepath.FromSlash(name))
}

// kind names a file type for refusals.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	}
	return "a special file"
}

func (d *Dir) unsafe(name, reason string) error {
	return &UnsafeError{Path: d.Path(name), Reason: reason}
}

// escapes turns os.Root's refusal of a name that leads out of the tree into an
// *UnsafeError; other errors are returned as they are.
func (d *Dir) escapes(name string, err error) error {
	if err != nil && strings.Contains(err.Error(), "path escapes from parent") {
		return d.unsafe(name, "leads out of "+d.top+" (through a symlink or \"..\")")
	}
	return err
}

// checkDirs walks the directories of name from the top: each must be a real directory,
// not a symlink. With parentsOnly the last component is not checked. With create, missing
// directories are made with perm.
func (d *Dir) checkDirs(name string, parentsOnly bool, perm fs.FileMode) error {
	c, err := d.rel(name)
	if err != nil {
		return err
	}
	if c == "." {
		return nil
	}
	parts := strings.Split(c, "/")
	if parentsOnly {
		parts = parts[:len(parts)-1]
	}
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := d.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) && perm != 0 {
			if err := d.root.Mkdir(p, perm); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("creating %s: %w", d.Path(p), err)
			}
			if fi, err = d.root.Lstat(p); err != nil {
				return fmt.Errorf("creating %s: %w", d.Path(p), err)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", d.Path(p), d.escapes(p, err))
		}
		if !fi.IsDir() {
			return d.unsafe(p, "is "+kind(fi.Mode())+", not a directory")
		}
	}
	return nil
}

// MkdirAll makes name and its missing parents with perm (before the umask); every
// component that exists must be a real directory, never a symlink, even one that stays
// inside the tree: programs such as grub-bios-setup are then given a path that means the
// same on the host as in the tree.
func (d *Dir) MkdirAll(name string, perm fs.FileMode) error {
	if perm == 0 {
		perm = 0o755
	}
	return d.checkDirs(name, false, perm)
}

// MakeDir opens the tree top, makes rel a directory in it as MkdirAll does, and returns
// rel's host path: for a mount point or a directory a program is given.
func MakeDir(top, rel string) (string, error) {
	d, err := Open(top)
	if err != nil {
		return "", err
	}
	defer d.Close()
	if err := d.MkdirAll(rel, 0o755); err != nil {
		return "", err
	}
	return d.Path(rel), nil
}

// CheckDir fails unless name and every directory above it up to the top are real
// directories; nothing is created.
func (d *Dir) CheckDir(name string) error {
	return d.checkDirs(name, false, 0)
}

// CheckFile fails unless name is missing or a regular file (not a symlink) in real
// directories: what a file that is about to be written or appended to must be, checked
// before a series of writes so that none of them is done when one would be refused.
func (d *Dir) CheckFile(name string) error {
	if err := d.checkDirs(name, true, 0); err != nil {
		return err
	}
	fi, err := d.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return d.unsafe(name, "is "+kind(fi.Mode())+", not a regular file")
	}
	return nil
}

// Stat returns name's FileInfo, symlinks resolved inside the tree.
func (d *Dir) Stat(name string) (fs.FileInfo, error) {
	f, err := d.resolve(name, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// Lstat returns name's FileInfo without following a last symlink.
func (d *Dir) Lstat(name string) (fs.FileInfo, error) {
	c, err := d.rel(name)
	if err != nil {
		return nil, err
	}
	fi, err := d.root.Lstat(c)
	return fi, d.escapes(name, err)
}

// openWritable opens name with flag (for writing, maybe creating it) after checking,
// without opening it, that it is a regular file and not a symlink; the open itself never
// blocks (O_NONBLOCK: a FIFO swapped in meanwhile cannot hang us) and the result is checked
// again on the descriptor.
func (d *Dir) openWritable(name string, flag int, perm fs.FileMode) (*os.File, error) {
	c, err := d.rel(name)
	if err != nil {
		return nil, err
	}
	fi, err := d.root.Lstat(c)
	switch {
	case errors.Is(err, fs.ErrNotExist) && flag&os.O_CREATE != 0:
	case err != nil:
		return nil, d.escapes(name, err)
	case !fi.Mode().IsRegular():
		return nil, d.unsafe(name, "is "+kind(fi.Mode())+", not a regular file")
	}
	f, err := d.root.OpenFile(c, flag|syscall.O_NONBLOCK|syscall.O_NOCTTY, perm)
	if err != nil {
		return nil, d.escapes(name, err)
	}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, d.unsafe(name, "is "+kind(fi.Mode())+", not a regular file")
	}
	return f, nil
}

// Open opens name for reading: a regular file, symlinks resolved inside the tree. Anything
// else is refused before it is opened, and the open never blocks (a FIFO swapped in
// meanwhile is found on the descriptor and refused too).
func (d *Dir) Open(name string) (*os.File, error) {
	fi, err := d.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, d.unsafe(name, "is "+kind(fi.Mode())+", not a regular file")
	}
	f, err := d.resolve(name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, err
	}
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, err
		}
		return nil, d.unsafe(name, "is "+kind(fi.Mode())+", not a regular file")
	}
	return f, nil
}

// ReadFile reads name (as Open) whole; a file longer than limit bytes is an error, since
// every file read here is small and comes from a source that is not trusted.
func (d *Dir) ReadFile(name string, limit int64) ([]byte, error) {
	f, err := d.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", d.Path(name), err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("reading %s: larger than %d bytes", d.Path(name), limit)
	}
	return data, nil
}

// OpenAppend opens name for appending (read-write, so a torn tail can be cut), creating it
// with perm when missing. name must be a regular file, not a symlink, in real directories.
func (d *Dir) OpenAppend(name string, perm fs.FileMode) (*os.File, error) {
	if err := d.checkDirs(name, true, 0); err != nil {
		return nil, err
	}
	return d.openWritable(name, os.O_RDWR|os.O_APPEND|os.O_CREATE, perm)
}

// Mode returns the permission bits of the regular file name, or def when it does not
// exist (or is anything else: it is about to be replaced).
func (d *Dir) Mode(name string, def fs.FileMode) fs.FileMode {
	if fi, err := d.Lstat(name); err == nil && fi.Mode().IsRegular() {
		return fi.Mode().Perm()
	}
	return def
}

// TempMarker sits between a file's name and the random suffix of its temporary files, so
// that a later write can recognise (and remove) the ones a crash left behind.
const TempMarker = ".tmp-"

// WriteFileAtomic replaces name with data so that a crash at any moment leaves either the
// old or the new file, never a torn one: write a new temporary file in the same directory
// (created exclusively, so nothing already there is ever opened), fsync it, rename it over
// name (which replaces whatever name was, a symlink or device node included, without
// following it), fsync the directory. The directories above name must be real ones.
//
// hook, when non-nil, is called before each step with its name ("create", "write",
// "fsync", "rename", "fsync-dir"); its error aborts there (tests use it to simulate a power
// cut) and leaves name untouched except for a stray temporary file, which the next write
// of name removes. The file gets exactly perm (the umask does not apply).
func (d *Dir) WriteFileAtomic(name string, data []byte, perm fs.FileMode, hook func(step string) error) error {
	c, err := d.rel(name)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	w := &atomicWrite{d: d, where: d.Path(name), hook: hook}
	if c == "." {
		return fmt.Errorf("writing %s: not a file name", w.where)
	}
	if err := d.checkDirs(c, true, 0); err != nil {
		return w.fail(err)
	}
	dir, base := path.Split(c)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	prefix := "." + base + TempMarker
	d.removeStrayTemps(dir, prefix)

	tmp, err := w.writeTemp(dir, prefix, data, perm)
	if err != nil {
		return err
	}
	return w.commit(tmp, c, dir)
}

// atomicWrite is one WriteFileAtomic of the file where (its path as the host sees it).
type atomicWrite struct {
	d     *Dir
	where string
	hook  func(step string) error
}

// step calls the hook before the step s. Its error stands for a power cut there: the
// caller returns it at once and cleans nothing up, exactly as a crash would.
func (w *atomicWrite) step(s string) error {
	if w.hook == nil {
		return nil
	}
	if err := w.hook(s); err != nil {
		return fmt.Errorf("writing %s: %s: %w", w.where, s, err)
	}
	return nil
}

// fail names the file in a real failure.
func (w *atomicWrite) fail(err error) error { return fmt.Errorf("writing %s: %w", w.where, err) }

// writeTemp creates a new temporary file prefix+random in dir holding data with mode perm,
// synced to the disk, and returns its name (steps "create", "write" and "fsync"). A real
// failure removes the temporary file.
func (w *atomicWrite) writeTemp(dir, prefix string, data []byte, perm fs.FileMode) (string, error) {
	if err := w.step("create"); err != nil {
		return "", err
	}
	tmp, f, err := w.d.createTemp(dir, prefix)
	if err != nil {
		return "", w.fail(err)
	}
	fail := func(err error) (string, error) {
		f.Close()
		w.d.root.Remove(tmp)
		return "", w.fail(err)
	}
	if err := w.step("write"); err != nil {
		f.Close()
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	// The temporary file is created 0600; set the mode before the rename so the new file
	// never appears with the wrong permissions.
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := w.step("fsync"); err != nil {
		f.Close()
		return "", err
	}
	// Without this fsync the rename can reach the disk before the data, and a power cut
	// then leaves an empty or partial file under the final name.
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		w.d.root.Remove(tmp)
		return "", w.fail(err)
	}
	return tmp, nil
}

// commit renames tmp over name, both in dir, and syncs dir (steps "rename" and
// "fsync-dir"), so that the new content is durable under its name.
func (w *atomicWrite) commit(tmp, name, dir string) error {
	if err := w.step("rename"); err != nil {
		return err
	}
	if err := w.d.root.Rename(tmp, name); err != nil {
		w.d.root.Remove(tmp)
		return w.fail(err)
	}
	if err := w.step("fsync-dir"); err != nil {
		return err
	}
	// The rename lives in the directory; until the directory is synced a power cut may
	// bring back the old name, and the caller would think the new content was durable.
	if err := w.d.syncDir(dir); err != nil {
		return w.fail(err)
	}
	return nil
}

// createTemp creates a new file prefix+random in dir, exclusively and without following a
// symlink, mode 0600.
func (d *Dir) createTemp(dir, prefix string) (string, *os.File, error) {
	var last error
	for range 16 {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", nil, err
		}
		name := path.Join(dir, prefix+hex.EncodeToString(b[:]))
		f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err == nil {
			return name, f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", nil, d.escapes(name, err)
		}
		last = err
	}
	return "", nil, fmt.Errorf("creating a temporary file in %s: %w", d.Path(dir), last)
}

// removeStrayTemps deletes temporary files an interrupted WriteFileAtomic left in dir.
// Failing to remove one is not worth failing the write for: it only wastes space.
func (d *Dir) removeStrayTemps(dir, prefix string) {
	f, err := d.root.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			d.root.Remove(path.Join(dir, e.Name()))
		}
	}
}

func (d *Dir) syncDir(dir string) error {
	f, err := d.root.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", d.Path(dir), err)
	}
	return nil
}

// maxTreeEntries bounds CheckTree: grub's directory holds a few hundred files, and a tree
// from an untrusted image must not keep us walking for ever.
const maxTreeEntries = 100000

// CheckTree fails unless name is a real directory (reached through real directories) whose
// whole tree holds only directories and regular files: no symlink, device node, FIFO or
// socket anywhere. A program the provisioner runs on that tree (grub-bios-setup reading
// grub's directory) then cannot be led out of it or into a device. A missing name is fine.
func (d *Dir) CheckTree(name string) error {
	if err := d.checkDirs(name, true, 0); err != nil {
		return err
	}
	c, err := d.rel(name)
	if err != nil {
		return err
	}
	fi, err := d.root.Lstat(c)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return d.escapes(name, err)
	}
	if !fi.IsDir() {
		return d.unsafe(name, "is "+kind(fi.Mode())+", not a directory")
	}
	seen := 0
	var walk func(dir string) error
	walk = func(dir string) error {
		f, err := d.root.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return fmt.Errorf("checking %s: %w", d.Path(dir), d.escapes(dir, err))
		}
		entries, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("checking %s: %w", d.Path(dir), err)
		}
		for _, e := range entries {
			if seen++; seen > maxTreeEntries {
				return d.unsafe(name, fmt.Sprintf("holds more than %d entries", maxTreeEntries))
			}
			p := path.Join(dir, e.Name())
			switch t := e.Type(); {
			case t.IsDir():
				if err := walk(p); err != nil {
					return err
				}
			case !t.IsRegular():
				return d.unsafe(p, "is "+kind(t)+", where only directories and regular files belong")
			}
		}
		return nil
	}
	return walk(c)
}

// WriteFile creates or replaces name in place with data (no temporary file: for files
// nothing reads until the whole operation is done, such as grub's modules). name must be
// a regular file or missing, not a symlink, in real directories.
func (d *Dir) WriteFile(name string, data []byte, perm fs.FileMode) error {
	if err := d.checkDirs(name, true, 0); err != nil {
		return err
	}
	f, err := d.openWritable(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", d.Path(name), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", d.Path(name), err)
	}
	return nil
}

// ReadDirNames lists the directory name (symlinks resolved inside the tree), in
// directory order.
func (d *Dir) ReadDirNames(name string) ([]string, error) {
	f, err := d.resolve(name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
