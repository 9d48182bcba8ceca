package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdLock takes a flock on p through an open file description of its own (as another
// process would) and returns its release.
func holdLock(t *testing.T, p string, how int) func() {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		t.Fatal(err)
	}
	done := false
	release := func() {
		if !done {
			done = true
			f.Close()
		}
	}
	t.Cleanup(release)
	return release
}

// TestLockPath checks modes and the bounded wait against a lock held by another open
// file description in this process, which flock treats as another run.
func TestLockPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		path    string
		held    int           // flock held by the other description (0: none)
		release time.Duration // when the other lets go (0: never)
		mode    LockMode
		wait    time.Duration
		locked  bool          // want a *LockedError
		minTime time.Duration // the call must have waited at least this long
	}{
		{"free file", file, 0, 0, Exclusive, 0, false, 0},
		{"free directory", dir, 0, 0, Shared, 0, false, 0},
		{"readers share", file, unix.LOCK_SH, 0, Shared, 0, false, 0},
		{"writer after reader, no wait", file, unix.LOCK_SH, 0, Exclusive, 0, true, 0},
		{"reader after writer, no wait", file, unix.LOCK_EX, 0, Shared, 0, true, 0},
		{"directory held", dir, unix.LOCK_EX, 0, Exclusive, 0, true, 0},
		{"wait runs out", file, unix.LOCK_EX, 0, Exclusive, 300 * time.Millisecond, true, 300 * time.Millisecond},
		{"released while waiting", file, unix.LOCK_EX, 200 * time.Millisecond, Exclusive, 5 * time.Second, false, 200 * time.Millisecond},
		{"reader released while waiting", dir, unix.LOCK_SH, 200 * time.Millisecond, Exclusive, 5 * time.Second, false, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.held != 0 {
				release := holdLock(t, tc.path, tc.held)
				if tc.release > 0 {
					time.AfterFunc(tc.release, release)
				}
			}
			start := time.Now()
			l, err := LockPath(context.Background(), tc.path, tc.mode, tc.wait)
			took := time.Since(start)
			if took < tc.minTime || took > tc.minTime+2*time.Second {
				t.Errorf("took %v, want about %v", took, tc.minTime)
			}
			if !tc.locked {
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Release(); err != nil {
					t.Error(err)
				}
				return
			}
			var le *LockedError
			if !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.Path != tc.path || le.Waited != tc.wait {
				t.Fatalf("err = %v, want a *LockedError for %s after %v", err, tc.path, tc.wait)
			}
			// The holder is this process; /proc/locks names it with its command line.
			want := fmt.Sprintf("pid %d: ", os.Getpid())
			if len(le.Holders) != 1 || !strings.HasPrefix(le.Holders[0], want) || !strings.Contains(err.Error(), tc.path+" is locked by another run (pid ") {
				t.Errorf("holders %q, message %q", le.Holders, err)
			}
			if tc.wait > 0 && !strings.HasSuffix(err.Error(), fmt.Sprintf("(waited %v)", tc.wait)) {
				t.Errorf("message %q does not say how long it waited", err)
			}
		})
	}

	t.Run("cancelled while waiting", func(t *testing.T) {
		holdLock(t, file, unix.LOCK_EX)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := LockPath(ctx, file, Shared, time.Minute)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), file) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("not lockable", func(t *testing.T) {
		// A FIFO must neither hang the open nor be locked.
		fifo := filepath.Join(t.TempDir(), "fifo")
		if err := unix.Mkfifo(fifo, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LockPath(context.Background(), fifo, Shared, 0); err == nil || !strings.Contains(err.Error(), "not a block device, regular file or directory") {
			t.Errorf("fifo: %v", err)
		}
		if _, err := LockPath(context.Background(), file+".missing", Shared, 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing: %v", err)
		}
	})
}

