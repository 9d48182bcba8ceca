package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/bootloader"
)

// TestReloadRefusals: what reload refuses before it writes anything, each with its exit
// code and a message naming what is wrong.
func TestReloadRefusals(t *testing.T) {
	dir := bootDir(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no url", []string{"reload", "centos", "--boot-dir", dir}, 1, "--url is required"},
		{"tries and no-trial", []string{"reload", "centos", "--url", "/x.tar", "--tries", "2", "--no-trial", "--boot-dir", dir}, 1, "exclude each other"},
		{"too many tries", []string{"reload", "centos", "--url", "/x.tar", "--tries", "11", "--boot-dir", dir}, 1, "want 1 to 10"},
		{"no record", []string{"reload", "centos", "--url", "/x.tar", "--boot-dir", dir}, 3, "provision-record.json"},
		{"no image", []string{"reload", "--url", "/x.tar", "--boot-dir", dir}, 1, "accepts 1 arg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
		})
	}
}

// TestListShowsFailedReload: an element a reload left half written is marked in list,
// with the reload's error; one cut short is marked too.
func TestListShowsFailedReload(t *testing.T) {
	dir := bootDir(t)
	bi, err := bootloader.ReadBootInfo(filepath.Join(dir, bootloader.BootInfoPath))
	if err != nil {
		t.Fatal(err)
	}
	bi.Elements[1].State, bi.Elements[1].StateError = bootloader.ElementFailed, "image centos: unexpected EOF"
	bi.Elements[0].State = bootloader.ElementReloading
	data, _ := bi.Encode()
	if err := os.WriteFile(filepath.Join(dir, bootloader.BootInfoPath), data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "list", "--boot-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "FAILED: its last reload failed") || !strings.Contains(r.stdout, "FAILED: a reload was cut short") ||
		!strings.Contains(r.stdout, "reload of 1 (centos) failed: image centos: unexpected EOF") {
		t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
