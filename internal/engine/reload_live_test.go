package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
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
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
	"golang.org/x/sys/unix"
)

// retar rewrites the tar b: edit changes an entry's body (keep returns false to drop
// it), and extra entries are appended.
func retar(t *testing.T, b []byte, edit func(name string, body []byte) ([]byte, bool), extra map[string]string) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		body, keep := edit(h.Name, body)
		if !keep {
			continue
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		tw.WriteHeader(h)
		tw.Write(body)
	}
	for name, body := range extra {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)})
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// liveCase is a deployed disk whose alpha root is mounted as if the node ran from it, with
// its shared data filesystem mounted inside, and the multiboot partition mounted.
type liveCase struct {
	*reloadCase
	root, boot string
}

func newLiveCase(t *testing.T) *liveCase {
	c := newReloadCase(t)
	d := c.layout.Disks[0]
	dev := attachPlanned(t, c.img, d)
	lc := &liveCase{reloadCase: c, root: t.TempDir(), boot: t.TempDir()}
	mb := 0
	for _, p := range d.Partitions {
		if p.Role == partition.RoleMultiboot {
			mb = p.Number
		}
	}
	mountTest(t, disk.PartitionPath(dev, findMount(c.layout, "/").Number), lc.root)
	mountTest(t, disk.PartitionPath(dev, mb), lc.boot)
	mountTest(t, disk.PartitionPath(dev, findMount(c.layout, "/srv/shared").Number), filepath.Join(lc.root, "srv/shared"))
	return lc
}

// mountTest mounts dev at dir until the test ends.
func mountTest(t *testing.T, dev, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", dev, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", dev, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// systemctlFake runs systemctl calls on fake, every other program for real.
type systemctlFake struct {
	real run.Runner
	fake *run.Fake
}

func (s systemctlFake) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	if cmd.Argv[0] == "systemctl" {
		return s.fake.Run(ctx, cmd)
	}
	return s.real.Run(ctx, cmd)
}

// reloadLive reloads image live from the blob name.
func (c *liveCase) reloadLive(t *testing.T, image, name string, blob []byte, lo LiveOptions) (*LiveReloadResult, error) {
	return c.reloadLiveWith(t, image, name, blob, lo, nil)
}

// reloadLiveWith is reloadLive with edit applied to the options.
func (c *liveCase) reloadLiveWith(t *testing.T, image, name string, blob []byte, lo LiveOptions, edit func(*ReloadOptions)) (*LiveReloadResult, error) {
	t.Helper()
	c.srv.blobs[name] = blob
	o := ReloadOptions{
		Image: image, URL: c.srv.URL + "/" + name, Checksum: fmt.Sprintf("sha256:%x", sha256.Sum256(blob)), ImageName: "Alpha 2",
		BootDir:  BootDirOptions{Dir: c.boot, Env: HostEnv(nil)},
		Fetcher:  &deploy.Fetcher{Backoff: func(int) time.Duration { return time.Millisecond }, Retries: 1},
		ImageRun: ImageRun{TmpDir: c.tmp},
	}
	lo.Root = c.root
	if lo.KernelRelease == "" {
		lo.KernelRelease = "6.1.0-9-alpha"
	}
	if edit != nil {
		edit(&o)
	}
	return ReloadLive(context.Background(), o, lo)
}

// treeState lists every path under dir with its metadata and content hash.
func treeState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d", p, fi.Mode(), fi.Size())
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %x", sha256.Sum256(c))
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

// hugeTarGz is a gzipped tar holding one file 16 MiB larger than the free room of the
// filesystem at dir, of bytes that are not zero (so they are written, not made holes).
func hugeTarGz(t *testing.T, dir string) []byte {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	size := int64(fs.Bavail)*fs.Bsize + 16<<20
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "usr/share/huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(1700000000, 0)})
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for n := int64(0); n < size; n += int64(len(chunk)) {
		tw.Write(chunk[:min(int64(len(chunk)), size-n)])
	}
	tw.Close()
	zw.Close()
	return out.Bytes()
}

