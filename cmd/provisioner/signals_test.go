package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
)

// syncBuffer is a bytes.Buffer that a child's output can be written to while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWatchSignals(t *testing.T) {
	for _, tc := range []struct {
		sig      syscall.Signal
		name     string
		exitCode int
	}{
		{syscall.SIGTERM, "SIGTERM", 143},
		{syscall.SIGINT, "SIGINT", 130},
		{syscall.SIGHUP, "SIGHUP", 129},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan os.Signal)
			var errw syncBuffer
			exited := make(chan int, 1)
			ctx, stop := watchSignals(context.Background(), ch, &errw, func(code int) { exited <- code })
			defer stop()
			ch <- tc.sig
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the first signal did not cancel the context")
			}
			if got, want := context.Cause(ctx).Error(), "interrupted by "+tc.name; got != want {
				t.Errorf("cause %q, want %q", got, want)
			}
			if want := "provisioner: " + tc.name + ": stopping; cleaning up (a second signal exits at once)\n"; errw.String() != want {
				t.Errorf("stderr %q, want %q", errw.String(), want)
			}
			select {
			case code := <-exited:
				t.Fatalf("the first signal exited (%d)", code)
			default:
			}
			ch <- tc.sig
			select {
			case code := <-exited:
				if code != tc.exitCode {
					t.Errorf("second signal: exit %d, want %d", code, tc.exitCode)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the second signal did not exit")
			}
		})
	}
}

func TestExitCodeOfInterruptedRuns(t *testing.T) {
	cause := &signalError{syscall.SIGTERM}
	imageErr := fmt.Errorf("image a: reading http://x/a.tar: %w", deploy.ErrImage)
	for _, tc := range []struct {
		name string
		err  error
		code int
		text string
	}{
		{"before anything was written", &engine.InterruptedError{Cause: cause, Step: engine.PhasePlan, Err: errors.New("fetching checksum")},
			engine.ExitFailure, "interrupted by SIGTERM before anything was written"},
		{"checksum fetch cut, not an image error", &engine.InterruptedError{Cause: cause, Step: engine.PhasePlan, Err: imageErr},
			engine.ExitFailure, "interrupted by SIGTERM before anything was written"},
		{"download cut after the write, not an image error", &engine.InterruptedError{Cause: cause, Step: engine.PhaseImages, Written: true, Erased: true, Err: imageErr},
			engine.ExitWrite, "interrupted by SIGTERM during step images (image a: reading http://x/a.tar: image error); the disks were left part-written and their partition tables erased"},
		{"mkfs killed, tables kept", &engine.InterruptedError{Cause: cause, Step: engine.PhasePartition, Written: true, Err: errors.New("mkfs.ext4: signal: killed")},
			engine.ExitWrite, "interrupted by SIGTERM during step partition (mkfs.ext4: signal: killed); the disks are left part-written"},
		{"wrapped", fmt.Errorf("deploy: %w", &engine.InterruptedError{Cause: cause, Step: engine.PhaseBootloader, Written: true, Err: errors.New("grub-install: killed")}),
			engine.ExitWrite, "deploy: interrupted by SIGTERM during step bootloader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := engine.ExitCode(tc.err); got != tc.code {
				t.Errorf("exitCode = %d, want %d", got, tc.code)
			}
			if !strings.HasPrefix(tc.err.Error(), tc.text) {
				t.Errorf("error %q, want it to start with %q", tc.err, tc.text)
			}
			if errors.Is(tc.err, deploy.ErrImage) {
				t.Error("an interrupted run matches deploy.ErrImage")
			}
		})
	}
}

// TestInterruptedBeforeRunning: a deploy whose context is already cancelled (a signal
// during start-up) writes nothing, creates no image file, and exits 1 naming the signal.
func TestInterruptedBeforeRunning(t *testing.T) {
	img := filepath.Join(t.TempDir(), "new.img")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(&signalError{syscall.SIGINT})
	var out, errb bytes.Buffer
	code := runContext(ctx, []string{"deploy", "-", "--device", "vda=" + img, "--size", "vda=64MiB", "--seed", "s", "--boot-info", ""}, strings.NewReader(smallSpec), &out, &errb)
	if code != engine.ExitFailure || errb.String() != "resolving and probing the disks, planning\nprovisioner: interrupted by SIGINT before anything was written\n" {
		t.Errorf("exit %d, stderr:\n%s", code, errb.String())
	}
	if _, err := os.Stat(img); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the image file exists: %v", err)
	}
}

