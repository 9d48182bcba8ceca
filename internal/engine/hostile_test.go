package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/internal/disk"
	"golang.org/x/sys/unix"
)

// victim is a small loop device of the test's own standing for "any disk of the machine":
// an image that plants a device node with its numbers must never get a byte written to it.
type victim struct {
	file         string
	major, minor uint32
}

func newVictim(t *testing.T) *victim {
	t.Helper()
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "victim.img")
	if err := os.WriteFile(file, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	loop, err := disk.AttachLoop(ctx, file, 512)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := loop.Detach(context.Background()); err != nil {
			t.Error(err)
		}
	})
	var st unix.Stat_t
	if err := unix.Stat(loop.Path, &st); err != nil {
		t.Fatal(err)
	}
	return &victim{file: file, major: unix.Major(st.Rdev), minor: unix.Minor(st.Rdev)}
}

// untouched fails when anything was written to the victim disk.
func (v *victim) untouched(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(v.file)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.IndexFunc(b, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Errorf("the victim disk was written at byte %d: %q", i, b[i:min(len(b), i+80)])
	}
}

// hostileTar is a bootable-looking root (os-release, a kernel and initrd) with extra
// entries after it; an extra entry replaces the base's entries at its path and below.
func hostileTar(t *testing.T, extra ...*tar.Header) []byte {
	t.Helper()
	body := map[string]string{"etc/os-release": osRelease, "boot/vmlinuz-6.1.0-9-h": "kernel", "boot/initrd.img-6.1.0-9-h": "initrd"}
	base := []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "boot/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "boot/vmlinuz-6.1.0-9-h", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "boot/initrd.img-6.1.0-9-h", Typeflag: tar.TypeReg, Mode: 0o644},
	}
	replaced := func(name string) bool {
		name = strings.TrimSuffix(name, "/")
		for _, h := range extra {
			x := strings.TrimSuffix(h.Name, "/")
			if name == x || strings.HasPrefix(name, x+"/") && h.Typeflag != tar.TypeDir {
				return true
			}
		}
		return false
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	write := func(h *tar.Header) {
		h.ModTime = time.Unix(1700000000, 0)
		h.Size = int64(len(body[h.Name]))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body[h.Name]))
	}
	for _, h := range base {
		if !replaced(h.Name) {
			write(h)
		}
	}
	for _, h := range extra {
		write(h)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const osRelease = "PRETTY_NAME=\"Hostile\"\n"

// singleImageDoc is one OS image on one ext4 root: its boot files go to the image's own
// /boot, where the image put whatever it wanted.
func singleImageDoc(base, image string) string {
	return fmt.Sprintf(`{
  "images": [{"name": "solo", "url": "%s/%s", "target": "/", "boot": true}],
  "boot_mode": "bios",
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "300 MiB", "images": ["solo"]}]}]
}`, base, image)
}

// TestDeployHostileTrees deploys single images whose trees plant device nodes, FIFOs and
// symlinks where the provisioner later writes or reads: nothing may be written outside the
// image (the victim disk, the host directory and file stay as they were), nothing may hang,
// and a refusal is an image error (exit 4) naming the path.
func TestDeployHostileTrees(t *testing.T) {
	c := newDeployCase(t)
	v := newVictim(t)
	host := t.TempDir() // stands for any directory of the machine
	hostFile := filepath.Join(host, "host-file")
	const hostContent = "saved_entry=host\n"
	dev := func(name string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeBlock, Mode: 0o600, Devmajor: int64(v.major), Devminor: int64(v.minor)}
	}
	link := func(name, to string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: to, Mode: 0o777}
	}
	fifo := func(name string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeFifo, Mode: 0o644}
	}
	for _, tc := range []struct {
		name    string
		entries []*tar.Header
		// refused is the path (relative to the image) the error must name; "" when the
		// deploy succeeds, having written around the planted entry.
		refused string
	}{
		{"device at fstab's old temporary name", []*tar.Header{dev("etc/.fstab.provisioner")}, ""},
		{"FIFO at fstab's old temporary name", []*tar.Header{fifo("etc/.fstab.provisioner")}, ""},
		{"device at etc/fstab", []*tar.Header{dev("etc/fstab")}, ""},
		{"FIFO at etc/fstab", []*tar.Header{fifo("etc/fstab")}, ""},
		{"symlink etc/fstab to a host file", []*tar.Header{link("etc/fstab", hostFile)}, ""},
		{"device at boot/history.jsonl", []*tar.Header{dev("boot/history.jsonl")}, "boot/history.jsonl"},
		{"symlink boot/history.jsonl to a host file", []*tar.Header{link("boot/history.jsonl", hostFile)}, "boot/history.jsonl"},
		{"symlink boot/grub to a host directory", []*tar.Header{link("boot/grub", host)}, "boot/grub"},
		{"symlink boot/grub/grubenv to a host file", []*tar.Header{
			{Name: "boot/grub/", Typeflag: tar.TypeDir, Mode: 0o755}, link("boot/grub/grubenv", hostFile)}, "boot/grub/grubenv"},
		{"device in boot/grub/i386-pc", []*tar.Header{
			{Name: "boot/grub/i386-pc/", Typeflag: tar.TypeDir, Mode: 0o755}, dev("boot/grub/i386-pc/core.img")}, "boot/grub/i386-pc/core.img"},
		{"FIFO at etc/os-release", []*tar.Header{fifo("etc/os-release")}, "etc/os-release"},
		// Inside the image the link leads to the image's own copy of the host path, where
		// it put a kernel: the kernel prober is satisfied, and a host-side path would
		// lead grub's files to the host directory.
		{"symlink boot to a host directory", []*tar.Header{
			{Name: "boot", Typeflag: tar.TypeSymlink, Linkname: host, Mode: 0o777},
			{Name: strings.TrimPrefix(host, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: strings.TrimPrefix(host, "/") + "/vmlinuz-6.1.0-9-h", Typeflag: tar.TypeReg, Mode: 0o644},
		}, "boot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(hostFile, []byte(hostContent), 0o644); err != nil {
				t.Fatal(err)
			}
			c.srv.blobs["hostile.tar"] = hostileTar(t, tc.entries...)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			done := make(chan struct{})
			var res *DeployResult
			var img string
			var err error
			go func() {
				defer close(done)
				res, img, err = c.deployWith(t, singleImageDoc(c.srv.URL, "hostile.tar"), func(o *DeployOptions) {})
			}()
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("the deploy hangs")
			}
			v.untouched(t)
			if got, rerr := os.ReadFile(hostFile); rerr != nil || string(got) != hostContent {
				t.Errorf("the host file changed: %q, %v", got, rerr)
			}
			if entries, _ := os.ReadDir(host); len(entries) != 1 {
				t.Errorf("the host directory holds %d entries, want only host-file", len(entries))
			}
			if tc.refused == "" {
				if err != nil {
					t.Fatal(err)
				}
				root := findFS(res.Layout, res.Layout.Images[0].RootUUID)
				withPartition(t, img, res.Layout.Disks[0], root.Number, func(t *testing.T, mnt string) {
					fi, err := os.Lstat(filepath.Join(mnt, "etc/fstab"))
					if err != nil || !fi.Mode().IsRegular() {
						t.Fatalf("etc/fstab: %v %v", fi, err)
					}
					if b, _ := os.ReadFile(filepath.Join(mnt, "etc/fstab")); !strings.Contains(string(b), "UUID="+root.FS.UUID) {
						t.Errorf("etc/fstab is not the plan's:\n%s", b)
					}
				})
				return
			}
			if !errors.Is(err, deploy.ErrImage) || !errors.Is(err, confine.ErrUnsafe) {
				t.Fatalf("err = %v, want an image error refusing %s", err, tc.refused)
			}
			if !strings.Contains(err.Error(), "/"+tc.refused+" ") {
				t.Errorf("the error does not name %s: %v", tc.refused, err)
			}
		})
	}
}

