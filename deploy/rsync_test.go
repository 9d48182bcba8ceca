package deploy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

func TestRsyncSource(t *testing.T) {
	for _, tc := range []struct {
		src, arg string
		isRsync  bool
		err      string
	}{
		{src: "10.0.0.1::images/centos/", arg: "10.0.0.1::images/centos/", isRsync: true},
		{src: "10.0.0.1::images/centos", arg: "10.0.0.1::images/centos/", isRsync: true},
		{src: "mirror::root", arg: "mirror::root/", isRsync: true},
		{src: "[fd00::1]::root/x/", arg: "[fd00::1]::root/x/", isRsync: true},
		{src: "rsync://10.0.0.1:8873/images/centos", arg: "rsync://10.0.0.1:8873/images/centos/", isRsync: true},
		{src: "rsync://10.0.0.1/", isRsync: true, err: "no module"},
		{src: "rsync:///images/", isRsync: true, err: "no host"},
		{src: "-e::m/", isRsync: true, err: "no host"},
		{src: "http://example.com/a.tar"},
		{src: "/srv/a::b.tar"},
	} {
		arg, isRsync, err := rsyncSource(tc.src)
		if arg != tc.arg || isRsync != tc.isRsync || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("rsyncSource(%q) = %q, %v, %v; want %q, %v, error %q", tc.src, arg, isRsync, err, tc.arg, tc.isRsync, tc.err)
		}
	}
}

// exitErr is what run.Exec returns for a program that exited with code and stderr.
func exitErr(code int, stderr string) error {
	return &run.Error{Argv: []string{"rsync"}, ExitCode: code, Stderr: stderr}
}

// TestRsyncRetries: transient failures are retried up to the budget, permanent ones
// are not; every error names the source and says whose fault it is.
func TestRsyncRetries(t *testing.T) {
	f := &Fetcher{Retries: 2, Backoff: func(int) time.Duration { return time.Millisecond }}
	for _, tc := range []struct {
		name  string
		fails []error // the answers of the attempts, then success
		calls int
		fault error // nil: success
		want  string
	}{
		{"refused, then up", []error{exitErr(10, "rsync: failed to connect to h (127.0.0.1): Connection refused (111)")}, 2, nil, ""},
		{"refused for good", []error{exitErr(10, "refused"), exitErr(10, "refused"), exitErr(10, "refused")}, 3, ErrImage, "gave up after 3 attempts"},
		{"unknown module", []error{exitErr(5, "@ERROR: Unknown module 'nope'")}, 1, ErrImage, "Unknown module"},
		{"busy daemon", []error{exitErr(5, "@ERROR: max connections (2) reached -- try again later")}, 2, nil, ""},
		{"target full", []error{exitErr(11, "rsync: [receiver] write failed on \"/x/usr/big\": No space left on device (28)")}, 1, ErrWrite, "No space"},
		{"daemon's disk fails", []error{exitErr(23, "rsync: [sender] read errors mapping \"/m/big\": Input/output error (5)")}, 1, ErrImage, "read errors"},
		{"rsync missing", []error{&run.Error{Argv: []string{"rsync"}, ExitCode: -1, Err: &exec.Error{Name: "rsync", Err: exec.ErrNotFound}}}, 1, nil, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &run.Fake{}
			n := 0
			fake.Handler = func(run.Call) (run.Result, error) {
				n++
				if n <= len(tc.fails) {
					return run.Result{}, tc.fails[n-1]
				}
				return run.Result{}, nil
			}
			err := f.rsync(context.Background(), fake, []string{"rsync", "--", "h::m/", "/d/"}, "h::m/")
			if len(fake.Calls()) != tc.calls {
				t.Errorf("%d calls, want %d", len(fake.Calls()), tc.calls)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "h::m/") {
				t.Fatalf("err = %v, want one naming h::m/ and containing %q", err, tc.want)
			}
			for _, fault := range []error{ErrImage, ErrWrite} {
				if errors.Is(err, fault) != (fault == tc.fault) {
					t.Errorf("errors.Is(err, %v) = %v, want fault %v", fault, !(fault == tc.fault), tc.fault)
				}
			}
		})
	}
}

// TestResolveDigestsChecksRsync: an rsync source is listed, not fetched, before any
// write; a checksum on one is refused without running anything.
func TestResolveDigestsChecksRsync(t *testing.T) {
	fake := &run.Fake{}
	d := &Deployer{Fetcher: &Fetcher{Retries: -1}, Run: fake}
	ims := []*partition.Image{{Name: "a", URL: "rsync://127.0.0.1:1/m/p"}}
	if err := d.ResolveDigests(context.Background(), ims); err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls()
	if len(calls) != 1 || !slices.Contains(calls[0].Argv, "--list-only") || calls[0].Argv[len(calls[0].Argv)-1] != "rsync://127.0.0.1:1/m/p/" {
		t.Errorf("calls %v", fake.Commands())
	}
	fake.Handler = func(run.Call) (run.Result, error) { return run.Result{}, exitErr(5, "@ERROR: Unknown module 'm'") }
	if err := d.ResolveDigests(context.Background(), ims); !errors.Is(err, ErrImage) || !strings.Contains(err.Error(), "image a") {
		t.Errorf("unknown module: %v", err)
	}
	ims[0].Checksum = "sha256:" + strings.Repeat("00", 32)
	before := len(fake.Calls())
	if err := d.ResolveDigests(context.Background(), ims); !errors.Is(err, ErrImage) || len(fake.Calls()) != before {
		t.Errorf("checksum on an rsync source: %v after %d calls", err, len(fake.Calls())-before)
	}
}

// TestRsyncKeepsToTheRoot copies a tree with rsyncArgs into a root that already holds
// symlinks pointing out of it, as a volume kept from an earlier deploy may: rsync
// replaces each link with what the tree has there and writes nothing outside the root.
func TestRsyncKeepsToTheRoot(t *testing.T) {
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Skip("rsync is not installed")
	}
	src, root, outside := t.TempDir(), t.TempDir(), t.TempDir()
	for _, f := range []string{"etc/passwd", "usr/bin/tool", "home/notes"} {
		p := filepath.Join(src, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("from the image"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A directory link, a link to a directory deeper down, and a file link.
	os.MkdirAll(filepath.Join(root, "usr"), 0o755)
	os.MkdirAll(filepath.Join(root, "home"), 0o755)
	for link, target := range map[string]string{"etc": outside, "usr/bin": outside, "home/notes": filepath.Join(outside, "notes")} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if slices.Contains(rsyncArgs, "--keep-dirlinks") || slices.Contains(rsyncArgs, "-K") {
		t.Fatal("rsyncArgs follow the root's directory links")
	}
	// A local copy, without a daemon: rsync refuses --contimeout then.
	argv := slices.DeleteFunc(slices.Clone(rsyncArgs), func(a string) bool { return strings.HasPrefix(a, "--contimeout") })
	argv = append(argv, "--", src+"/", root+"/")
	if _, err := (run.Exec{}).Run(context.Background(), run.Cmd{Argv: argv}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("rsync wrote outside the root: %v", entries)
	}
	for _, f := range []string{"etc", "usr/bin", "home/notes"} {
		if fi, err := os.Lstat(filepath.Join(root, f)); err != nil || fi.Mode()&os.ModeSymlink != 0 {
			t.Errorf("%s: %v %v, want what the tree has there", f, fi, err)
		}
	}
}
