package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// size is the data bytes of a regular file, 0 for anything else.
func size(n node) int64 {
	if n.st.Mode&unix.S_IFMT == unix.S_IFREG {
		return n.st.Size
	}
	return 0
}

// treeBytes sums the regular files' sizes under dir.
func treeBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.Type().IsRegular() {
			fi, err := de.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// stagedTree sums the regular files' sizes under the staged directory p, and notes its
// hard-linked files as decided: the tree is renamed whole, so they keep their inode.
func (pl *planner) stagedTree(p string) (int64, error) {
	var n int64
	top := filepath.Join(pl.staged, p)
	err := filepath.WalkDir(top, func(hp string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(hp, &st); err != nil {
			return err
		}
		n += st.Size
		rel, _ := filepath.Rel(top, hp)
		pl.group(path.Join(p, filepath.ToSlash(rel)), node{ok: true, st: st}, true)
		return nil
	})
	return n, err
}

// rootTree sums the regular files' sizes under the root's directory dir, and returns the
// first mount point of another filesystem found under it ("" when none).
func rootTree(dir string, dev uint64) (int64, string, error) {
	var n int64
	var mount string
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Dev != dev {
			mount = p
			return filepath.SkipAll
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			n += st.Size
		}
		return nil
	})
	return n, mount, err
}

// metaDiffers says how the owner, mode or xattrs of p differ ("" when they do not).
func (pl *planner) metaDiffers(p string, r, s node) (string, error) {
	switch {
	case r.st.Uid != s.st.Uid || r.st.Gid != s.st.Gid:
		return "owner", nil
	case r.st.Mode != s.st.Mode:
		return "mode", nil
	}
	rx, err := xattrs(filepath.Join(pl.root, p))
	if err != nil {
		return "", err
	}
	sx, err := xattrs(filepath.Join(pl.staged, p))
	if err != nil {
		return "", err
	}
	if len(rx) != len(sx) {
		return "xattrs", nil
	}
	for k, v := range sx {
		if rv, ok := rx[k]; !ok || !bytes.Equal(rv, v) {
			return "xattrs", nil
		}
	}
	return "", nil
}

// differs says how p differs between the root and the image ("" when it does not): type,
// metadata, hard links, link target, device number or content.
func (pl *planner) differs(p string, r, s node) (string, error) {
	if r.st.Mode&unix.S_IFMT != s.st.Mode&unix.S_IFMT {
		return "type", nil
	}
	if why, err := pl.metaDiffers(p, r, s); why != "" || err != nil {
		return why, err
	}
	switch r.st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		rt, err := os.Readlink(filepath.Join(pl.root, p))
		if err != nil {
			return "", err
		}
		st, err := os.Readlink(filepath.Join(pl.staged, p))
		if err != nil {
			return "", err
		}
		if rt != st {
			return "link target", nil
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if r.st.Rdev != s.st.Rdev {
			return "device number", nil
		}
	case unix.S_IFREG:
		if (r.st.Nlink > 1) != (s.st.Nlink > 1) {
			return "hard links", nil
		}
		if r.st.Size != s.st.Size {
			return "content", nil
		}
		same, err := sameContent(filepath.Join(pl.root, p), filepath.Join(pl.staged, p))
		if err != nil || !same {
			return "content", err
		}
	}
	return "", nil
}

// sameContent compares two regular files byte by byte.
func sameContent(a, b string) (bool, error) {
	fa, err := os.OpenFile(a, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.OpenFile(b, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 256<<10), make([]byte, 256<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == io.EOF || eb == io.ErrUnexpectedEOF, nil
		}
		if ea != nil {
			return false, fmt.Errorf("reading %s: %w", a, ea)
		}
		if eb != nil && eb != io.EOF && eb != io.ErrUnexpectedEOF {
			return false, fmt.Errorf("reading %s: %w", b, eb)
		}
	}
}

// xattrs reads the extended attributes of p without following a symlink; a filesystem
// without them has none.
func xattrs(p string) (map[string][]byte, error) {
	sz, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || sz == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the xattrs of %s: %w", p, err)
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("listing the xattrs of %s: %w", p, err)
	}
	out := map[string][]byte{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
		}
		v := make([]byte, vsz)
		if vsz > 0 {
			if vsz, err = unix.Lgetxattr(p, name, v); err != nil {
				return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
			}
		}
		out[name] = v[:vsz]
	}
	return out, nil
}

// RootBytes sums the regular files of root that a live sync with o considers: root's own
// filesystem, without the paths it never touches. A live reload estimates the room the
// staged tree needs with it, the new image being about the size of the one it replaces.
func RootBytes(root string, o SyncOptions) (int64, error) {
	var rst unix.Stat_t
	if err := unix.Lstat(root, &rst); err != nil {
		return 0, err
	}
	var n int64
	err := filepath.WalkDir(root, func(hp string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, hp)
		p := path.Clean("/" + filepath.ToSlash(rel))
		if why, descend := o.excluded(p); why != "" && !descend {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(hp, &st); err != nil {
			return err
		}
		if st.Dev != rst.Dev {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			if why, _ := o.excluded(p); why == "" {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measuring %s: %w", root, err)
	}
	return n, nil
}
