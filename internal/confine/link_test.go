package confine

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestSymlink(t *testing.T) {
	top, hostDir, hostFile := tree(t)
	d := open(t, top)
	const target = "/etc/systemd/system/x.service"
	// New names, and names that held a link out of the tree or a FIFO: each becomes the
	// link, the old file replaced, never written through.
	for _, name := range []string{"etc/new", "abs-link", "dir-link", "fifo", "etc/new"} {
		if err := d.Symlink(target, name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, err := os.Readlink(filepath.Join(top, name)); err != nil || got != target {
			t.Errorf("%s -> %q, %v; want %q", name, got, err, target)
		}
	}
	// Under a symlinked directory (out of the tree or not), over a directory, or leaving
	// the tree by "..": refused, nothing made.
	for _, name := range []string{"dir-link/x", "boot/inside-link/x", "boot/real", "../x", "."} {
		if err := d.Symlink(target, name); err == nil {
			t.Errorf("%s: linked, want a refusal", name)
		}
	}
	if err := d.Symlink(target, "boot/inside-link/x"); !errors.Is(err, ErrUnsafe) {
		t.Errorf("under a symlinked directory: err = %v, want ErrUnsafe", err)
	}
	if _, err := os.Lstat(filepath.Join(top, "boot/real/x")); !os.IsNotExist(err) {
		t.Errorf("a link was made through boot/inside-link: %v", err)
	}
	if e, _ := os.ReadDir(filepath.Join(top, "etc")); len(e) != 3 { // os-release, abs-inside, new
		t.Errorf("etc holds %d entries (a temporary link left behind?)", len(e))
	}
	hostUntouched(t, hostDir, hostFile)
}

func TestLchown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	top, hostDir, hostFile := tree(t)
	d := open(t, top)
	must(t, os.Chown(hostFile, 1234, 1234))
	// The link itself changes owner; the host file it points at does not.
	if err := d.Lchown("abs-link", 4321, 4321); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(top, "abs-link"))
	if err != nil || uid(fi) != 4321 {
		t.Errorf("abs-link owner %d, %v; want 4321", uid(fi), err)
	}
	if fi, _ := os.Stat(hostFile); uid(fi) != 1234 {
		t.Errorf("the host file's owner changed to %d", uid(fi))
	}
	if err := d.Lchown("dir-link/file", 0, 0); !errors.Is(err, ErrUnsafe) {
		t.Errorf("through a symlinked directory: err = %v, want ErrUnsafe", err)
	}
	if fi, _ := os.Stat(hostFile); uid(fi) != 1234 {
		t.Errorf("the host file's owner changed to %d through dir-link", uid(fi))
	}
	hostUntouched(t, hostDir, hostFile)
}

// uid returns the owner of the file fi describes, or -1.
func uid(fi os.FileInfo) int {
	if fi == nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func TestCheckMkdir(t *testing.T) {
	top, _, _ := tree(t)
	d := open(t, top)
	for _, name := range []string{"etc", "etc/new/deeper", "boot/real/x", "missing/a/b", "/"} {
		if err := d.CheckMkdir(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"dir-link/x", "boot/inside-link", "etc/os-release/x", "fifo"} {
		if err := d.CheckMkdir(name); !errors.Is(err, ErrUnsafe) {
			t.Errorf("%s: err = %v, want ErrUnsafe", name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(top, "etc/new")); !os.IsNotExist(err) {
		t.Errorf("CheckMkdir made etc/new: %v", err)
	}
}
