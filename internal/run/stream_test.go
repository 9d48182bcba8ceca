package run

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readAllWithin reads rc to its end in the background and fails the test if that takes
// longer than the safety timeout.
func readAllWithin(t *testing.T, rc io.Reader) ([]byte, error) {
	t.Helper()
	type outcome struct {
		data []byte
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		data, err := io.ReadAll(rc)
		done <- outcome{data, err}
	}()
	select {
	case o := <-done:
		return o.data, o.err
	case <-time.After(safety):
		t.Fatalf("reading the stream did not end within %v", safety)
		return nil, nil
	}
}

func TestStreamCopiesStdin(t *testing.T) {
	in := make([]byte, 5<<20+123) // several pipe buffers, so reading and writing overlap
	r := rand.New(rand.NewPCG(1, 2))
	for i := range in {
		in[i] = byte(r.Uint32())
	}
	cmd := helper("cat")
	cmd.Stdin = bytes.NewReader(in)
	rc, err := Exec{}.Stream(context.Background(), cmd)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	out, err := readAllWithin(t, rc)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	if !bytes.Equal(out, in) {
		t.Errorf("got %d bytes, want the %d bytes of stdin back", len(out), len(in))
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestStreamFailureIsNotEOF is the point of Stream: a program that wrote part of its
// output and then failed must not look like a short success.
func TestStreamFailureIsNotEOF(t *testing.T) {
	in := bytes.Repeat([]byte("data "), 300000)
	cmd := helper("cat", "stderr", "xz: (stdin): Compressed data is corrupt\n", "exit", "1")
	cmd.Stdin = bytes.NewReader(in)
	rc, err := Exec{}.Stream(context.Background(), cmd)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	out, err := readAllWithin(t, rc)
	if !bytes.Equal(out, in) {
		t.Errorf("got %d bytes before the failure, want %d", len(out), len(in))
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("read error = %v, want *Error", err)
	}
	if e.ExitCode != 1 || !strings.Contains(e.Stderr, "Compressed data is corrupt") || e.Argv[0] != helperExe {
		t.Errorf("Error = %#v, want exit code 1, the stderr and the argv", e)
	}
	if _, err := rc.Read(make([]byte, 10)); !errors.As(err, &e) {
		t.Errorf("second Read error = %v, want the same *Error again", err)
	}
	if err := rc.Close(); !errors.As(err, &e) || e.ExitCode != 1 {
		t.Errorf("Close error = %v, want the *Error", err)
	}
}

func TestStreamNotFound(t *testing.T) {
	_, err := Exec{}.Stream(context.Background(), Cmd{Argv: []string{"no-such-program-here"}})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Stream error = %v, want errors.Is ErrNotFound", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != -1 {
		t.Errorf("Stream error = %#v, want *Error with ExitCode -1", err)
	}
	_, err = Exec{}.Stream(context.Background(), Cmd{Argv: []string{filepath.Join(t.TempDir(), "missing")}})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Stream of a missing path: error = %v, want errors.Is ErrNotFound", err)
	}
}

func TestStreamEmptyArgv(t *testing.T) {
	if _, err := (Exec{}).Stream(context.Background(), Cmd{}); err == nil || !strings.Contains(err.Error(), "empty argv") {
		t.Errorf("Stream(empty argv) error = %v, want an empty argv error", err)
	}
}

func TestStreamContextKills(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc, err := Exec{}.Stream(ctx, helper("stdout", "first", "sleep", "1m"))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	time.AfterFunc(100*time.Millisecond, cancel)
	out, err := readAllWithin(t, rc)
	if string(out) != "first" {
		t.Errorf("got %q, want what came before the kill", out)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read error = %v, want errors.Is context.Canceled", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != -1 {
		t.Errorf("read error = %#v, want *Error with ExitCode -1", err)
	}
	if err := rc.Close(); !errors.Is(err, context.Canceled) {
		t.Errorf("Close error = %v, want errors.Is context.Canceled", err)
	}
}

func TestStreamAlreadyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Exec{}).Stream(ctx, helper("exit", "0")); !errors.Is(err, context.Canceled) {
		t.Errorf("Stream error = %v, want errors.Is context.Canceled", err)
	}
}

// TestStreamCloseEarly: a caller that stops reading must not be left with a program
// blocked on a full pipe, and giving up is not the program's failure.
func TestStreamCloseEarly(t *testing.T) {
	cmd := helper("cat")
	cmd.Stdin = bytes.NewReader(make([]byte, 8<<20))
	rc, err := Exec{}.Stream(context.Background(), cmd)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatalf("reading: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- rc.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close before EOF = %v, want nil", err)
		}
	case <-time.After(safety):
		t.Fatal("Close did not return")
	}
}

