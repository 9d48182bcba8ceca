package testimage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/provisioner/provisioner/internal/run"
)

// apt asks apt for the packages. It never installs anything: apt-get download fetches a
// .deb into a directory and needs no dpkg lock.
type apt struct {
	r       run.Runner
	dir     string // the cache directory the .deb files end up in
	updated bool   // apt-get update ran already: never twice per Prepare
}

// aptEnv pins the C locale: apt translates the "Depends:" that resolveKernel parses.
var aptEnv = []string{"LC_ALL=C"}

// resolveKernel returns the ABI package the cloud kernel metapackage depends on, e.g.
// "linux-image-6.1.0-56-cloud-amd64". A fresh machine has no package lists; as root we
// fetch them once, otherwise the packages are unavailable.
func (a *apt) resolveKernel(ctx context.Context) (string, error) {
	argv := []string{"apt-cache", "depends", kernelMetaPkg}
	for {
		res, err := a.r.Run(ctx, run.Cmd{Argv: argv, Env: aptEnv})
		if cerr := ctx.Err(); cerr != nil {
			return "", fmt.Errorf("testimage: %s: %w", run.String(argv), cerr)
		}
		if errors.Is(err, run.ErrNotFound) {
			return "", fmt.Errorf("testimage: %w: %w", ErrUnavailable, err)
		}
		if err == nil {
			if pkg := parseKernelDepends(res.Stdout); pkg != "" {
				return pkg, nil
			}
		}
		if !a.updated && isRoot() {
			if err := a.update(ctx); err != nil {
				return "", err
			}
			continue
		}
		if err == nil {
			err = errors.New("no linux-image-*-cloud-amd64 dependency in its output")
		}
		return "", fmt.Errorf("testimage: no candidate for %s: %w: %w", kernelMetaPkg, ErrUnavailable, err)
	}
}

// parseKernelDepends finds "Depends: linux-image-<ver>" in apt-cache depends output
// ("|Depends:" for an alternative, "<...>" around a virtual package) and returns the
// package name, or "" when there is none or its version is unsafe as a file name.
func parseKernelDepends(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		dep, ok := strings.CutPrefix(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "|"), "Depends:")
		if !ok {
			continue
		}
		pkg := strings.Trim(strings.TrimSpace(dep), "<>")
		ver, ok := strings.CutPrefix(pkg, "linux-image-")
		// The version names a directory and a glob in the cache, and goes on kernel
		// and initrd file names: Debian package-name characters only.
		if ok && ver != "" && strings.Trim(ver, "abcdefghijklmnopqrstuvwxyz0123456789.+-") == "" {
			return pkg
		}
	}
	return ""
}

// update runs apt-get update, once.
func (a *apt) update(ctx context.Context) error {
	a.updated = true
	argv := []string{"apt-get", "update"}
	if _, err := a.r.Run(ctx, run.Cmd{Argv: argv, Env: aptEnv}); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("testimage: %s: %w", run.String(argv), cerr)
		}
		return fmt.Errorf("testimage: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// download fetches pkgs into the cache. apt-get writes into a private temporary
// directory whose .deb files are then renamed into the cache: a racing process never
// sees a half-written .deb under the final name. Stale package lists make the mirror
// answer 404, so as root a failure is retried once after apt-get update.
func (a *apt) download(ctx context.Context, pkgs []string) error {
	tmp, err := os.MkdirTemp(a.dir, ".download-")
	if err != nil {
		return fmt.Errorf("testimage: cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	argv := append([]string{"apt-get", "download"}, pkgs...)
	for {
		_, err := a.r.Run(ctx, run.Cmd{Argv: argv, Env: aptEnv, Dir: tmp})
		if err == nil {
			break
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("testimage: %s: %w", run.String(argv), cerr)
		}
		if errors.Is(err, run.ErrNotFound) || a.updated || !isRoot() {
			return fmt.Errorf("testimage: %w: %w", ErrUnavailable, err)
		}
		if err := a.update(ctx); err != nil {
			return err
		}
	}
	debs, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil {
		return fmt.Errorf("testimage: cache: %w", err)
	}
	for _, d := range debs {
		if err := os.Rename(d, filepath.Join(a.dir, filepath.Base(d))); err != nil {
			return fmt.Errorf("testimage: cache: %w", err)
		}
	}
	return nil
}
