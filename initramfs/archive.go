package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// The archive mirrors a merged-/usr Debian 12 system, as the build host is: bin, sbin,
// lib and lib64 are symlinks into usr/. The tools copied from the host were built for
// that layout and name each other (and their loader, /lib64/ld-linux-x86-64.so.2) by
// whichever of the two paths their authors chose; with the links both resolve, and one
// file never needs two copies.
var mergedDirs = []string{"bin", "sbin", "lib", "lib64"}

// canon returns the archive path of name (a path of the ramdisk, with or without a
// leading "/"): cleaned, relative, and moved under usr/ when it starts with one of the
// merged directories. Every path the tree stores goes through it, so no record is ever
// written through one of the top-level symlinks (which the kernel's unpacker would
// follow).
func canon(name string) string {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	first, _, _ := strings.Cut(p, "/")
	if slices.Contains(mergedDirs, first) {
		return "usr/" + p
	}
	return p
}

// entry is one record of the ramdisk before it is written.
type entry struct {
	mode         fs.FileMode // type and permission bits
	src          string      // host file holding the content of a regular file, or ""
	data         []byte      // the content when src is ""
	link         string      // symlink target
	major, minor uint32      // device numbers of a device node
}

// same reports whether two entries would write the same record, so adding one path
// twice with one meaning (a library two tools need) is not a conflict.
func (e *entry) same(o *entry) bool {
	return e.mode == o.mode && e.src == o.src && bytes.Equal(e.data, o.data) && e.link == o.link &&
		e.major == o.major && e.minor == o.minor
}

// tree is the ramdisk being assembled: archive path → entry. Parent directories are
// implied and written with mode 0755 unless added explicitly.
type tree struct {
	entries map[string]*entry
}

func newTree() *tree {
	t := &tree{entries: map[string]*entry{}}
	for _, d := range mergedDirs {
		t.entries[d] = &entry{mode: fs.ModeSymlink | 0o777, link: "usr/" + d}
	}
	return t
}

// errConflict is wrapped when a path is added twice with different content.
var errConflict = errors.New("already in the ramdisk with other content")

// put stores e at the canonical path of name. A directory added over a directory keeps
// the first mode; anything else must be the same as what is there.
func (t *tree) put(name string, e *entry) error {
	p := canon(name)
	if p == "" || p == "." {
		return fmt.Errorf("initramfs: adding %q: not a path inside the ramdisk", name)
	}
	if old, ok := t.entries[p]; ok {
		if old.same(e) || (old.mode.IsDir() && e.mode.IsDir()) {
			return nil
		}
		return fmt.Errorf("initramfs: adding /%s: %w", p, errConflict)
	}
	t.entries[p] = e
	return nil
}

// has reports whether name is in the tree.
func (t *tree) has(name string) bool {
	_, ok := t.entries[canon(name)]
	return ok
}

// dir adds a directory.
func (t *tree) dir(name string, perm fs.FileMode) error {
	return t.put(name, &entry{mode: fs.ModeDir | perm})
}

// file adds a regular file with the given content.
func (t *tree) file(name string, data []byte, perm fs.FileMode) error {
	return t.put(name, &entry{mode: perm, data: data})
}

// hostFile adds a regular file whose content is read from the host file src when the
// archive is written.
func (t *tree) hostFile(name, src string, perm fs.FileMode) error {
	return t.put(name, &entry{mode: perm, src: src})
}

// symlink adds a symbolic link.
func (t *tree) symlink(name, target string) error {
	return t.put(name, &entry{mode: fs.ModeSymlink | 0o777, link: target})
}

// charDev adds a character device node.
func (t *tree) charDev(name string, perm fs.FileMode, major, minor uint32) error {
	return t.put(name, &entry{mode: fs.ModeDevice | fs.ModeCharDevice | perm, major: major, minor: minor})
}

// names returns every path of the tree, implied parent directories included, sorted.
// Sorted names put every directory before its content, which the kernel's unpacker
// needs (it creates no missing parents), and make the archive's bytes depend only on
// its content.
func (t *tree) names() []string {
	all := make(map[string]bool, len(t.entries))
	for p := range t.entries {
		all[p] = true
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			all[d] = true
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	slices.Sort(names)
	return names
}

// write writes the tree as a newc cpio archive to w, reproducibly: records sorted by
// name, inode numbers counted from 1, owners and mtimes zero. It returns the number of
// records, the trailer not counted.
func (t *tree) write(w io.Writer) (int, error) {
	cw := cpio.Newc.Writer(w)
	names := t.names()
	for i, name := range names {
		e, ok := t.entries[name]
		if !ok {
			e = &entry{mode: fs.ModeDir | 0o755}
		}
		rec, err := e.record(name)
		if err != nil {
			return 0, err
		}
		// Distinct inode numbers with nlink 1: the kernel's unpacker treats equal
		// (ino, nlink>1) pairs as hard links.
		rec.Ino = uint64(i + 1)
		rec.NLink = 1
		if e.mode.IsDir() {
			rec.NLink = 2
		}
		if err := cw.WriteRecord(rec); err != nil {
			return 0, fmt.Errorf("initramfs: writing /%s: %w", name, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return 0, fmt.Errorf("initramfs: writing the cpio trailer: %w", err)
	}
	return len(names), nil
}

// record makes the cpio record of e at name. A host file is opened here and closed by
// the cpio writer once copied, so only one file is open at a time.
func (e *entry) record(name string) (cpio.Record, error) {
	perm := uint64(e.mode.Perm())
	if e.mode&fs.ModeSetuid != 0 {
		perm |= cpio.S_ISUID
	}
	if e.mode&fs.ModeSetgid != 0 {
		perm |= cpio.S_ISGID
	}
	if e.mode&fs.ModeSticky != 0 {
		perm |= cpio.S_ISVTX
	}
	switch {
	case e.mode.IsDir():
		return cpio.Directory(name, perm), nil
	case e.mode&fs.ModeSymlink != 0:
		return cpio.Symlink(name, e.link), nil
	case e.mode&fs.ModeCharDevice != 0:
		return cpio.CharDev(name, perm, uint64(e.major), uint64(e.minor)), nil
	case e.src == "":
		return cpio.StaticRecord(e.data, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}), nil
	}
	f, err := os.Open(e.src)
	if err != nil {
		return cpio.Record{}, fmt.Errorf("initramfs: /%s: %w", name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return cpio.Record{}, fmt.Errorf("initramfs: /%s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return cpio.Record{}, fmt.Errorf("initramfs: /%s: %s is not a regular file", name, e.src)
	}
	return cpio.Record{ReaderAt: f, Info: cpio.Info{Name: name, Mode: cpio.S_IFREG | perm, FileSize: uint64(st.Size())}}, nil
}

// hostTree adds the host directory src and everything below it at the same paths (made
// canonical), through addHost so that symlinks and ELF programs are handled as for
// single files.
func (t *tree) hostTree(h *hostAdder, src string) error {
	// Walk the real directory: WalkDir does not descend through a symlink given as root.
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		if d.IsDir() {
			st, err := d.Info()
			if err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
			return t.dir(p, st.Mode().Perm())
		}
		return h.add(p)
	})
}
