package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
	"golang.org/x/sys/unix"
)

// needMount skips a test that makes and mounts filesystems unless it runs as root with
// the tools.
func needMount(t *testing.T) {
	t.Helper()
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root to make and mount filesystems (and not -short)")
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

// mountExt4 makes an ext4 filesystem of size bytes in an image file and mounts it at dir
// through a loop device, until the test ends.
func mountExt4(t *testing.T, size int64, dir string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// liveEntry is one entry of a test image: body for a file, link for a hard link ("=path")
// or a symlink ("->target"), a trailing "/" in the name for a directory.
type liveEntry struct {
	name, body string
	mode       int64
	xattrs     map[string]string
}

func liveTar(t *testing.T, entries []liveEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag = tar.TypeDir
		case strings.HasPrefix(e.body, "="):
			h.Typeflag, h.Linkname = tar.TypeLink, e.body[1:]
		case strings.HasPrefix(e.body, "->"):
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.body[2:]
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if len(e.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords[xattrPrefix+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// liveImages are the image the root was deployed from and the new one: same kernel.
func liveImages(t *testing.T) (old, new []byte) {
	common := []liveEntry{
		{name: "etc/"}, {name: "usr/"}, {name: "usr/bin/"}, {name: "usr/sbin/"}, {name: "usr/lib/"},
		{name: "srv/"}, {name: "srv/data/"}, {name: "boot/"}, {name: "var/"}, {name: "var/lib/"},
		{name: "boot/vmlinuz-6.1.0-9-amd64", body: "the kernel"},
	}
	old = liveTar(t, append(common[:len(common):len(common)],
		liveEntry{name: "etc/os-release", body: "VERSION=1\n"},
		liveEntry{name: "etc/app.conf", body: "v1\n"},
		liveEntry{name: "etc/hostname", body: "image\n"},
		liveEntry{name: "etc/machine-id", body: "image-id-1\n"},
		liveEntry{name: "usr/bin/daemon", body: "old daemon", mode: 0o755},
		liveEntry{name: "usr/bin/ping", body: "ping", mode: 0o755},
		liveEntry{name: "usr/bin/tool", body: "tool 1", mode: 0o755},
		liveEntry{name: "usr/sbin/tool", body: "=usr/bin/tool"},
		liveEntry{name: "usr/lib/old.so", body: "old library"},
		liveEntry{name: "var/lib/state", body: "image state 1"},
	))
	new = liveTar(t, append(common[:len(common):len(common)],
		liveEntry{name: "etc/os-release", body: "VERSION=2\n"},
		liveEntry{name: "etc/app.conf", body: "v2\n"},
		liveEntry{name: "etc/hostname", body: "image 2\n"},
		liveEntry{name: "etc/machine-id", body: "image-id-2\n"},
		liveEntry{name: "usr/bin/daemon", body: "new daemon", mode: 0o755},
		liveEntry{name: "usr/bin/ping", body: "ping", mode: 0o755, xattrs: map[string]string{"security.capability": string(capNetRaw)}},
		liveEntry{name: "usr/bin/tool", body: "tool 2", mode: 0o755},
		liveEntry{name: "usr/sbin/tool", body: "=usr/bin/tool"},
		liveEntry{name: "usr/lib/new.so", body: "new library"},
		liveEntry{name: "usr/share/", mode: 0o755}, liveEntry{name: "usr/share/doc/"},
		liveEntry{name: "usr/share/doc/README", body: "docs"},
		liveEntry{name: "srv/data/from-image", body: "must not land on the data filesystem"},
		liveEntry{name: "var/lib/state", body: "image state 2"},
	))
	return old, new
}

// snapshot lists every path under root with its content hash and metadata, so that a
// test can tell whether anything changed.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %o %d %d %d", p, st.Mode, st.Uid, st.Ino, st.Nlink)
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %x", sha256.Sum256(c))
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

// TestLiveSyncLoop syncs a mounted ext4 root (deployed from an old image, then changed on
// the node) to a new image staged with the deploy's code, with a data filesystem mounted
// inside it and a "running" binary held open.
func TestLiveSyncLoop(t *testing.T) {
	needMount(t)
	ctx := context.Background()
	root := t.TempDir()
	mountExt4(t, 64<<20, root)
	oldTar, newTar := liveImages(t)
	if _, err := ExtractTar(ctx, bytes.NewReader(oldTar), root, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := ScanEtc(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteEtcManifest(root, m); err != nil {
		t.Fatal(err)
	}
	// The node's own changes, and a data filesystem at /srv/data.
	os.WriteFile(filepath.Join(root, "etc/app.conf"), []byte("v1, tuned on the node\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("node-7\n"), 0o644)
	mountExt4(t, 16<<20, filepath.Join(root, "srv/data"))
	os.WriteFile(filepath.Join(root, "srv/data/node-file"), []byte("data"), 0o644)
	running, err := os.Open(filepath.Join(root, "usr/bin/daemon"))
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	var oldSt unix.Stat_t
	unix.Fstat(int(running.Fd()), &oldSt)

	src := filepath.Join(t.TempDir(), "new.tar")
	os.WriteFile(src, newTar, 0o644)
	stage := filepath.Join(root, ".provisioner-stage")
	os.Mkdir(stage, 0o700)
	d := &Deployer{Fetcher: &Fetcher{}, Decompressor: Decompressor{Run: run.Exec{}}}
	im := &partition.Image{Name: "new", URL: src, Checksum: fmt.Sprintf("sha256:%x", sha256.Sum256(newTar)), Target: "/"}
	if err := d.Stage(ctx, im, stage); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, filepath.Join(root, "usr")) + snapshot(t, filepath.Join(root, "etc"))
	plan, err := PlanSync(root, stage, SyncOptions{StageDir: "/.provisioner-stage"})
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, filepath.Join(root, "usr")) + snapshot(t, filepath.Join(root, "etc")); after != before {
		t.Error("planning changed the root")
	}
	wantClasses(t, plan, map[string]string{
		"/etc/os-release": "replaced", "/etc/app.conf": "merged", "/etc/hostname": "kept", "/etc/machine-id": "kept",
		"/usr/bin/daemon": "replaced", "/usr/bin/ping": "replaced", "/usr/bin/tool": "replaced", "/usr/sbin/tool": "replaced",
		"/usr/lib/new.so": "added", "/usr/lib/old.so": "removed", "/usr/share": "added",
		"/srv/data": "kept", "/var": "kept",
	})
	if err := ApplySync(ctx, plan); err != nil {
		t.Fatal(err)
	}
	checkLiveRoot(t, root, running, oldSt)
}

// checkLiveRoot checks the root TestLiveSyncLoop synced.
func checkLiveRoot(t *testing.T, root string, running *os.File, oldSt unix.Stat_t) {
	t.Helper()
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}
	for p, want := range map[string]string{
		"usr/bin/daemon": "new daemon", "usr/lib/new.so": "new library", "usr/share/doc/README": "docs",
		"etc/os-release": "VERSION=2\n", "etc/app.conf": "v1, tuned on the node\n", "etc/app.conf" + MergedSuffix: "v2\n",
		"etc/hostname": "node-7\n", "etc/machine-id": "image-id-1\n", "var/lib/state": "image state 1",
		"srv/data/node-file": "data", "usr/sbin/tool": "tool 2",
	} {
		if got := read(p); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	for _, p := range []string{"usr/lib/old.so", "srv/data/from-image", ".provisioner-stage"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s is there: %v", p, err)
		}
	}
	// The running program keeps its old inode, still readable through its descriptor.
	old, err := io.ReadAll(io.NewSectionReader(running, 0, 100))
	if err != nil || string(old) != "old daemon" {
		t.Errorf("the open file reads %q %v", old, err)
	}
	var newSt unix.Stat_t
	unix.Stat(filepath.Join(root, "usr/bin/daemon"), &newSt)
	if newSt.Ino == oldSt.Ino || newSt.Mode&0o777 != 0o755 {
		t.Errorf("usr/bin/daemon: inode %d (was %d), mode %o", newSt.Ino, oldSt.Ino, newSt.Mode)
	}
	a, _ := os.Stat(filepath.Join(root, "usr/bin/tool"))
	b, _ := os.Stat(filepath.Join(root, "usr/sbin/tool"))
	if !os.SameFile(a, b) {
		t.Error("usr/bin/tool and usr/sbin/tool are no longer one file")
	}
	capBuf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(root, "usr/bin/ping"), "security.capability", capBuf)
	if err != nil || !bytes.Equal(capBuf[:n], capNetRaw) {
		t.Errorf("usr/bin/ping capability: %x %v", capBuf[:max(n, 0)], err)
	}
	m, err := ReadEtcManifest(root)
	if err != nil || m == nil {
		t.Fatalf("manifest: %v", err)
	}
	for _, f := range m.Files {
		if f.Path == "/etc/app.conf" && f.SHA256 != fmt.Sprintf("%x", sha256.Sum256([]byte("v2\n"))) {
			t.Errorf("the manifest records app.conf as %s, not the image's", f.SHA256)
		}
	}
}
