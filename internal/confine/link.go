package confine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Symlink makes name a symlink holding target, as a package manager or `systemctl enable`
// would. target is stored as given and never followed here: it means what it means on
// the booted system. Whatever file name was is replaced atomically (a new link under a
// temporary name, renamed over name, the directory synced), so a symlink, FIFO or device
// node already there is never written through; a directory there is an error. The
// directories above name must be real ones. A link already holding target is left alone.
func (d *Dir) Symlink(target, name string) error {
	c, err := d.rel(name)
	if err != nil {
		return fmt.Errorf("linking %s: %w", name, err)
	}
	where := d.Path(name)
	if c == "." || target == "" {
		return fmt.Errorf("linking %s to %q: not a link", where, target)
	}
	if err := d.checkDirs(c, true, 0); err != nil {
		return fmt.Errorf("linking %s: %w", where, err)
	}
	if cur, err := d.root.Readlink(c); err == nil && cur == target {
		return nil
	}
	dir, base := path.Split(c)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	tmp, err := d.tempSymlink(target, dir, "."+base+TempMarker)
	if err != nil {
		return fmt.Errorf("linking %s: %w", where, err)
	}
	if err := d.root.Rename(tmp, c); err != nil {
		d.root.Remove(tmp)
		return fmt.Errorf("linking %s: %w", where, d.escapes(name, err))
	}
	if err := d.syncDir(dir); err != nil {
		return fmt.Errorf("linking %s: %w", where, err)
	}
	return nil
}

// tempSymlink creates a new symlink prefix+random in dir holding target and returns its
// name.
func (d *Dir) tempSymlink(target, dir, prefix string) (string, error) {
	var last error
	for range 16 {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		name := path.Join(dir, prefix+hex.EncodeToString(b[:]))
		err := d.root.Symlink(target, name)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", d.escapes(name, err)
		}
		last = err
	}
	return "", fmt.Errorf("creating a temporary symlink in %s: %w", d.Path(dir), last)
}

// Lchown sets the owner of name itself (a symlink is not followed), in real directories.
func (d *Dir) Lchown(name string, uid, gid int) error {
	c, err := d.rel(name)
	if err != nil {
		return err
	}
	if err := d.checkDirs(c, true, 0); err != nil {
		return err
	}
	if err := d.root.Lchown(c, uid, gid); err != nil {
		return fmt.Errorf("changing the owner of %s: %w", d.Path(name), d.escapes(name, err))
	}
	return nil
}

// CheckMkdir fails when MkdirAll(name) would: a component of name that exists is not a
// real directory (a symlink, even one that stays inside the tree, or a file). Nothing
// is made, so a caller can check every directory it is about to make before it writes
// anything.
func (d *Dir) CheckMkdir(name string) error {
	c, err := d.rel(name)
	if err != nil {
		return err
	}
	if c == "." {
		return nil
	}
	parts := strings.Split(c, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := d.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
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
