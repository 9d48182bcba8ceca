package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisioner/provisioner/deploy"
	"golang.org/x/sys/unix"
)

// rsyncDaemon is an rsync daemon on loopback serving one module, "root".
type rsyncDaemon struct {
	url  string // rsync://127.0.0.1:PORT/root/
	port int
	cmd  *exec.Cmd
}

// startRsyncDaemon serves tree as module "root" (read-only, as root, so that every file
// can be read and owners go out as they are) until the test ends.
func startRsyncDaemon(t *testing.T, tree string) *rsyncDaemon {
	t.Helper()
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync is not installed")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "rsyncd.conf")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`log file = %s
use chroot = yes
[root]
path = %s
read only = yes
uid = 0
gid = 0
numeric ids = yes
`, filepath.Join(dir, "rsyncd.log"), tree)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	d := &rsyncDaemon{port: port, url: fmt.Sprintf("rsync://127.0.0.1:%d/root/", port)}
	d.cmd = exec.Command("rsync", "--daemon", "--no-detach", "--config", conf, "--address", "127.0.0.1", "--port", fmt.Sprint(port))
	d.cmd.Stderr = os.Stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rsync daemon does not listen on port %d", port)
		}
	}
}

// stop ends the daemon (once; later calls do nothing).
func (d *rsyncDaemon) stop() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var (
	// capNetRaw is a version-2 file capability: cap_net_raw, permitted and effective.
	capNetRaw = func() []byte {
		b := make([]byte, 20)
		binary.LittleEndian.PutUint32(b[0:], 0x02000001)
		binary.LittleEndian.PutUint32(b[4:], 1<<unix.CAP_NET_RAW)
		return b
	}()
	// readerACL is a POSIX access ACL: u::rw-, u:1000:r--, g::r--, m::r--, o::---.
	readerACL = func() []byte {
		b := binary.LittleEndian.AppendUint32(nil, 2)
		for _, e := range []struct {
			tag, perm uint16
			id        uint32
		}{{0x01, 6, ^uint32(0)}, {0x02, 4, 1000}, {0x04, 4, ^uint32(0)}, {0x10, 4, ^uint32(0)}, {0x20, 0, ^uint32(0)}} {
			b = binary.LittleEndian.AppendUint16(b, e.tag)
			b = binary.LittleEndian.AppendUint16(b, e.perm)
			b = binary.LittleEndian.AppendUint32(b, e.id)
		}
		return b
	}()
	rsyncMtime = time.Date(2023, 3, 4, 5, 6, 7, 0, time.UTC)
)

// rsyncTree makes the root tree the daemon serves: an OS with a kernel, a setuid binary
// and a hard link to it, file capabilities, an ACL and a user xattr, a device node, a
// FIFO, a symlink, files of owners other than root, and a /var that lands on its own
// volume.
func rsyncTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	os.Chmod(tree, 0o755)
	file := func(rel, body string, mode os.FileMode, uid, gid int) string {
		p := filepath.Join(tree, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // after chown, which clears setuid
			t.Fatal(err)
		}
		return p
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	file("etc/os-release", "PRETTY_NAME=\"gamma\"\n", 0o644, 0, 0)
	file("etc/fstab", "# the tree's own fstab, to be replaced\n", 0o644, 0, 0)
	file("boot/vmlinuz-6.1.0-9-gamma", "kernel gamma", 0o644, 0, 0)
	file("boot/initrd.img-6.1.0-9-gamma", "initrd gamma", 0o644, 0, 0)
	hello := file("usr/bin/hello", strings.Repeat("ELF gamma", 3000), 0o755|os.ModeSetuid, 0, 0)
	must(os.Link(hello, filepath.Join(tree, "usr/bin/hello-again")))
	ping := file("usr/bin/ping", "ELF ping", 0o755, 0, 0)
	must(unix.Setxattr(ping, "security.capability", capNetRaw, 0))
	must(unix.Setxattr(ping, "user.x", []byte("kept"), 0))
	shared := file("srv/report", "for user 1000 to read", 0o640, 0, 0)
	must(unix.Setxattr(shared, "system.posix_acl_access", readerACL, 0))
	must(os.Symlink("usr/bin", filepath.Join(tree, "bin")))
	must(os.MkdirAll(filepath.Join(tree, "dev"), 0o755))
	must(unix.Mknod(filepath.Join(tree, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.MkdirAll(filepath.Join(tree, "run"), 0o755))
	must(unix.Mkfifo(filepath.Join(tree, "run/initctl"), 0o600))
	home := file("home/user/notes", "notes", 0o600, 1000, 1000)
	must(os.Chown(filepath.Dir(home), 1000, 1000))
	must(os.Chtimes(home, rsyncMtime, rsyncMtime))
	file("var/lib/app/state", "state", 0o640, 1234, 5678)
	return tree
}

// rsyncDoc: a tar image from HTTP (alpha) and a tree from an rsync daemon (gamma, with
// its /var on a volume of its own), side by side on one disk.
func rsyncDoc(httpBase, rsyncURL string) string {
	return fmt.Sprintf(`{
  "images": [
    {"name": "alpha", "url": "%s/alpha.tar.zst", "target": "/", "boot": true},
    {"name": "gamma", "url": "%s", "target": "/"}],
  "boot_mode": "bios",
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "200 MiB", "images": ["alpha"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "200 MiB", "images": ["gamma"]},
    {"type": "partition", "mount": "/var", "file_system": "ext4", "size": "64 MiB", "images": ["gamma"]}]}]
}`, httpBase, rsyncURL)
}

// TestDeployRsyncImage deploys a tree from a real rsync daemon next to a tar image: the
// tree arrives with its metadata, /var on its own volume, and the plan's fstab.
func TestDeployRsyncImage(t *testing.T) {
	c := newDeployCase(t)
	daemon := startRsyncDaemon(t, rsyncTree(t))
	res, img, err := c.deployWith(t, rsyncDoc(c.srv.URL, daemon.url), func(*DeployOptions) {})
	if err != nil {
		t.Fatal(err)
	}
	l := res.Layout
	d := l.Disks[0]
	for _, im := range l.Images {
		root := findFS(l, im.RootUUID)
		withPartition(t, img, d, root.Number, func(t *testing.T, mnt string) {
			fstab, err := os.ReadFile(filepath.Join(mnt, "etc/fstab"))
			if err != nil || string(fstab) != im.Fstab {
				t.Errorf("image %s: /etc/fstab differs from the plan (%v):\n%s\nplan:\n%s", im.Name, err, fstab, im.Fstab)
			}
			b, _ := os.ReadFile(filepath.Join(mnt, "etc/os-release"))
			if !strings.Contains(string(b), `"`+im.Name+`"`) {
				t.Errorf("image %s: os-release %q", im.Name, b)
			}
			if im.Name == "gamma" {
				checkRsyncRoot(t, mnt)
			}
		})
	}
	withPartition(t, img, d, findMount(l, "/var").Number, func(t *testing.T, mnt string) {
		checkOwner(t, filepath.Join(mnt, "lib/app/state"), 1234, 5678, 0o640)
	})
}

// checkRsyncRoot checks what the rsync copy must keep in gamma's root.
func checkRsyncRoot(t *testing.T, mnt string) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(mnt, rel) }
	hello, err1 := os.Lstat(p("usr/bin/hello"))
	again, err2 := os.Lstat(p("usr/bin/hello-again"))
	if err1 != nil || err2 != nil || !os.SameFile(hello, again) || hello.Mode()&os.ModeSetuid == 0 {
		t.Errorf("hello %v %v, hello-again %v %v: want one setuid inode", hello, err1, again, err2)
	}
	for name, want := range map[string][]byte{"security.capability": capNetRaw, "user.x": []byte("kept")} {
		if got := xattr(t, p("usr/bin/ping"), name); !bytes.Equal(got, want) {
			t.Errorf("ping %s = %x, want %x", name, got, want)
		}
	}
	if got := xattr(t, p("srv/report"), "system.posix_acl_access"); !bytes.Equal(got, readerACL) {
		t.Errorf("report's ACL = %x, want %x", got, readerACL)
	}
	if target, err := os.Readlink(p("bin")); err != nil || target != "usr/bin" {
		t.Errorf("bin -> %q, %v", target, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(p("dev/null"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null: mode %o rdev %x, %v", st.Mode, st.Rdev, err)
	}
	if fi, err := os.Lstat(p("run/initctl")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("run/initctl: %v %v", fi, err)
	}
	checkOwner(t, p("home/user"), 1000, 1000, 0o755)
	checkOwner(t, p("home/user/notes"), 1000, 1000, 0o600)
	if fi, err := os.Lstat(p("home/user/notes")); err != nil || !fi.ModTime().Equal(rsyncMtime) {
		t.Errorf("notes' mtime: %v %v, want %v", fi, err, rsyncMtime)
	}
	if entries, err := os.ReadDir(p("var")); err != nil || len(entries) != 0 {
		t.Errorf("the root's /var holds %v (%v): its files belong on the /var volume", entries, err)
	}
}

func checkOwner(t *testing.T, path string, uid, gid uint32, perm os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Error(err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != perm {
		t.Errorf("%s: %d:%d %v, want %d:%d %v", path, st.Uid, st.Gid, fi.Mode().Perm(), uid, gid, perm)
	}
}

func xattr(t *testing.T, path, name string) []byte {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		t.Errorf("%s: getxattr %s: %v", path, name, err)
		return nil
	}
	return buf[:n]
}

// TestDeployRsyncFailures: an rsync source that cannot be copied is an image error
// (exit 4) naming the source, and a clean deploy leaves the disk without partition
// tables: whether the check before the first write finds it (no daemon, no module) or
// the daemon goes away after it.
func TestDeployRsyncFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T, d *rsyncDaemon) string
		stop bool // stop the daemon once the deploy of gamma starts
		want string
	}{
		{"unreachable daemon", func(t *testing.T, _ *rsyncDaemon) string {
			return fmt.Sprintf("rsync://127.0.0.1:%d/root/", freePort(t))
		}, false, "Connection refused"},
		{"missing module", func(_ *testing.T, d *rsyncDaemon) string { return fmt.Sprintf("rsync://127.0.0.1:%d/nope/", d.port) }, false, "Unknown module"},
		{"daemon gone after the check", func(_ *testing.T, d *rsyncDaemon) string { return d.url }, true, "gave up after 6 attempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newDeployCase(t)
			daemon := startRsyncDaemon(t, rsyncTree(t))
			url := tc.url(t, daemon)
			_, img, err := c.deployWith(t, rsyncDoc(c.srv.URL, url), func(o *DeployOptions) {
				if tc.stop {
					o.Events = func(e Event) {
						if strings.HasPrefix(e.Message, "deploying image gamma") {
							daemon.stop()
						}
					}
				}
			})
			if ExitCode(err) != ExitImage || !errors.Is(err, deploy.ErrImage) || !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (exit %d), want exit %d naming %s and saying %q", err, ExitCode(err), ExitImage, url, tc.want)
			}
			if !tablesErased(t, img, 1<<30) {
				t.Error("the partition tables were not erased")
			}
		})
	}
}

// tablesErased reports whether the image file has no partition table left: its first
// 34 and last 33 sectors are zero, or it was never written.
func tablesErased(t *testing.T, img string, size int64) bool {
	t.Helper()
	f, err := os.Open(img)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 34*512)
	tail := make([]byte, 33*512)
	f.ReadAt(head, 0)
	f.ReadAt(tail, size-int64(len(tail)))
	return bytes.Equal(head, make([]byte, len(head))) && bytes.Equal(tail, make([]byte, len(tail)))
}
