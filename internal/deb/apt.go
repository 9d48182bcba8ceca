package deb

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/provisioner/provisioner/internal/run"
)

// ErrUnavailable is matched when apt cannot provide a package (no apt, no package
// lists, no network), so tests can skip and tools can say what to fix.
var ErrUnavailable = errors.New("apt cannot provide the packages")

// Apt asks apt for packages. It never installs anything: apt-get download fetches a
// .deb into a directory and needs no dpkg lock. An Apt runs apt-get update at most once.
type Apt struct {
	Run run.Runner
	Dir string // where downloaded .deb files end up (it must exist)
	// MayUpdate allows apt-get update when the package lists are missing or stale (a
	// fresh machine has none). Only root can, so callers pass whether they are root.
	MayUpdate bool
	updated   bool
}

// env pins the C locale: apt translates the "Depends:" that Depends parses.
var env = []string{"LC_ALL=C"}

// Depends returns the first dependency of pkg whose name starts with prefix, e.g. the
// ABI package "linux-image-6.1.0-56-cloud-amd64" that "linux-image-cloud-amd64" depends
// on (prefix "linux-image-"). Without package lists it runs apt-get update first when
// allowed.
func (a *Apt) Depends(ctx context.Context, pkg, prefix string) (string, error) {
	argv := []string{"apt-cache", "depends", pkg}
	for {
		res, err := a.Run.Run(ctx, run.Cmd{Argv: argv, Env: env})
		if cerr := ctx.Err(); cerr != nil {
			return "", fmt.Errorf("deb: %s: %w", run.String(argv), cerr)
		}
		if errors.Is(err, run.ErrNotFound) {
			return "", fmt.Errorf("deb: %w: %w", ErrUnavailable, err)
		}
		if err == nil {
			if dep := ParseDepends(res.Stdout, prefix); dep != "" {
				return dep, nil
			}
		}
		if !a.updated && a.MayUpdate {
			if err := a.update(ctx); err != nil {
				return "", err
			}
			continue
		}
		if err == nil {
			err = fmt.Errorf("no %s* dependency in its output", prefix)
		}
		return "", fmt.Errorf("deb: no candidate for %s: %w: %w", pkg, ErrUnavailable, err)
	}
}

// ParseDepends finds "Depends: <prefix>..." in apt-cache depends output ("|Depends:"
// for an alternative, "<...>" around a virtual package) and returns the package name,
// or "" when there is none or the name is unsafe as a file name: callers build
// directory names and globs from it.
func ParseDepends(out []byte, prefix string) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		dep, ok := strings.CutPrefix(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "|"), "Depends:")
		if !ok {
			continue
		}
		pkg := strings.Trim(strings.TrimSpace(dep), "<>")
		rest, ok := strings.CutPrefix(pkg, prefix)
		// Debian package-name characters only.
		if ok && rest != "" && strings.Trim(pkg, "abcdefghijklmnopqrstuvwxyz0123456789.+-") == "" {
			return pkg
		}
	}
	return ""
}

// update runs apt-get update, once.
func (a *Apt) update(ctx context.Context) error {
	a.updated = true
	argv := []string{"apt-get", "update"}
	if _, err := a.Run.Run(ctx, run.Cmd{Argv: argv, Env: env}); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("deb: %s: %w", run.String(argv), cerr)
		}
		return fmt.Errorf("deb: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// Download fetches pkgs into a.Dir. apt-get writes into a private temporary directory
// whose .deb files are then renamed into a.Dir: a racing process never sees a
// half-written .deb under the final name. Stale package lists make the mirror answer
// 404, so when allowed a failure is retried once after apt-get update.
func (a *Apt) Download(ctx context.Context, pkgs ...string) error {
	tmp, err := os.MkdirTemp(a.Dir, ".download-")
	if err != nil {
		return fmt.Errorf("deb: cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	argv := append([]string{"apt-get", "download"}, pkgs...)
	for {
		_, err := a.Run.Run(ctx, run.Cmd{Argv: argv, Env: env, Dir: tmp})
		if err == nil {
			break
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("deb: %s: %w", run.String(argv), cerr)
		}
		if errors.Is(err, run.ErrNotFound) || a.updated || !a.MayUpdate {
			return fmt.Errorf("deb: %w: %w", ErrUnavailable, err)
		}
		if err := a.update(ctx); err != nil {
			return err
		}
	}
	debs, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil {
		return fmt.Errorf("deb: cache: %w", err)
	}
	for _, d := range debs {
		if err := os.Rename(d, filepath.Join(a.Dir, filepath.Base(d))); err != nil {
			return fmt.Errorf("deb: cache: %w", err)
		}
	}
	return nil
}

// Cached returns the path of the newest-named file matching pattern (a glob such as
// "busybox-static_*.deb") in dir, or "". Several matches are revisions of one package:
// any of them would do.
func Cached(dir, pattern string) string {
	m, _ := filepath.Glob(filepath.Join(dir, pattern)) // the only error is a bad pattern
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// Fetch returns the path of the cached .deb of each package in dir (a.Dir), downloading
// in one apt-get call those that are not there yet. The result is in the order of pkgs.
func (a *Apt) Fetch(ctx context.Context, pkgs ...string) ([]string, error) {
	glob := func(p string) string { return p + "_*.deb" }
	var missing []string
	for _, p := range pkgs {
		if Cached(a.Dir, glob(p)) == "" {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		if err := a.Download(ctx, missing...); err != nil {
			return nil, err
		}
	}
	paths := make([]string, len(pkgs))
	for i, p := range pkgs {
		if paths[i] = Cached(a.Dir, glob(p)); paths[i] == "" {
			return nil, fmt.Errorf("deb: apt-get download %s left no %s in %s", strings.Join(missing, " "), glob(p), a.Dir)
		}
	}
	return paths, nil
}
