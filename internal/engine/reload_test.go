package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
)

// partitionSum hashes partition p's bytes in the image file img: a filesystem that was
// never opened for writing keeps every byte.
func partitionSum(t *testing.T, img string, d *partition.DiskLayout, p *partition.Partition) [32]byte {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, int64(p.Start*d.SectorSize), int64(p.Sectors()*d.SectorSize))); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// reloadCase is a deployed two-image disk to reload images of.
type reloadCase struct {
	*deployCase
	img    string
	layout *partition.Layout
}

func newReloadCase(t *testing.T) *reloadCase {
	c := newDeployCase(t)
	res, img, err := c.deployWith(t, deployDoc(c.srv.URL, "", ""), func(*DeployOptions) {})
	if err != nil {
		t.Fatal(err)
	}
	return &reloadCase{deployCase: c, img: img, layout: res.Layout}
}

// reload reloads image from the blob name on the case's server.
func (c *reloadCase) reload(t *testing.T, image, name, checksum string, edit func(*ReloadOptions)) (*ReloadResult, error) {
	t.Helper()
	o := c.options(image, name, checksum)
	if edit != nil {
		edit(&o)
	}
	res, err := Reload(context.Background(), o)
	if m := mountedUnder(t, c.tmp); len(m) > 0 {
		t.Errorf("still mounted after reload: %v", m)
	}
	if o.BootDir.Device == c.img {
		noLoopFor(t, c.img) // a test that attached the image itself detaches it
	}
	return res, err
}

// options are the options of a reload of image from the blob name on the case's server,
// offline on the case's disk-image file.
func (c *reloadCase) options(image, name, checksum string) ReloadOptions {
	return ReloadOptions{
		Image: image, URL: c.srv.URL + "/" + name, Checksum: checksum, ImageName: "Gamma 2",
		BootDir:  BootDirOptions{Device: c.img, Env: HostEnv(nil), TmpDir: c.tmp},
		Fetcher:  &deploy.Fetcher{Backoff: func(int) time.Duration { return time.Millisecond }, Retries: 1},
		ImageRun: ImageRun{TmpDir: c.tmp},
	}
}