// TestDeployRawImageSymlinkedMountPoint writes a raw root filesystem whose boot is a
// symlink to a host directory, with a separate /boot volume: the /boot volume must not be
// mounted through the link (onto the host), and the deploy fails as an image error.
func TestDeployRawImageSymlinkedMountPoint(t *testing.T) {
	needLoop(t, "mke2fs", "e2fsck", "tune2fs", "resize2fs")
	c := newDeployCase(t)
	host := t.TempDir()
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte(osRelease), 0o644)
	if err := os.Symlink(host, filepath.Join(tree, "boot")); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(t.TempDir(), "root.img")
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, raw, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v %s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	c.srv.blobs["root.raw"] = b
	doc := fmt.Sprintf(`{
  "images": [{"name": "solo", "url": "%s/root.raw", "target": "/", "boot": true}],
  "boot_mode": "bios",
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB", "volumes": [
    {"type": "partition", "mount": "/boot", "file_system": "ext4", "size": "100 MiB", "images": ["solo"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "300 MiB", "images": ["solo"]}]}]
}`, c.srv.URL)
	_, _, err = c.deploy(t, doc)
	if !errors.Is(err, deploy.ErrImage) || !errors.Is(err, confine.ErrUnsafe) || !strings.Contains(err.Error(), "/boot is a symlink") {
		t.Errorf("err = %v, want an image error refusing the symlinked mount point /boot", err)
	}
	if m := mountedUnder(t, host); len(m) > 0 {
		t.Errorf("mounted on the host directory: %v", m)
		for _, p := range m {
			unix.Unmount(p, unix.MNT_DETACH)
		}
	}
}

// TestDeployUnwritableBootInfoPath: an output path for boot-info.json that cannot be
// written is found before anything is written, not after a complete deploy (whose failure
// would then erase the disk).
func TestDeployUnwritableBootInfoPath(t *testing.T) {
	c := newDeployCase(t)
	roDir := t.TempDir()
	// A read-only bind mount stands for a read-only filesystem: root's privileges do not
	// overcome it, unlike permission bits.
	if err := unix.Mount(roDir, roDir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(roDir, unix.MNT_DETACH)
	if err := unix.Mount("", roDir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(roDir, "boot-info.json"),
		filepath.Join(c.dir, "missing-dir", "boot-info.json"),
		c.dir, // a directory
	} {
		img := filepath.Join(c.dir, "vda.img")
		_, _, err := c.deployWith(t, singleImageDoc(c.srv.URL, "alpha.tar.zst"), func(o *DeployOptions) { o.Boot.BootInfoPath = p })
		if !errors.Is(err, ErrEnvironment) || !strings.Contains(err.Error(), "--boot-info "+p) {
			t.Errorf("--boot-info %s: err = %v, want an environment error naming it", p, err)
		}
		if _, serr := os.Stat(img); serr == nil {
			t.Errorf("--boot-info %s: the image file was created, so the deploy began", p)
		}
	}
}