// TestStreamCloseAfterFailure: a program that already failed reports it even when the
// caller closes without reading to the end.
func TestStreamCloseAfterFailure(t *testing.T) {
	rc, err := Exec{}.Stream(context.Background(), helper("stderr", "broken\n", "exit", "2"))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // let it exit
	var e *Error
	if err := rc.Close(); !errors.As(err, &e) || e.ExitCode != 2 {
		t.Errorf("Close error = %v, want *Error with exit code 2", err)
	}
}

func TestStreamOrphanHoldsStdout(t *testing.T) {
	old := waitDelay
	waitDelay = 200 * time.Millisecond
	t.Cleanup(func() { waitDelay = old })
	pidfile := filepath.Join(t.TempDir(), "pid")
	t.Cleanup(func() { killPidfile(t, pidfile) })
	rc, err := Exec{}.Stream(context.Background(), helper("stdout", "before", "orphan", pidfile, "exit", "0"))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	out, err := readAllWithin(t, rc)
	if string(out) != "before" {
		t.Errorf("got %q, want what was written before the exit", out)
	}
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != 0 || !errors.Is(err, exec.ErrWaitDelay) {
		t.Errorf("read error = %v, want *Error with ExitCode 0 matching exec.ErrWaitDelay", err)
	}
	if err := rc.Close(); !errors.Is(err, exec.ErrWaitDelay) {
		t.Errorf("Close error = %v, want the same error", err)
	}
}

func TestStreamLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rc, err := Exec{Logger: logger}.Stream(context.Background(), helper("stdout", "x", "exit", "3"))
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	readAllWithin(t, rc)
	rc.Close()
	if log := buf.String(); !strings.Contains(log, "msg=stream") || !strings.Contains(log, "exit=3") {
		t.Errorf("log = %q, want a stream line with exit=3", log)
	}
}

// errAfter yields data, then fails: a download cut after some bytes.
type errAfter struct {
	data []byte
	err  error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestStreamInputErrorLeads: a filter fed a cut input may exit 0 (cat does); the end of
// the output must then report the input's error, not success.
func TestStreamInputErrorLeads(t *testing.T) {
	cut := errors.New("connection reset")
	cmd := helper("cat")
	cmd.Stdin = &errAfter{data: []byte("partial"), err: cut}
	rc, err := Exec{}.Stream(context.Background(), cmd)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	out, err := readAllWithin(t, rc)
	if string(out) != "partial" {
		t.Errorf("got %q, want the bytes before the cut", out)
	}
	if !errors.Is(err, cut) {
		t.Errorf("read error = %v, want the input's error", err)
	}
	if err := rc.Close(); !errors.Is(err, cut) {
		t.Errorf("Close error = %v, want the input's error", err)
	}
}

// TestStreamInputErrorAndFailure: when the program fails too, both errors are there.
func TestStreamInputErrorAndFailure(t *testing.T) {
	cut := errors.New("checksum mismatch")
	cmd := helper("cat", "stderr", "xz: (stdin): Unexpected end of input\n", "exit", "1")
	cmd.Stdin = &errAfter{data: []byte("partial"), err: cut}
	rc, err := Exec{}.Stream(context.Background(), cmd)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	_, err = readAllWithin(t, rc)
	var e *Error
	if !errors.Is(err, cut) || !errors.As(err, &e) || e.ExitCode != 1 {
		t.Errorf("read error = %v, want the input's error and the program's *Error", err)
	}
	rc.Close()
}

// TestStreamStuckInputDoesNotHang: os/exec waits for a Read of Stdin that never returns;
// Stream must not, or a stalled download would hang a cancelled deploy.
func TestStreamStuckInputDoesNotHang(t *testing.T) {
	old := waitDelay
	waitDelay = 200 * time.Millisecond
	t.Cleanup(func() { waitDelay = old })
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := helper("cat")
	cmd.Stdin = pr
	rc, err := Exec{}.Stream(ctx, cmd)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	pw.Write([]byte("some"))
	time.AfterFunc(100*time.Millisecond, cancel)
	out, err := readAllWithin(t, rc)
	if string(out) != "some" || !errors.Is(err, context.Canceled) {
		t.Errorf("got %q, %v; want the bytes fed and context.Canceled", out, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- rc.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Close error = %v, want context.Canceled", err)
		}
	case <-time.After(safety):
		t.Fatal("Close hung on the stuck input")
	}
}

func TestStreamFileStdin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(path, []byte("from a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := helper("cat")
	cmd.Stdin = f
	rc, err := Exec{}.Stream(context.Background(), cmd)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	out, err := readAllWithin(t, rc)
	if string(out) != "from a file" || err != nil {
		t.Errorf("got %q, %v", out, err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
