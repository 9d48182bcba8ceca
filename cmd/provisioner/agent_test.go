package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestAgentStopsWithItsContext: the agent command ends, exit 0, once its context is
// cancelled (main cancels it on SIGTERM, SIGINT or SIGHUP).
func TestAgentStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(200*time.Millisecond, func() { cancel(&signalError{syscall.SIGTERM}) })
	done := make(chan int, 1)
	var out, errb syncBuffer
	go func() {
		done <- runContext(ctx, []string{"agent", "--listen", "127.0.0.1:0", "--insecure"}, strings.NewReader(""), &out, &errb)
	}()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d, stderr:\n%s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop with its context")
	}
}
