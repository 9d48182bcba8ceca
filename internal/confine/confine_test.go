package confine

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tree makes a directory with the test's hostile furniture: a FIFO, a character device
// (root only), symlinks out of the tree (absolute and relative), a symlink to a directory
// inside, and a host directory and file beside the tree standing for the machine's.
func tree(t *testing.T) (top, hostDir, hostFile string) {
	t.Helper()
	base := t.TempDir()
	top = filepath.Join(base, "top")
	hostDir = filepath.Join(base, "host")
	hostFile = filepath.Join(hostDir, "file")
	for _, d := range []string{top + "/etc", top + "/boot/real", hostDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.WriteFile(hostFile, []byte("host"), 0o644))
	must(t, os.WriteFile(top+"/etc/os-release", []byte("NAME=x\n"), 0o644))
	must(t, os.WriteFile(top+"/usr-os-release", []byte("NAME=y\n"), 0o644))
	must(t, unix.Mkfifo(top+"/fifo", 0o644))
	must(t, os.Symlink(hostFile, top+"/abs-link"))
	must(t, os.Symlink("../host/file", top+"/rel-link"))
	must(t, os.Symlink(hostDir, top+"/dir-link"))
	must(t, os.Symlink("/usr-os-release", top+"/etc/abs-inside"))
	must(t, os.Symlink("real", top+"/boot/inside-link"))
	if os.Geteuid() == 0 {
		must(t, unix.Mknod(top+"/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	}
	return top, hostDir, hostFile
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, top string) *Dir {
	t.Helper()
	d, err := Open(top)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// hostUntouched fails when the host directory holds anything but its file, or the file
// changed.
func hostUntouched(t *testing.T, hostDir, hostFile string) {
	t.Helper()
	if b, err := os.ReadFile(hostFile); err != nil || string(b) != "host" {
		t.Errorf("host file: %q %v", b, err)
	}
	if e, _ := os.ReadDir(hostDir); len(e) != 1 {
		t.Errorf("host directory holds %d entries", len(e))
	}
}

// quick runs f and fails the test if it blocks: opening a FIFO without O_NONBLOCK waits
// for a writer for ever.
func quick(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s blocks", what)
	}
}

func TestOpenAndReadFile(t *testing.T) {
	top, hostDir, hostFile := tree(t)
	d := open(t, top)
	// Symlinks resolve as if the tree were the root directory: an absolute link stays inside.
	if b, err := d.ReadFile("etc/abs-inside", 100); err != nil || string(b) != "NAME=y\n" {
		t.Errorf("absolute link inside the tree: %q %v", b, err)
	}
	for _, name := range []string{"abs-link", "rel-link"} {
		if _, err := d.ReadFile(name, 100); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: err = %v, want not found (resolved inside the tree)", name, err)
		}
	}
	refused := []string{"fifo", "boot"}
	if os.Geteuid() == 0 {
		refused = append(refused, "null")
	}
	for _, name := range refused {
		quick(t, "reading "+name, func() {
			_, err := d.ReadFile(name, 100)
			var ue *UnsafeError
			if !errors.As(err, &ue) || ue.Path != filepath.Join(top, name) || !errors.Is(err, ErrUnsafe) {
				t.Errorf("%s: err = %v, want an UnsafeError naming it", name, err)
			}
		})
	}
	if _, err := d.ReadFile("etc/os-release", 3); err == nil || !strings.Contains(err.Error(), "larger than 3 bytes") {
		t.Errorf("limit: %v", err)
	}
	hostUntouched(t, hostDir, hostFile)
}

func TestWriteFileAtomic(t *testing.T) {
	top, hostDir, hostFile := tree(t)
	d := open(t, top)
	// Whatever stands at the name is replaced by the rename, never written through.
	for _, name := range []string{"fifo", "abs-link", "rel-link", "null", "new"} {
		quick(t, "writing "+name, func() {
			if err := d.WriteFileAtomic(name, []byte("ours"), 0o640, nil); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		})
		fi, err := os.Lstat(filepath.Join(top, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: %v %v, want a regular file 0640", name, fi, err)
		}
	}
	// Directories on the way must be real: no symlink, even one that stays inside.
	for _, name := range []string{"dir-link/x", "boot/inside-link/x", "fifo/x"} {
		err := d.WriteFileAtomic(name, []byte("ours"), 0o644, nil)
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("%s: err = %v, want a refusal", name, err)
		}
	}
	if err := d.WriteFileAtomic("../escape", []byte("x"), 0o644, nil); err == nil {
		t.Error("../escape was written")
	}
	hostUntouched(t, hostDir, hostFile)
	// A power cut leaves a temporary file that the next write removes.
	cut := errors.New("cut")
	if err := d.WriteFileAtomic("etc/f", []byte("1"), 0o644, func(s string) error {
		if s == "rename" {
			return cut
		}
		return nil
	}); !errors.Is(err, cut) {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(top, "etc/.f"+TempMarker+"*")); len(m) != 1 {
		t.Fatalf("temporary files after a cut: %v", m)
	}
	must(t, d.WriteFileAtomic("etc/f", []byte("2"), 0o644, nil))
	if m, _ := filepath.Glob(filepath.Join(top, "etc/.f"+TempMarker+"*")); len(m) != 0 {
		t.Errorf("stray temporary files: %v", m)
	}
}

func TestOpenAppend(t *testing.T) {
	top, hostDir, hostFile := tree(t)
	d := open(t, top)
	for _, name := range []string{"fifo", "abs-link", "rel-link", "null", "boot", "dir-link/file", "boot/inside-link/h"} {
		if name == "null" && os.Geteuid() != 0 {
			continue
		}
		quick(t, "appending to "+name, func() {
			f, err := d.OpenAppend(name, 0o644)
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, ErrUnsafe) {
				t.Errorf("%s: err = %v, want a refusal", name, err)
			}
		})
	}
	f, err := d.OpenAppend("etc/history", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("line\n"))
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(top, "etc/history")); string(b) != "line\n" {
		t.Errorf("appended: %q", b)
	}
	hostUntouched(t, hostDir, hostFile)
}

