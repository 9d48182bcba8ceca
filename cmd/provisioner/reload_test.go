package main

import (
	"strings"
	"testing"
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
