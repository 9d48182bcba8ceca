package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"golang.org/x/sys/unix"
)

// needLoopCLI skips a loop-device test where it cannot run.
func needLoopCLI(t *testing.T) {
	t.Helper()
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
}

// deployedImage deploys twoImageSpec into a new 400 MiB image file and returns its path.
func deployedImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	spec := twoImageSpec("file://"+kernelTar(t, dir, "red"), kernelTar(t, dir, "blue"))
	img := filepath.Join(dir, "disk.img")
	r := runCLI(t, spec, "deploy", "-", "--device", "vda="+img, "--size", "vda=400MiB", "--seed", "s", "--prober", "builtin", "--boot-info", "")
	if r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stderr)
	}
	return img
}

// fileHash is the SHA-256 of a whole file.
func fileHash(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// attachMultiboot attaches img to a loop device, shows the kernel its partitions, and
// returns the multiboot partition's node; the loop device is detached when the test ends
// (after the cleanups registered later, such as an unmount).
func attachMultiboot(t *testing.T, img string) string {
	t.Helper()
	ctx := context.Background()
	loop, err := disk.AttachLoop(ctx, img, 512)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := loop.Detach(ctx); err != nil {
			t.Errorf("detaching %s: %v", loop.Path, err)
		}
	})
	tbl, err := partition.ReadTable(ctx, loop.Path, 512)
	if err != nil {
		t.Fatal(err)
	}
	var parts []disk.Part
	node := ""
	for _, p := range tbl.Partitions {
		parts = append(parts, disk.Part{Number: p.Number, Start: p.Start * 512, Size: (p.End - p.Start + 1) * 512})
		if p.Name == "multiboot" {
			node = disk.PartitionPath(loop.Path, p.Number)
		}
	}
	if node == "" {
		t.Fatalf("%s has no multiboot partition: %+v", img, tbl.Partitions)
	}
	if err := (disk.Sys{}).Reread(ctx, loop.Path, parts); err != nil {
		t.Fatal(err)
	}
	return node
}

// mountMultiboot mounts img's multiboot partition at a new directory until the test ends.
func mountMultiboot(t *testing.T, img string) string {
	t.Helper()
	node := attachMultiboot(t, img)
	mnt := t.TempDir()
	if err := disk.Mount(context.Background(), node, mnt, "ext4", ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := disk.Unmount(context.Background(), mnt); err != nil {
			t.Errorf("unmounting %s: %v", mnt, err)
		}
	})
	return mnt
}