func TestReloadLive(t *testing.T) {
	c := newLiveCase(t)
	alpha2 := retar(t, rootfsTar(t, "alpha"), func(name string, body []byte) ([]byte, bool) {
		switch name {
		case "etc/os-release":
			return []byte("PRETTY_NAME=\"alpha 2\"\n"), true
		case "usr/bin/hello":
			return []byte("ELF alpha 2"), true
		}
		return body, true
	}, map[string]string{"usr/bin/added": "new program"})
	before, bootBefore := treeState(t, c.root), treeState(t, c.boot)
	rootUUID := findMount(c.layout, "/").FS.UUID

	t.Run("refusals", func(t *testing.T) {
		_, err := c.reloadLive(t, "beta", "a2.tar", alpha2, LiveOptions{})
		if err == nil || !strings.Contains(err.Error(), "not the image the node runs from") || !strings.Contains(err.Error(), rootUUID) {
			t.Errorf("another image than the booted one: %v", err)
		}
		gamma := rootfsTar(t, "gamma")
		_, err = c.reloadLive(t, "alpha", "gamma.tar", gamma, LiveOptions{})
		if err == nil || !strings.Contains(err.Error(), "kernel is 6.1.0-9-gamma, the running kernel is 6.1.0-9-alpha") || !strings.Contains(err.Error(), "--via-ramdisk") {
			t.Errorf("another kernel: %v", err)
		}
		// /var (never synced, so not counted as the image's) fills the filesystem.
		big := filepath.Join(c.root, "var/big")
		os.MkdirAll(filepath.Dir(big), 0o755)
		f, _ := os.Create(big)
		var fs unix.Statfs_t
		unix.Statfs(c.root, &fs)
		if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(fs.Bavail)*fs.Bsize-40<<20); err != nil {
			t.Fatal(err)
		}
		f.Close()
		_, err = c.reloadLive(t, "alpha", "a2.tar", alpha2, LiveOptions{})
		if err == nil || !strings.Contains(err.Error(), "MiB free; staging the new image needs about") || ExitCode(err) != ExitEnvironment {
			t.Errorf("no room: %v", err)
		}
		os.Remove(big)
		os.Remove(filepath.Dir(big))
		// The estimate passes, but the new image is larger than the filesystem: staging
		// fills it, and says so with the numbers.
		_, err = c.reloadLive(t, "alpha", "huge.tar.gz", hugeTarGz(t, c.root), LiveOptions{})
		if err == nil || !strings.Contains(err.Error(), "staging filled the root filesystem at "+c.root) || !strings.Contains(err.Error(), "MiB was free before") || ExitCode(err) != ExitWrite {
			t.Errorf("staging fills the filesystem: %v (exit %d)", err, ExitCode(err))
		}
		if after := treeState(t, c.root); after != before {
			t.Errorf("a refused live reload changed the root:\n%s\nwas:\n%s", after, before)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		// A staging directory a cut run left is removed first.
		os.MkdirAll(filepath.Join(c.root, StageDirName, "usr/bin"), 0o755)
		os.WriteFile(filepath.Join(c.root, StageDirName, "usr/bin/half"), []byte("half"), 0o644)
		res, err := c.reloadLive(t, "alpha", "a2.tar", alpha2, LiveOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		p := res.Plan
		if !res.DryRun || p.Totals[deploy.SyncAdded].Count != 1 || p.Totals[deploy.SyncReplaced].Count != 2 || p.Totals[deploy.SyncRemoved].Count != 0 || p.NoManifest {
			t.Errorf("dry run: %+v", p.Totals)
		}
		if after := treeState(t, c.root); after != before {
			t.Errorf("the dry run changed the root:\n%s", after)
		}
		if after := treeState(t, c.boot); after != bootBefore {
			t.Errorf("the dry run changed the boot files")
		}
	})

	running, err := os.Open(filepath.Join(c.root, "usr/bin/hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	// systemd "runs" in the mounted root: two services run the replaced /usr/bin/hello,
	// and one of them fails to restart.
	os.MkdirAll(filepath.Join(c.root, "run/systemd/system"), 0o755)
	proc := t.TempDir()
	for _, pid := range []string{"4242", "4343"} {
		os.Mkdir(filepath.Join(proc, pid), 0o755)
		os.Symlink("/usr/bin/hello (deleted)", filepath.Join(proc, pid, "exe"))
	}
	systemctl := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		switch c.Argv[1] {
		case "list-units":
			return run.Result{Stdout: []byte("hello.service loaded active running Hello\nfail.service loaded active running Fail\n")}, nil
		case "show":
			return run.Result{Stdout: []byte("Id=hello.service\nMainPID=4242\n\nId=fail.service\nMainPID=4343\n")}, nil
		case "restart":
			if c.Argv[3] == "fail.service" {
				return run.Result{}, errors.New("exit status 1")
			}
		}
		return run.Result{}, nil
	}}
	res, err := c.reloadLiveWith(t, "alpha", "a2.tar", alpha2, LiveOptions{ProcDir: proc}, func(o *ReloadOptions) {
		o.BootDir.Env.Run = systemctlFake{real: o.BootDir.Env.Run, fake: systemctl}
	})
	if err == nil || !strings.Contains(err.Error(), "1 service(s) failed to restart") || !strings.Contains(err.Error(), "fail.service") || ExitCode(err) != ExitEnvironment || res == nil {
		t.Fatalf("a failed restart: %v", err)
	}
	if got := systemctl.Commands(); len(got) != 5 || got[0] != "systemctl daemon-reexec" || got[3] != "systemctl restart -- hello.service" {
		t.Errorf("systemctl calls: %q", got)
	}
	if len(res.Restarts) != 2 || res.Restarts[0].Err != nil || res.Restarts[1].Err == nil || res.Restarts[0].Reason != "its program /usr/bin/hello was replaced" {
		t.Errorf("restarts: %+v", res.Restarts)
	}
	// alpha was deployed without a checksum or image_name: its "from" version is empty.
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256(alpha2))
	checkLiveReloaded(t, c, res, sum, running)
}

