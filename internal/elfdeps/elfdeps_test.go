package elfdeps

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// baseNames returns the base names of paths.
func baseNames(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, filepath.Base(p))
	}
	return out
}

// mke2fs is a real host binary whose libraries are known (Debian 12, e2fsprogs).
func TestNeedsMke2fs(t *testing.T) {
	const prog = "/usr/sbin/mke2fs"
	if _, err := os.Stat(prog); err != nil {
		t.Skipf("no %s on this machine (e2fsprogs)", prog)
	}
	r := &Resolver{Dirs: DefaultLibDirs}
	got, err := r.Needs(prog)
	if err != nil {
		t.Fatal(err)
	}
	names := baseNames(got)
	for _, want := range []string{"ld-linux-x86-64.so.2", "libext2fs.so.2", "libcom_err.so.2", "libblkid.so.1",
		"libuuid.so.1", "libe2p.so.2", "libc.so.6"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s needs %q, which lacks %s", prog, names, want)
		}
	}
	// The loader comes first, as the program's PT_INTERP names it.
	if len(got) == 0 || got[0] != "/lib64/ld-linux-x86-64.so.2" {
		t.Errorf("first need %q, want the PT_INTERP loader", got)
	}
	for _, p := range got {
		if !filepath.IsAbs(p) {
			t.Errorf("need %q is not an absolute host path", p)
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
		t.Errorf("duplicates in %q", got)
	}
}

// A library missing from every search directory is an error naming it and its user.
func TestNeedsMissingLibrary(t *testing.T) {
	const prog = "/usr/sbin/mke2fs"
	if _, err := os.Stat(prog); err != nil {
		t.Skipf("no %s on this machine (e2fsprogs)", prog)
	}
	r := &Resolver{Dirs: []string{t.TempDir()}}
	_, err := r.Needs(prog)
	if err == nil || !strings.Contains(err.Error(), prog+" needs lib") || !strings.Contains(err.Error(), "not found in") {
		t.Errorf("needs with no libraries: %v", err)
	}
}

// Scripts and data need nothing.
func TestNeedsNotELF(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "s")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := (&Resolver{Dirs: DefaultLibDirs}).Needs(script)
	if err != nil || len(got) != 0 {
		t.Errorf("needs(script) = %q, %v", got, err)
	}
}

// FindProgram takes the first executable regular file, skipping files without execute
// permission and directories.
func TestFindProgram(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(a, "lvm"), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(b, "lvm"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(c, "lvm")
	if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := FindProgram("lvm", []string{a, b, c}); got != want {
		t.Errorf("FindProgram = %q, want %q", got, want)
	}
	if got := FindProgram("lvm", []string{a, b}); got != "" {
		t.Errorf("FindProgram without an executable = %q, want \"\"", got)
	}
}