// checkSwitchResult checks the boot files after concurrent switches: list works and finds
// grubenv and boot-info.json agreeing, the default is the last switch recorded, and the
// history holds one switch line per successful switch.
func checkSwitchResult(t *testing.T, where []string, ok int) {
	t.Helper()
	r := runCLI(t, "", append([]string{"list", "--json"}, where...)...)
	var st engine.BootDocument
	if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil {
		t.Fatalf("list afterwards: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if st.Mismatch != "" {
		t.Errorf("grubenv and boot-info.json disagree: %s", st.Mismatch)
	}
	r = runCLI(t, "", append([]string{"history", "--json"}, where...)...)
	var hist historyJSON
	if err := json.Unmarshal([]byte(r.stdout), &hist); r.code != 0 || err != nil {
		t.Fatalf("history afterwards: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	var switches []bootloader.HistoryEntry
	for _, h := range hist.Entries {
		if h.Operation == "switch-default" {
			switches = append(switches, h)
			if h.Result != bootloader.ResultOK || h.Error != "" {
				t.Errorf("history records a failed switch: %+v", h)
			}
		}
	}
	if len(switches) != ok {
		t.Errorf("history has %d switch lines, %d switches succeeded", len(switches), ok)
	}
	if len(switches) > 0 && st.Saved >= 0 && st.Saved < len(st.Elements) && switches[len(switches)-1].To != st.Elements[st.Saved].OSID {
		t.Errorf("default is %s, the last switch recorded went to %s", st.Elements[st.Saved].OSID, switches[len(switches)-1].To)
	}
}

// runSwitches runs n switch-default processes at once, alternating between the two
// entries, and returns how many succeeded; each must succeed or find the boot files
// locked (exit 3).
func runSwitches(t *testing.T, bin string, n int, names [2]string, where ...string) int {
	t.Helper()
	var wg sync.WaitGroup
	codes := make([]int, n)
	outs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := append([]string{"switch-default", names[i%2], "--lock-wait", "2m"}, where...)
			out, err := exec.Command(bin, args...).CombinedOutput()
			outs[i] = string(out)
			var ee *exec.ExitError
			switch {
			case errors.As(err, &ee):
				codes[i] = ee.ExitCode()
			case err != nil:
				codes[i] = -1
				outs[i] += err.Error()
			}
		}()
	}
	wg.Wait()
	ok := 0
	for i, c := range codes {
		switch c {
		case 0:
			ok++
		case engine.ExitEnvironment:
			if !strings.Contains(outs[i], "locked") {
				t.Errorf("switch %d: exit 3 without a lock: %s", i, outs[i])
			}
		default:
			t.Errorf("switch %d: exit %d: %s", i, c, outs[i])
		}
	}
	return ok
}

// TestConcurrentSwitchDefault runs twenty switch-default processes at once on one disk
// image, and on one boot directory: the lock serialises them, so the multiboot
// filesystem stays consistent and grubenv agrees with boot-info.json (a loop-device test).
func TestConcurrentSwitchDefault(t *testing.T) {
	needLoopCLI(t)
	bin := buildProvisioner(t)
	const n = 20
	t.Run("device", func(t *testing.T) {
		img := deployedImage(t)
		ok := runSwitches(t, bin, n, [2]string{"blue", "red"}, "--device", img)
		if ok == 0 {
			t.Error("no switch succeeded")
		}
		checkSwitchResult(t, []string{"--device", img}, ok)
		if out, err := exec.Command("e2fsck", "-fn", attachMultiboot(t, img)).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn of the multiboot filesystem: %v\n%s", err, out)
		}
	})
	t.Run("boot-dir", func(t *testing.T) {
		dir := bootDir(t)
		ok := runSwitches(t, bin, n, [2]string{"centos", "ubuntu"}, "--boot-dir", dir)
		if ok == 0 {
			t.Error("no switch succeeded")
		}
		checkSwitchResult(t, []string{"--boot-dir", dir}, ok)
	})
	t.Run("two mounts", func(t *testing.T) {
		// Two mounts of one filesystem (one block device) share the directory's lock.
		img := deployedImage(t)
		a, b := mountMultiboot(t, img), t.TempDir()
		if err := unix.Mount(a, b, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := disk.Unmount(context.Background(), b); err != nil {
				t.Error(err)
			}
		})
		var wg sync.WaitGroup
		oks := make([]int, 2)
		for i, dir := range []string{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				oks[i] = runSwitches(t, bin, n/2, [2]string{"blue", "red"}, "--boot-dir", dir)
			}()
		}
		wg.Wait()
		checkSwitchResult(t, []string{"--boot-dir", a}, oks[0]+oks[1])
	})
}

// lockFile holds a flock on path (another open file description, as another process
// would) until the returned function is called.
func lockFile(t *testing.T, path string, how int) func() {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		t.Fatalf("flock %s: %v", path, err)
	}
	var once sync.Once
	release := func() { once.Do(func() { f.Close() }) }
	t.Cleanup(release)
	return release
}