// needRootTools skips a test that runs real deploys (loop devices, mkfs, mounts).
func needRootTools(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

// stallServer serves a tar image, and a checksum file, each cut after a first part: the
// rest never comes (until the test ends), as from a server that stopped sending.
type stallServer struct {
	*httptest.Server
	image    []byte
	hit      chan string // receives the path of each request
	stop     chan struct{}
	stopOnce sync.Once
}

func newStallServer(t *testing.T) *stallServer {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	body := bytes.Repeat([]byte("x"), 4<<20)
	tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1, 0)})
	tw.Write(body)
	tw.Close()
	s := &stallServer{image: b.Bytes(), hit: make(chan string, 16), stop: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := s.image
		if r.URL.Path == "/SHA256SUMS" {
			data = []byte(strings.Repeat("0", 64) + "  a.tar\n")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:min(len(data)/2, 64<<10)])
		w.(http.Flusher).Flush()
		s.hit <- r.URL.Path
		select {
		case <-r.Context().Done():
		case <-s.stop:
		}
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { s.stopOnce.Do(func() { close(s.stop) }) })
	return s
}

// signalRun is one `provisioner deploy` child process on a fresh image file, with a
// private TMPDIR for its mount roots.
type signalRun struct {
	cmd    *exec.Cmd
	img    string
	tmp    string
	stderr *syncBuffer
	done   chan struct{} // closed once the child was waited for
}

func startDeploy(t *testing.T, bin, spec string, extra ...string) *signalRun {
	t.Helper()
	return startDeployWith(t, bin, spec, func(string) {}, extra...)
}

// startDeployWith is startDeploy with prepare called on the image file's path first.
func startDeployWith(t *testing.T, bin, spec string, prepare func(img string), extra ...string) *signalRun {
	t.Helper()
	dir := t.TempDir()
	r := &signalRun{img: filepath.Join(dir, "DISK.img"), tmp: filepath.Join(dir, "tmp"), stderr: &syncBuffer{}, done: make(chan struct{})}
	if err := os.Mkdir(r.tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	prepare(r.img)
	specPath := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"deploy", specPath, "--device", "vda=" + r.img, "--size", "vda=64MiB", "--seed", "s", "--boot-info="}, extra...)
	r.cmd = exec.Command(bin, args...)
	r.cmd.Env = append(os.Environ(), "TMPDIR="+r.tmp)
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// waitUntil polls cond until it holds, failing the test after a minute or when the
// child ended first.
func (r *signalRun) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		select {
		case <-r.done:
			t.Fatalf("the deploy ended (%v) before %s; stderr:\n%s", r.cmd.ProcessState, what, r.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stderr:\n%s", what, r.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exit waits for the child and returns its exit code and how long that took.
func (r *signalRun) exit(t *testing.T) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case <-r.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the deploy did not end; stderr:\n%s", r.stderr)
	}
	return r.cmd.ProcessState.ExitCode(), time.Since(start)
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// loopsOf lists the loop devices backed by img.
func loopsOf(t *testing.T, img string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "-j", img, "-O", "NAME", "-n").Output()
	if err != nil {
		t.Fatalf("losetup -j %s: %v", img, err)
	}
	return strings.Fields(string(out))
}

// releaseLeftovers unmounts what the child left under its TMPDIR and detaches the loop
// devices backed by its image file: only what this test's child created.
func (r *signalRun) releaseLeftovers(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, m := range mountsUnder(t, r.tmp) {
		if err := disk.Unmount(ctx, m); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
	}
	for _, dev := range loopsOf(t, r.img) {
		if err := (disk.Sys{}).RemovePartitions(ctx, dev); err != nil {
			t.Errorf("cleaning up: %v", err)
		}
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("cleaning up: losetup -d %s: %v: %s", dev, err, out)
		}
	}
}

// tableErased reports whether both GPT headers of img (its first 34 and last 33
// sectors) are zero.
func tableErased(t *testing.T, img string) bool {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	zero := func(p []byte) bool { return bytes.Count(p, []byte{0}) == len(p) }
	return zero(b[:34*512]) && zero(b[len(b)-33*512:])
}

func signalSpec(base, checksum string) string {
	return fmt.Sprintf(`{"images": [{"name": "a", "url": "%s/a.tar", "target": "/", "boot": true%s}], "boot_mode": "bios",
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`, base, checksum)
}