// bootFiles reads boot-info.json, grubenv and the history off the multiboot partition.
func (c *reloadCase) bootFiles(t *testing.T) (bi *bootloader.BootInfo, env, hist string) {
	t.Helper()
	mb := c.layout.Disks[0]
	var n int
	for _, p := range mb.Partitions {
		if p.Role == partition.RoleMultiboot {
			n = p.Number
		}
	}
	withPartition(t, c.img, mb, n, func(t *testing.T, mnt string) {
		var err error
		if bi, err = bootloader.ReadBootInfo(filepath.Join(mnt, bootloader.BootInfoPath)); err != nil {
			t.Fatal(err)
		}
		e, err := os.ReadFile(filepath.Join(mnt, "boot/grub/grubenv"))
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := bootloader.ParseEnv(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range parsed.Keys() {
			v, _ := parsed.Get(k)
			env += k + "=" + v + "\n"
		}
		h, _ := os.ReadFile(filepath.Join(mnt, bootloader.HistoryPath))
		hist = string(h)
		if _, err := bootloader.ReadRecord(mnt); err != nil {
			t.Error(err)
		}
	})
	return bi, env, hist
}

func TestReloadImage(t *testing.T) {
	c := newReloadCase(t)
	d := c.layout.Disks[0]
	alphaRoot := findMount(c.layout, "/")
	betaRoot := findFS(c.layout, c.layout.Images[1].RootUUID)
	alphaBefore := partitionSum(t, c.img, d, alphaRoot)
	gamma := gzipBytes(rootfsTar(t, "gamma"))
	c.srv.blobs["gamma.tar.gz"] = gamma
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256(gamma))

	res, err := c.reload(t, "beta", "gamma.tar.gz", sum, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tries != DefaultTries || res.MovedDefault != nil || res.To.Digest != sum || res.From.Digest == "" ||
		len(res.Recreated) != 1 || res.Recreated[0].UUID != betaRoot.FS.UUID || len(res.Kept) != 2 {
		t.Errorf("result: %+v", res)
	}
	if partitionSum(t, c.img, d, alphaRoot) != alphaBefore {
		t.Error("the other image's root changed")
	}
	withPartition(t, c.img, d, betaRoot.Number, func(t *testing.T, mnt string) {
		b, err := os.ReadFile(filepath.Join(mnt, "etc/os-release"))
		if err != nil || !strings.Contains(string(b), "gamma") {
			t.Errorf("reloaded root: os-release %q %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(mnt, "boot/vmlinuz-6.1.0-9-beta")); !os.IsNotExist(err) {
			t.Errorf("the old image's kernel is still there: %v", err)
		}
		fstab, _ := os.ReadFile(filepath.Join(mnt, "etc/fstab"))
		if string(fstab) != c.layout.Images[1].Fstab {
			t.Errorf("fstab:\n%s\nwant:\n%s", fstab, c.layout.Images[1].Fstab)
		}
	})
	withPartition(t, c.img, d, findMount(c.layout, "/srv/shared").Number, func(t *testing.T, mnt string) {
		for _, name := range []string{"from-alpha", "from-beta", "from-gamma"} {
			if _, err := os.Stat(filepath.Join(mnt, name)); err != nil {
				t.Errorf("shared volume: %v", err)
			}
		}
	})
	bi, env, hist := c.bootFiles(t)
	e := bi.Elements[1]
	if e.Kernel != "/boot/vmlinuz-6.1.0-9-gamma" || e.Digest != sum || e.ImageName != "Gamma 2" || e.State != "" ||
		e.RootUUID != betaRoot.FS.UUID || e.BootName != "gamma (beta)" || bi.CurrentElement != 0 {
		t.Errorf("boot info after the reload: %+v", bi)
	}
	if !strings.Contains(env, "saved_entry=provisioner-alpha\n") || !strings.Contains(env, "trial_entry=provisioner-beta\n") {
		t.Errorf("grubenv:\n%s", env)
	}
	last := lastLine(hist)
	if !strings.Contains(last, `"operation":"reload"`) || !strings.Contains(last, sum) || !strings.Contains(last, "on trial (3 tries)") {
		t.Errorf("history's last record: %s", last)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestReloadFailures: a bad source fails before anything is written; a download cut for
// good after the filesystems were re-created marks the image as failed and leaves the
// default and the other image as they were.
func TestReloadFailures(t *testing.T) {
	c := newReloadCase(t)
	d := c.layout.Disks[0]
	alphaRoot := findMount(c.layout, "/")
	betaRoot := findFS(c.layout, c.layout.Images[1].RootUUID)
	alphaBefore, betaBefore := partitionSum(t, c.img, d, alphaRoot), partitionSum(t, c.img, d, betaRoot)
	c.srv.blobs["junk.tar.gz"] = []byte("this is not an image at all, not even gzip")
	c.srv.blobs["SUMS2"] = []byte("0000000000000000000000000000000000000000000000000000000000000000  other.tar.gz\n")
	for _, tc := range []struct{ name, blob, checksum string }{
		{"404", "missing.tar.gz", ""},
		{"wrong format", "junk.tar.gz", ""},
		{"no checksum line", "junk.tar.gz", c.srv.URL + "/SUMS2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.reload(t, "beta", tc.blob, tc.checksum, nil)
			if ExitCode(err) != ExitImage {
				t.Fatalf("exit %d: %v", ExitCode(err), err)
			}
			if partitionSum(t, c.img, d, betaRoot) != betaBefore {
				t.Error("the image's root was written")
			}
		})
	}
	if _, err := c.reload(t, "nosuch", "gamma.tar.gz", "", nil); ExitCode(err) != ExitFailure || !errors.Is(err, bootloader.ErrUnknownEntry) {
		t.Errorf("unknown image: exit %d: %v", ExitCode(err), err)
	}

	gamma := gzipBytes(rootfsTar(t, "gamma"))
	c.srv.blobs["gamma.tar.gz"] = gamma
	c.srv.cut["gamma.tar.gz"] = len(gamma) / 2
	c.srv.noResume["gamma.tar.gz"] = true
	c.srv.whole["gamma.tar.gz"] = 1 // the preflight's
	_, err := c.reload(t, "beta", "gamma.tar.gz", fmt.Sprintf("sha256:%x", sha256.Sum256(gamma)), nil)
	if ExitCode(err) != ExitImage {
		t.Fatalf("cut download: exit %d: %v", ExitCode(err), err)
	}
	if partitionSum(t, c.img, d, alphaRoot) != alphaBefore {
		t.Error("the other image's root changed")
	}
	bi, env, hist := c.bootFiles(t)
	if e := bi.Elements[1]; e.State != bootloader.ElementFailed || e.StateError == "" || bi.CurrentElement != 0 {
		t.Errorf("boot info after the failed reload: %+v", bi)
	}
	if !strings.Contains(env, "saved_entry=provisioner-alpha\n") || strings.Contains(env, "trial_entry=provisioner-beta") {
		t.Errorf("grubenv:\n%s", env)
	}
	if last := lastLine(hist); !strings.Contains(last, `"operation":"reload"`) || strings.Contains(last, `"result":"ok`) {
		t.Errorf("history's last record: %s", last)
	}
}

// TestReloadDefaultMovesFirst: reloading the default moves the default to the other image
// before anything is written, and the history says so.
func TestReloadDefaultMovesFirst(t *testing.T) {
	c := newReloadCase(t)
	gamma := zstdBytes(t, rootfsTar(t, "gamma"))
	c.srv.blobs["gamma.tar.zst"] = gamma
	res, err := c.reload(t, "alpha", "gamma.tar.zst", "", func(o *ReloadOptions) { o.NoTrial = true })
	if err != nil {
		t.Fatal(err)
	}
	if res.MovedDefault == nil || res.MovedDefault.OSID != "beta" || res.Tries != 0 {
		t.Errorf("result: %+v", res)
	}
	bi, env, hist := c.bootFiles(t)
	if bi.CurrentElement != 0 || !strings.Contains(env, "saved_entry=provisioner-alpha\n") {
		t.Errorf("--no-trial: alpha is not the default again: current %d, grubenv:\n%s", bi.CurrentElement, env)
	}
	if !strings.Contains(hist, "default moved from alpha to beta while alpha is reloaded") {
		t.Errorf("history:\n%s", hist)
	}
	if _, err := c.reload(t, "alpha", "gamma.tar.zst", "", func(o *ReloadOptions) { o.Tries = 11 }); ExitCode(err) != ExitFailure {
		t.Errorf("--tries 11: %v", err)
	}
}

// TestReloadRefusesMounted: a reload whose image has a filesystem mounted (its root, as the
// running root would be) is refused with exit 3, naming the mount, and writes nothing (the
// xfs root is mounted read-only without log recovery, so the mount itself writes nothing).
func TestReloadRefusesMounted(t *testing.T) {
	c := newReloadCase(t)
	d := c.layout.Disks[0]
	betaRoot := findFS(c.layout, c.layout.Images[1].RootUUID)
	before := partitionSum(t, c.img, d, betaRoot)
	c.srv.blobs["gamma.tar.gz"] = gzipBytes(rootfsTar(t, "gamma"))
	dev := attachPlanned(t, c.img, d)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "ro,norecovery", disk.PartitionPath(dev, betaRoot.Number), mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	_, err := c.reload(t, "beta", "gamma.tar.gz", "", func(o *ReloadOptions) { o.BootDir.Device = dev })
	if out, uerr := exec.Command("umount", mnt).CombinedOutput(); uerr != nil {
		t.Errorf("umount: %v: %s", uerr, out)
	}
	if ExitCode(err) != ExitEnvironment || !strings.Contains(fmt.Sprint(err), "is mounted at "+mnt) {
		t.Fatalf("exit %d: %v", ExitCode(err), err)
	}
	if partitionSum(t, c.img, d, betaRoot) != before {
		t.Error("the mounted root was written")
	}
	bi, _, _ := c.bootFiles(t)
	if e := bi.Elements[1]; e.State != "" || bi.CurrentElement != 0 {
		t.Errorf("boot info after the refusal: %+v", bi)
	}
}