// TestSwitchWaitsForLock: a second switch waits (--lock-wait) for the one holding the
// image file, then runs; when the holder takes longer, it gives up with exit 3 and
// changes nothing (a loop-device test).
func TestSwitchWaitsForLock(t *testing.T) {
	needLoopCLI(t)
	img := deployedImage(t)

	t.Run("released in time", func(t *testing.T) {
		release := lockFile(t, img, unix.LOCK_EX)
		time.AfterFunc(time.Second, release)
		start := time.Now()
		r := runCLI(t, "", "switch-default", "blue", "--device", img, "--lock-wait", "5s")
		if r.code != 0 || r.stdout != "default is now 1 (blue) (was 0 (red))\n" {
			t.Errorf("switch-default: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if d := time.Since(start); d < time.Second {
			t.Errorf("switch-default ran after %v, while the image file was locked", d)
		}
	})
	t.Run("held too long", func(t *testing.T) {
		before := fileHash(t, img)
		release := lockFile(t, img, unix.LOCK_SH)
		defer release()
		start := time.Now()
		r := runCLI(t, "", "switch-default", "red", "--device", img, "--lock-wait", "1s")
		d := time.Since(start)
		if r.code != engine.ExitEnvironment || !strings.Contains(r.stderr, img+" is locked by another run") || !strings.Contains(r.stderr, "waited 1s") {
			t.Errorf("switch-default: exit %d\n%s", r.code, r.stderr)
		}
		if d < time.Second || d > 5*time.Second {
			t.Errorf("switch-default gave up after %v, want about 1s", d)
		}
		if fileHash(t, img) != before {
			t.Error("a switch that did not get the lock changed the image")
		}
		// Readers share the lock.
		if r := runCLI(t, "", "list", "--device", img, "--lock-wait", "0"); r.code != 0 {
			t.Errorf("list beside another reader: exit %d\n%s", r.code, r.stderr)
		}
	})
	t.Run("boot-dir", func(t *testing.T) {
		dir := bootDir(t)
		release := lockFile(t, dir, unix.LOCK_SH)
		defer release()
		r := runCLI(t, "", "switch-default", "centos", "--boot-dir", dir, "--lock-wait", "0")
		if r.code != engine.ExitEnvironment || !strings.Contains(r.stderr, dir+" is locked by another run") {
			t.Errorf("switch-default: exit %d\n%s", r.code, r.stderr)
		}
	})
}

// TestDeployRefusesBusyImageFile: an image file attached to a loop device with a mounted
// partition is refused (exit 3, naming the mount), and the mounted filesystem is
// untouched (a loop-device test).
func TestDeployRefusesBusyImageFile(t *testing.T) {
	needLoopCLI(t)
	img := deployedImage(t)
	mnt := mountMultiboot(t, img)
	keep := filepath.Join(mnt, "keep.txt")
	if err := os.WriteFile(keep, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := twoImageSpec("file://"+kernelTar(t, dir, "red"), kernelTar(t, dir, "blue"))
	for _, args := range [][]string{
		{"deploy", "-", "--device", "vda=" + img, "--seed", "t", "--prober", "builtin", "--boot-info", ""},
		{"partition", "-", "--device", "vda=" + img, "--seed", "t"},
	} {
		r := runCLI(t, spec, args...)
		if r.code != engine.ExitEnvironment || !strings.Contains(r.stderr, img+" is busy") || !strings.Contains(r.stderr, "is mounted at "+mnt) {
			t.Errorf("%s onto a busy image file: exit %d\n%s%s", args[0], r.code, r.stdout, r.stderr)
		}
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "precious\n" {
		t.Errorf("the mounted filesystem changed: %q, %v", b, err)
	}
	for _, args := range [][]string{{"list"}, {"switch-default", "blue"}} {
		r := runCLI(t, "", append(args, "--device", img)...)
		if r.code != engine.ExitEnvironment || !strings.Contains(r.stderr, "is mounted at "+mnt) || !strings.Contains(r.stderr, "--boot-dir") {
			t.Errorf("%s on a busy image file: exit %d\n%s", args[0], r.code, r.stderr)
		}
	}
}

// TestTwoDeploysOfOneFile: while one deploy holds an image file (blocked fetching its
// first image), a second deploy of the same file is refused before it writes anything;
// the first completes and its result reads back (a loop-device test).
func TestTwoDeploysOfOneFile(t *testing.T) {
	needLoopCLI(t)
	dir := t.TempDir()
	red, blue := kernelTar(t, dir, "red"), kernelTar(t, dir, "blue")
	gate := make(chan struct{})
	fetching := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetching <- struct{}{}
		<-gate
		http.ServeFile(w, r, filepath.Join(dir, filepath.Base(r.URL.Path)))
	}))
	defer srv.Close()
	var openGate sync.Once
	defer openGate.Do(func() { close(gate) })
	spec := twoImageSpec(srv.URL+"/"+filepath.Base(red), srv.URL+"/"+filepath.Base(blue))
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 400<<20); err != nil {
		t.Fatal(err)
	}
	args := []string{"deploy", "-", "--device", "vda=" + img, "--seed", "s", "--prober", "builtin", "--boot-info", ""}
	first := make(chan result, 1)
	go func() { first <- runCLI(t, spec, args...) }()
	select {
	case <-fetching:
	case r := <-first:
		t.Fatalf("the first deploy ended before fetching: exit %d\n%s", r.code, r.stderr)
	case <-time.After(2 * time.Minute):
		t.Fatal("the first deploy never fetched its image")
	}
	second := make(chan result, 1)
	go func() { second <- runCLI(t, spec, append(args[:len(args):len(args)], "--seed", "other")...) }()
	var r2 result
	select {
	case r2 = <-second:
	case <-time.After(30 * time.Second):
		openGate.Do(func() { close(gate) })
		r2 = <-second
	}
	if r2.code != engine.ExitEnvironment || !strings.Contains(r2.stderr, img+" is locked by another run") || strings.Contains(r2.stdout+r2.stderr, "applying partitions_policy") {
		t.Errorf("second deploy: exit %d\n%s%s", r2.code, r2.stdout, r2.stderr)
	}
	openGate.Do(func() { close(gate) })
	r1 := <-first
	if r1.code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", r1.code, r1.stderr)
	}
	r := runCLI(t, "", "list", "--device", img)
	if r.code != 0 || !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "0 red - Test red (red) default 1 blue Blue OS Test blue (blue)") {
		t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	tbl, err := partition.ReadTable(context.Background(), img, 512)
	if err != nil || len(tbl.Partitions) != 4 {
		t.Errorf("table after the deploys: %+v, %v", tbl, err)
	}
	if out, err := exec.Command("sgdisk", "-v", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
}

// TestListReadOnlyImage: list and history work on an image file that cannot be written
// (immutable, which binds root too); switch-default fails with exit 3 and changes
// nothing (a loop-device test).
func TestListReadOnlyImage(t *testing.T) {
	needLoopCLI(t)
	img := deployedImage(t)
	if out, err := exec.Command("chattr", "+i", img).CombinedOutput(); err != nil {
		t.Skipf("cannot make %s immutable here (chattr +i: %v: %s)", img, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("chattr", "-i", img).CombinedOutput(); err != nil {
			t.Errorf("chattr -i: %v: %s", err, out)
		}
	})
	before := fileHash(t, img)
	r := runCLI(t, "", "list", "--device", img)
	if r.code != 0 || !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "0 red - Test red (red) default") {
		t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "history", "--device", img); r.code != 0 || !strings.Contains(r.stdout, " deploy ") {
		t.Errorf("history: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "switch-default", "blue", "--device", img)
	if r.code != engine.ExitEnvironment || !strings.Contains(r.stderr, img) || !strings.Contains(r.stderr, "cannot be written") {
		t.Errorf("switch-default: exit %d\n%s", r.code, r.stderr)
	}
	if fileHash(t, img) != before {
		t.Error("the read-only image changed")
	}
}

// TestRefusedSizeLeavesNoFile: a --size the filesystem refuses, or a new file that the
// run cannot use, leaves no file behind.
func TestRefusedSizeLeavesNoFile(t *testing.T) {
	needLoopCLI(t)
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	verify := strings.Replace(smallSpec, `"boot_mode"`, `"partitions_policy": "verify", "boot_mode"`, 1)
	for _, tc := range []struct {
		name, spec, size string
		code             int
		want             string
		ext4             bool
	}{
		// ext4 files end at 16 TiB; the temporary directory must be on ext4 to refuse it.
		{"larger than the filesystem allows", smallSpec, "20TiB", engine.ExitEnvironment, "file too large", true},
		{"too small for the plan", smallSpec, "1MiB", engine.ExitInvalidSpec, "too small", false},
		// Any failure will do (code 0): what matters is the file.
		{"verify on a new file", verify, "64MiB", 0, "no GPT", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ext4 && st.Type != unix.EXT4_SUPER_MAGIC {
				t.Skipf("%s is not on ext4 (magic %#x)", dir, st.Type)
			}
			img := filepath.Join(dir, "new.img")
			r := runCLI(t, tc.spec, "partition", "-", "--device", "vda="+img, "--size", "vda="+tc.size, "--seed", "s")
			if r.code == 0 || tc.code != 0 && r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, want %d and %q\n%s", r.code, tc.code, tc.want, r.stderr)
			}
			if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused run left %s behind: %v", img, err)
				os.Remove(img)
			}
		})
	}
}