func TestLockHolders(t *testing.T) {
	proc := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(proc, "locks"), `1: FLOCK  ADVISORY  READ 101 fe:00:9979663 0 EOF
2: FLOCK  ADVISORY  READ 102 fe:00:9979663 0 EOF
3: POSIX  ADVISORY  WRITE 103 fe:00:9979663 0 EOF
4: FLOCK  ADVISORY  WRITE 104 fe:00:12 0 EOF
5: FLOCK  ADVISORY  WRITE 105 103:05:9979663 0 EOF
6: -> FLOCK  ADVISORY  WRITE 106 fe:00:9979663 0 EOF
7: FLOCK  ADVISORY  READ 101 fe:00:9979663 0 EOF
`)
	write(filepath.Join(proc, "101", "cmdline"), "provisioner\x00list\x00--device\x00disk.img\x00")
	st := unix.Stat_t{Dev: unix.Mkdev(0xfe, 0), Ino: 9979663}
	got := lockHolders(proc, st)
	want := []string{"pid 101: provisioner list --device disk.img", "pid 102"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("holders = %q, want %q", got, want)
	}
	// Minor numbers above 255 and majors in three digits print as such.
	if got := lockHolders(proc, unix.Stat_t{Dev: unix.Mkdev(0x103, 5), Ino: 9979663}); !reflect.DeepEqual(got, []string{"pid 105"}) {
		t.Errorf("holders = %q", got)
	}
	if got := lockHolders(t.TempDir(), st); got != nil {
		t.Errorf("without /proc/locks: %q", got)
	}
}

func TestMatchBacking(t *testing.T) {
	loops := []loopBacking{
		{Name: "loop0", Dev: 0xfe00, Ino: 12, Known: true},
		{Name: "loop3", Dev: 0xfe00, Ino: 13, Known: true},
		{Name: "loop4", Dev: 0xfe01, Ino: 12, Known: true},
		{Name: "loop7", Dev: 0xfe00, Ino: 12, Known: true},
		{Name: "loop9"}, // bound, but its backing file could not be told
	}
	for _, tc := range []struct {
		dev, ino uint64
		want     []string
	}{
		{0xfe00, 12, []string{"loop0", "loop7"}},
		{0xfe00, 13, []string{"loop3"}},
		{0xfe01, 12, []string{"loop4"}},
		{0xfe01, 13, nil},
		{0, 0, nil},
	} {
		if got := matchBacking(loops, tc.dev, tc.ino); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("matchBacking(%#x, %d) = %q, want %q", tc.dev, tc.ino, got, tc.want)
		}
	}
}

// TestLoopsBackedByFake reads the backing files of a fake tree's loop devices from sysfs,
// where there is no device to ask.
func TestLoopsBackedByFake(t *testing.T) {
	f := newFakeTree(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	for _, p := range []string{a, b} {
		f.write(p, "")
	}
	f.disk("loop0", "7:0", map[string]string{"loop/backing_file": a + "\n"})
	f.disk("loop1", "7:1", nil) // not bound
	f.disk("loop2", "7:2", map[string]string{"loop/backing_file": b + "\n"})
	f.disk("loop10", "7:10", map[string]string{"loop/backing_file": a + "\n"})
	f.disk("loop11", "7:11", map[string]string{"loop/backing_file": filepath.Join(dir, "gone.img") + " (deleted)\n"})
	f.disk("vda", "252:0", nil)
	link := filepath.Join(dir, "hard.img")
	if err := os.Link(a, link); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		file string
		want []string
	}{
		{a, []string{f.dev("loop0"), f.dev("loop10")}},
		{link, []string{f.dev("loop0"), f.dev("loop10")}},
		{b, []string{f.dev("loop2")}},
	} {
		got, err := f.sys.LoopsBackedBy(ctx, tc.file)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("LoopsBackedBy(%s) = %q, %v; want %q", tc.file, got, err, tc.want)
		}
	}
	if _, err := f.sys.LoopsBackedBy(ctx, filepath.Join(dir, "none.img")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	// An unused loop device does not make its file busy.
	if err := f.sys.CheckFileNotBusy(ctx, a); err != nil {
		t.Errorf("CheckFileNotBusy: %v", err)
	}
}