// TestSignalDuringDeploy sends a signal to a deploy whose image download has begun (the
// root is mounted, the server stalls): the run stops, unmounts, detaches, erases the
// table it wrote (unless --preserve-on-error) and exits 5 naming the signal.
func TestSignalDuringDeploy(t *testing.T) {
	needRootTools(t, "losetup", "mke2fs")
	bin := buildProvisioner(t)
	for _, tc := range []struct {
		name     string
		sig      syscall.Signal
		preserve bool
	}{
		{"SIGTERM", syscall.SIGTERM, false},
		{"SIGTERM, --preserve-on-error", syscall.SIGTERM, true},
		{"SIGINT", syscall.SIGINT, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newStallServer(t)
			var extra []string
			if tc.preserve {
				extra = append(extra, "--preserve-on-error")
			}
			r := startDeploy(t, bin, signalSpec(srv.URL, ""), extra...)
			defer r.releaseLeftovers(t)
			r.waitUntil(t, "the image root to be mounted", func() bool { return len(mountsUnder(t, r.tmp)) > 0 })
			if err := r.cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			code, _ := r.exit(t)
			stderr := r.stderr.String()
			name := signalName(tc.sig)
			if code != engine.ExitWrite {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, engine.ExitWrite, stderr)
			}
			for _, want := range []string{
				"provisioner: " + name + ": stopping; cleaning up (a second signal exits at once)\n",
				"provisioner: interrupted by " + name + " during step images (image a: ",
			} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if m := mountsUnder(t, r.tmp); len(m) > 0 {
				t.Errorf("still mounted: %v", m)
			}
			if loops := loopsOf(t, r.img); len(loops) > 0 {
				t.Errorf("loop devices still backed by %s: %v", r.img, loops)
			}
			if tc.preserve {
				tbl, err := partition.ReadTable(context.Background(), r.img, 512)
				if err != nil || len(tbl.Partitions) == 0 {
					t.Errorf("--preserve-on-error: the table is gone: %v", err)
				}
			} else if !tableErased(t, r.img) {
				t.Error("the partition table was not erased")
			}
		})
	}
}

// TestSecondSignalExitsAtOnce: while the cleanup of a first SIGTERM waits for a busy
// mount (the test holds a file open in the image root), a second SIGTERM ends the
// process at once with 143.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	needRootTools(t, "losetup", "mke2fs")
	bin := buildProvisioner(t)
	srv := newStallServer(t)
	r := startDeploy(t, bin, signalSpec(srv.URL, ""))
	defer r.releaseLeftovers(t)
	var mounts []string
	r.waitUntil(t, "the image root to be mounted", func() bool {
		mounts = mountsUnder(t, r.tmp)
		return len(mounts) > 0
	})
	busy, err := os.Open(mounts[0]) // an open directory keeps the unmount busy
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r.waitUntil(t, "the first signal to be taken", func() bool { return strings.Contains(r.stderr.String(), "stopping; cleaning up") })
	time.Sleep(300 * time.Millisecond) // the cleanup is now retrying the busy unmount
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, took := r.exit(t)
	if code != 143 || took > 3*time.Second {
		t.Errorf("second SIGTERM: exit %d after %v, want 143 at once; stderr:\n%s", code, took, r.stderr)
	}
	if !strings.Contains(r.stderr.String(), "provisioner: SIGTERM again: exiting at once, without cleaning up") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	busy.Close()
}

// TestSignalBeforeWriting: a signal while the image's checksum file is being fetched,
// before the first write, exits 1 and leaves the disk as it was: no image file when
// --size would have created it, the old bytes of an existing one.
func TestSignalBeforeWriting(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildProvisioner(t)
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("existing image file %v", existing), func(t *testing.T) {
			srv := newStallServer(t)
			old := bytes.Repeat([]byte("old data "), 1<<20)
			r := startDeployWith(t, bin, signalSpec(srv.URL, fmt.Sprintf(`, "checksum": "%s/SHA256SUMS"`, srv.URL)), func(img string) {
				if existing {
					if err := os.WriteFile(img, old, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			})
			defer r.releaseLeftovers(t)
			select {
			case path := <-srv.hit:
				if path != "/SHA256SUMS" {
					t.Fatalf("first request %s, want the checksum file", path)
				}
			case <-time.After(time.Minute):
				t.Fatalf("the checksum file was never fetched; stderr:\n%s", r.stderr)
			}
			if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			code, _ := r.exit(t)
			if code != engine.ExitFailure || !strings.HasSuffix(r.stderr.String(), "provisioner: interrupted by SIGTERM before anything was written\n") {
				t.Errorf("exit %d, stderr:\n%s", code, r.stderr)
			}
			got, err := os.ReadFile(r.img)
			switch {
			case !existing && !errors.Is(err, os.ErrNotExist):
				t.Errorf("--size left %s behind: %v", r.img, err)
			case existing && (err != nil || !bytes.Equal(got, old)):
				t.Errorf("the image file changed (%v)", err)
			}
		})
	}
}
