package disk

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fakeTree builds a miniature /sys, /dev and /proc in t.TempDir(), laid out as the kernel
// lays out the real ones: devices under sys/devices, symlinks from sys/class/block and
// sys/block, partitions as subdirectories of their disk with a "partition" attribute.
type fakeTree struct {
	t   *testing.T
	sys Sys
}

func newFakeTree(t *testing.T) *fakeTree {
	t.Helper()
	root := t.TempDir()
	f := &fakeTree{t: t, sys: Sys{
		SysRoot:  filepath.Join(root, "sys"),
		DevRoot:  filepath.Join(root, "dev"),
		ProcRoot: filepath.Join(root, "proc"),
	}}
	for _, d := range []string{"sys/devices", "sys/class/block", "sys/block", "dev", "proc/self"} {
		f.mkdir(filepath.Join(root, d))
	}
	f.write(filepath.Join(f.sys.ProcRoot, "self", "mountinfo"), "1 0 252:0 / / rw - ext4 /dev/root rw\n")
	f.write(filepath.Join(f.sys.ProcRoot, "swaps"), "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
	return f
}

func (f *fakeTree) mkdir(p string) {
	f.t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeTree) write(p, content string) {
	f.t.Helper()
	f.mkdir(filepath.Dir(p))
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeTree) symlink(target, link string) {
	f.t.Helper()
	f.mkdir(filepath.Dir(link))
	if err := os.Symlink(target, link); err != nil {
		f.t.Fatal(err)
	}
}

// disk adds a whole disk with its /dev node (a plain file) and attribute files, given by
// path relative to the disk's sysfs directory ("serial", "device/wwid", ...).
func (f *fakeTree) disk(name, dev string, attrs map[string]string) {
	f.t.Helper()
	dir := filepath.Join(f.sys.SysRoot, "devices", name)
	f.write(filepath.Join(dir, "dev"), dev+"\n")
	f.mkdir(filepath.Join(dir, "holders"))
	for k, v := range attrs {
		f.write(filepath.Join(dir, k), v)
	}
	f.symlink(filepath.Join("..", "..", "devices", name), filepath.Join(f.sys.SysRoot, "class", "block", name))
	f.symlink(filepath.Join("..", "devices", name), filepath.Join(f.sys.SysRoot, "block", name))
	f.write(filepath.Join(f.sys.DevRoot, name), "")
}

// part adds partition num of disk, named as the kernel would name it.
func (f *fakeTree) part(disk string, num int, dev string) string {
	f.t.Helper()
	name := filepath.Base(PartitionPath(disk, num))
	dir := filepath.Join(f.sys.SysRoot, "devices", disk, name)
	f.write(filepath.Join(dir, "dev"), dev+"\n")
	f.write(filepath.Join(dir, "partition"), strconv.Itoa(num)+"\n")
	f.write(filepath.Join(dir, "start"), strconv.Itoa(2048*num)+"\n")
	f.write(filepath.Join(dir, "size"), "2048\n")
	f.mkdir(filepath.Join(dir, "holders"))
	f.symlink(filepath.Join("..", "..", "devices", disk, name), filepath.Join(f.sys.SysRoot, "class", "block", name))
	f.write(filepath.Join(f.sys.DevRoot, name), "")
	return name
}

func (f *fakeTree) dev(name string) string { return filepath.Join(f.sys.DevRoot, name) }