func TestParentDisk(t *testing.T) {
	f := newFakeTree(t)
	f.disk("vda", "252:0", nil)
	f.part("vda", 2, "252:2")
	f.disk("nvme0n1", "259:0", nil)
	f.part("nvme0n1", 1, "259:1")
	for dev, want := range map[string]string{
		"vda": "vda", "vda2": "vda", "nvme0n1": "nvme0n1", "nvme0n1p1": "nvme0n1",
	} {
		got, err := f.sys.ParentDisk(f.dev(dev))
		if err != nil || got != f.dev(want) {
			t.Errorf("ParentDisk(%s) = %q, %v; want %q", dev, got, err, f.dev(want))
		}
	}
	if _, err := f.sys.ParentDisk(f.dev("vdz")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing device: %v", err)
	}
}

// TestImageFileOnLoop attaches image files to real loop devices: LoopsBackedBy finds each
// file's own (also by another name), CheckFileNotBusy names the file, the loop device and
// the mount, and a read-only attachment refuses writes.
func TestImageFileOnLoop(t *testing.T) {
	requireLoop(t)
	mkfs := requireTool(t, "mkfs.ext4")
	ctx := context.Background()
	var sys Sys
	la := attachForTest(t, 64<<20, 512)
	lb := attachForTest(t, 64<<20, 512)
	link := filepath.Join(filepath.Dir(la.File), "hard.img")
	if err := os.Link(la.File, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		want []string
	}{
		{la.File, []string{la.Path}},
		{link, []string{la.Path}},
		{lb.File, []string{lb.Path}},
		{sparseFile(t, 1<<20), nil},
	} {
		got, err := sys.LoopsBackedBy(ctx, tc.file)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("LoopsBackedBy(%s) = %q, %v; want %q", tc.file, got, err, tc.want)
		}
	}

	if err := sys.CheckFileNotBusy(ctx, la.File); err != nil {
		t.Errorf("CheckFileNotBusy with an unused loop device: %v", err)
	}
	if err := sys.Reread(ctx, la.Path, []Part{{Number: 1, Start: 1 << 20, Size: 32 << 20}}); err != nil {
		t.Fatal(err)
	}
	p1 := PartitionPath(la.Path, 1)
	run(t, mkfs, "-q", "-F", p1)
	mnt := t.TempDir()
	if err := unix.Mount(p1, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", p1, mnt, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	err := sys.CheckFileNotBusy(ctx, link)
	var be *BusyError
	want := []string{"it is attached to " + la.Path + ", and " + p1 + " is mounted at " + mnt}
	if !errors.As(err, &be) || !errors.Is(err, ErrBusy) || be.Dev != link || !reflect.DeepEqual(be.Reasons, want) {
		t.Errorf("CheckFileNotBusy with %s mounted = %v", p1, err)
	}
	if err := sys.CheckFileNotBusy(ctx, lb.File); err != nil {
		t.Errorf("CheckFileNotBusy of another file: %v", err)
	}

	// A read-only attachment of a file this process cannot open for writing.
	ro, err := AttachLoopReadOnly(ctx, lb.File, 512)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ro.Detach(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if got := loopSysfs(ro, "ro"); got != "1" || !ReadOnlyDevice(ro.Path) || ReadOnlyDevice(lb.Path) {
		t.Errorf("%s: ro = %q, ReadOnlyDevice %v; %s: ReadOnlyDevice %v", ro.Path, got, ReadOnlyDevice(ro.Path), lb.Path, ReadOnlyDevice(lb.Path))
	}
	if f, err := os.OpenFile(ro.Path, os.O_WRONLY, 0); err == nil {
		if _, err := f.WriteAt([]byte("x"), 0); err == nil {
			t.Errorf("%s took a write", ro.Path)
		}
		f.Close()
	}
	if got, err := sys.LoopsBackedBy(ctx, lb.File); err != nil || !reflect.DeepEqual(got, []string{lb.Path, ro.Path}) && !reflect.DeepEqual(got, []string{ro.Path, lb.Path}) {
		t.Errorf("LoopsBackedBy with two loop devices = %q, %v", got, err)
	}
}