func TestMkdirAllAndCheckTree(t *testing.T) {
	top, hostDir, hostFile := tree(t)
	d := open(t, top)
	must(t, d.MkdirAll("boot/grub/i386-pc", 0o755))
	if fi, err := os.Lstat(filepath.Join(top, "boot/grub/i386-pc")); err != nil || !fi.IsDir() {
		t.Errorf("MkdirAll: %v %v", fi, err)
	}
	for _, name := range []string{"dir-link", "dir-link/sub", "boot/inside-link/sub", "fifo/sub", "etc/os-release"} {
		if err := d.MkdirAll(name, 0o755); !errors.Is(err, ErrUnsafe) {
			t.Errorf("MkdirAll(%s): err = %v, want a refusal", name, err)
		}
	}
	if p, err := MakeDir(top, "srv/data"); err != nil || p != filepath.Join(top, "srv/data") {
		t.Errorf("MakeDir: %q %v", p, err)
	}
	hostUntouched(t, hostDir, hostFile)

	must(t, os.WriteFile(filepath.Join(top, "boot/grub/grub.cfg"), nil, 0o644))
	must(t, d.CheckTree("boot/grub"))
	must(t, d.CheckTree("missing"))
	for _, plant := range []func(p string) error{
		func(p string) error { return unix.Mkfifo(p, 0o644) },
		func(p string) error { return os.Symlink("grub.cfg", p) },
	} {
		p := filepath.Join(top, "boot/grub/i386-pc/planted")
		must(t, plant(p))
		err := d.CheckTree("boot/grub")
		var ue *UnsafeError
		if !errors.As(err, &ue) || ue.Path != p {
			t.Errorf("CheckTree: err = %v, want an UnsafeError naming %s", err, p)
		}
		os.Remove(p)
	}
	if err := d.CheckTree("boot/inside-link"); !errors.Is(err, ErrUnsafe) {
		t.Errorf("CheckTree of a symlink: %v", err)
	}
}

func TestLocal(t *testing.T) {
	for name, want := range map[string]bool{
		"boot/grub": true, "grub": true, "a/../b": true,
		"": false, "..": false, "../x": false, "/boot/grub": false, "boot/../../x": false,
	} {
		if got := Local(name); got != want {
			t.Errorf("Local(%q) = %v, want %v", name, got, want)
		}
	}
}
