package deb

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/deb/debtest"
	"github.com/provisioner/provisioner/internal/run"
)

func TestParseDepends(t *testing.T) {
	for out, want := range map[string]string{
		"linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n":    "linux-image-6.1.0-56-cloud-amd64",
		"linux-image-cloud-amd64\n |Depends: <linux-image-6.1.0-56-cloud-amd64>\n":  "linux-image-6.1.0-56-cloud-amd64",
		"linux-image-cloud-amd64\n  Depends: linux-base\n":                          "",
		"linux-image-cloud-amd64\n  Depends: linux-image-../../x\n":                 "",
		"linux-image-cloud-amd64\n  Depends: linux-image-\n":                        "",
		"linux-image-cloud-amd64\n  Recommends: linux-image-6.1.0-56-cloud-amd64\n": "",
		"": "",
	} {
		if got := ParseDepends([]byte(out), "linux-image-"); got != want {
			t.Errorf("ParseDepends(%q) = %q, want %q", out, got, want)
		}
	}
}

// aptFunc is a Runner answering from a function; unlike run.Fake it passes Dir on,
// which apt-get download needs.
type aptFunc func(cmd run.Cmd) (run.Result, error)

func (f aptFunc) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	if err := ctx.Err(); err != nil {
		return run.Result{}, err
	}
	return f(cmd)
}

// fakeApt answers like apt with or without package lists and network, and records the
// commands.
type fakeApt struct {
	lists, network, missing bool
	cmds                    []string
}

func (f *fakeApt) run(cmd run.Cmd) (run.Result, error) {
	s := run.String(cmd.Argv)
	f.cmds = append(f.cmds, s)
	if !slices.Contains(cmd.Env, "LC_ALL=C") {
		return run.Result{}, errors.New("apt run without LC_ALL=C")
	}
	switch {
	case f.missing:
		return run.Result{}, &run.Error{Argv: cmd.Argv, ExitCode: -1,
			Err: &fs.PathError{Op: "fork/exec", Path: cmd.Argv[0], Err: fs.ErrNotExist}}
	case s == "apt-cache depends linux-image-amd64" && f.lists:
		return run.Result{Stdout: []byte("linux-image-amd64\n  Depends: linux-image-6.1.0-9-amd64\n")}, nil
	case s == "apt-get update" && f.network:
		f.lists = true
		return run.Result{}, nil
	case strings.HasPrefix(s, "apt-get download ") && f.network && f.lists:
		for _, p := range cmd.Argv[2:] {
			if err := os.WriteFile(filepath.Join(cmd.Dir, p+"_1.0-1_amd64.deb"), []byte(p), 0o644); err != nil {
				return run.Result{}, err
			}
		}
		return run.Result{}, nil
	}
	return run.Result{}, run.Fail(cmd.Argv, 100, "E: Failed to fetch")
}

func TestAptDependsAndFetch(t *testing.T) {
	dir := t.TempDir()
	f := &fakeApt{network: true}
	a := &Apt{Run: aptFunc(f.run), Dir: dir, MayUpdate: true}
	pkg, err := a.Depends(context.Background(), "linux-image-amd64", "linux-image-")
	if err != nil || pkg != "linux-image-6.1.0-9-amd64" {
		t.Fatalf("Depends = %q, %v", pkg, err)
	}
	debtest.WriteTemp(t, dir, "busybox-static_1%3a1.35.0-4_amd64.deb", []byte("cached"))
	paths, err := a.Fetch(context.Background(), pkg, "busybox-static")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, pkg+"_1.0-1_amd64.deb"), filepath.Join(dir, "busybox-static_1%3a1.35.0-4_amd64.deb")}
	if !slices.Equal(paths, want) {
		t.Errorf("Fetch = %q, want %q", paths, want)
	}
	wantCmds := []string{"apt-cache depends linux-image-amd64", "apt-get update", "apt-cache depends linux-image-amd64",
		"apt-get download " + pkg}
	if !slices.Equal(f.cmds, wantCmds) {
		t.Errorf("commands %q, want %q", f.cmds, wantCmds)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".download-*")); len(left) != 0 {
		t.Errorf("left behind %q", left)
	}
}

func TestAptUnavailable(t *testing.T) {
	for name, f := range map[string]*fakeApt{
		"no apt":               {missing: true},
		"no lists, no network": {},
	} {
		t.Run(name, func(t *testing.T) {
			a := &Apt{Run: aptFunc(f.run), Dir: t.TempDir(), MayUpdate: true}
			if _, err := a.Depends(context.Background(), "linux-image-amd64", "linux-image-"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Depends: %v, want ErrUnavailable", err)
			}
			if _, err := a.Fetch(context.Background(), "x"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Fetch: %v, want ErrUnavailable", err)
			}
		})
	}
	// A cancelled run is not "unavailable": a test must fail, not skip.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a := &Apt{Run: aptFunc((&fakeApt{lists: true}).run), Dir: t.TempDir()}
	if _, err := a.Depends(ctx, "linux-image-amd64", "linux-image-"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestCached(t *testing.T) {
	dir := t.TempDir()
	if got := Cached(dir, "a_*.deb"); got != "" {
		t.Errorf("empty dir: %q", got)
	}
	debtest.WriteTemp(t, dir, "a_1.deb", nil)
	debtest.WriteTemp(t, dir, "a_2.deb", nil)
	debtest.WriteTemp(t, dir, "ab_3.deb", nil)
	if got := Cached(dir, "a_*.deb"); got != filepath.Join(dir, "a_2.deb") {
		t.Errorf("Cached = %q", got)
	}
}