// checkLiveReloaded checks the root, the boot files and the result of TestReloadLive.
func checkLiveReloaded(t *testing.T, c *liveCase, res *LiveReloadResult, sum string, running *os.File) {
	t.Helper()
	wantClasses := map[string]deploy.SyncClass{"/etc/os-release": deploy.SyncReplaced, "/usr/bin/hello": deploy.SyncReplaced, "/usr/bin/added": deploy.SyncAdded, "/srv/shared": deploy.SyncKept, "/etc/fstab": deploy.SyncKept}
	for _, e := range res.Plan.Entries {
		if w, ok := wantClasses[e.Path]; ok && w != e.Class {
			t.Errorf("%s: %s, want %s", e.Path, e.Class, w)
		}
		delete(wantClasses, e.Path)
	}
	if len(wantClasses) > 0 {
		t.Errorf("not planned: %v", wantClasses)
	}
	for p, want := range map[string]string{"etc/os-release": "PRETTY_NAME=\"alpha 2\"\n", "usr/bin/hello": "ELF alpha 2", "usr/bin/added": "new program"} {
		if b, err := os.ReadFile(filepath.Join(c.root, p)); string(b) != want {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	if fstab, _ := os.ReadFile(filepath.Join(c.root, "etc/fstab")); string(fstab) != c.layout.Images[0].Fstab {
		t.Errorf("the node's fstab changed:\n%s", fstab)
	}
	if old, _ := io.ReadAll(running); !strings.HasPrefix(string(old), "ELF alpha") || strings.Contains(string(old), "alpha 2") {
		t.Errorf("the open program reads %.20q", old)
	}
	for _, p := range []string{StageDirName, "srv/shared/from-alpha"} {
		if _, err := os.Stat(filepath.Join(c.root, p)); p == StageDirName && !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", p, err)
		}
	}
	bi, err := bootloader.ReadBootInfo(filepath.Join(c.boot, bootloader.BootInfoPath))
	if err != nil {
		t.Fatal(err)
	}
	e := bi.Elements[0]
	if e.OSID != "alpha" || e.Digest != sum || e.ImageName != "Alpha 2" || e.State != "" || res.To.Digest != sum {
		t.Errorf("element %+v, result %+v", e, res)
	}
	hist, _ := os.ReadFile(filepath.Join(c.boot, bootloader.HistoryPath))
	lines := strings.Split(strings.TrimSpace(string(hist)), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, `"operation":"reload-live"`) || !strings.Contains(last, `"to_image":{"image_name":"Alpha 2","digest":"`+sum+`"}`) {
		t.Errorf("history's last record: %s", last)
	}
}
