package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentFlags(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokFile, []byte("s3cret\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent"}, "--listen is required"},
		{[]string{"agent", "--listen", "127.0.0.1:0"}, "a token is required"},
		{[]string{"agent", "--listen", "127.0.0.1:0", "--token", "x", "--token-file", tokFile}, "exclude each other"},
		{[]string{"agent", "--listen", "127.0.0.1:0", "--token-file", tokFile + ".missing"}, "--token-file"},
	} {
		r := runCLI(t, "", tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	r := runCLI(t, "", "agent", "--help")
	for _, want := range []string{"GET  /v1/status", "POST /v1/deploy", "POST /v1/power", "--heartbeat"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("agent --help lacks %q", want)
		}
	}
}
