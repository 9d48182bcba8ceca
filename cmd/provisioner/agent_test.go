package main

import (
	"context"
	"io"
	"net"
	"net/http"
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
		{[]string{"agent", "--node-api", "--listen", "127.0.0.1:0", "--insecure", "--prober", "builtin"}, "--node-api does not deploy"},
		{[]string{"agent", "--node-api", "--listen", "127.0.0.1:0", "--insecure", "--boot-info", "x.json"}, "--node-api does not deploy"},
	} {
		r := runCLI(t, "", tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	r := runCLI(t, "", "agent", "--help")
	for _, want := range []string{"GET  /v1/status", "POST /v1/deploy", "POST /v1/power", "--heartbeat",
		"POST /v1/reload", "POST /v1/confirm", "GET  /v1/boot", "agent --node-api --listen"} {
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

// TestNodeAgentRefusesDeploys: with --node-api the command serves the node API, and a
// deploy, which would wipe the disks the node runs from, is refused.
func TestNodeAgentRefusesDeploys(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan int, 1)
	var out, errb syncBuffer
	go func() {
		done <- runContext(ctx, []string{"agent", "--node-api", "--listen", addr, "--token", "tok"}, strings.NewReader(""), &out, &errb)
	}()
	post := func(path, body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	code, body := post("/v1/deploy", "{}")
	for code == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		code, body = post("/v1/deploy", "{}")
	}
	if code != http.StatusConflict || !strings.Contains(body, "deployed node") {
		t.Errorf("POST /v1/deploy: %d %s, want 409", code, body)
	}
	// The node endpoints exist: a bad body is refused by them, not by routing.
	if code, body := post("/v1/reload", "{}"); code != http.StatusBadRequest || !strings.Contains(body, `\"image\" is required`) {
		t.Errorf("POST /v1/reload: %d %s, want 400", code, body)
	}
	if !strings.Contains(errb.String(), "node agent API on "+addr) {
		t.Errorf("stderr lacks the listening notice:\n%s", errb.String())
	}
	cancel(&signalError{syscall.SIGTERM})
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d, stderr:\n%s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop with its context")
	}
}
