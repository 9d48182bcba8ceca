package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a fake external program (see helperMain), the
// way os/exec's own tests fake programs: no dependency on what the machine has installed.
const helperEnv = "RUN_TEST_HELPER"

// safety bounds how long a test waits for something that should take milliseconds; it
// only turns a hang into a failure and is not a performance assertion.
const safety = 30 * time.Second

// helperExe is the absolute path of the test binary, so tests that change Dir still find it.
var helperExe string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "locating the test binary:", err)
		os.Exit(2)
	}
	helperExe = exe
	os.Exit(m.Run())
}

// helperMain interprets its arguments as a little script of operations, in order:
//
//	stdout TEXT, stderr TEXT     write TEXT as is
//	stderr-lines N PREFIX        write N lines "PREFIX i" to stderr
//	cat                          copy stdin to stdout
//	env NAME                     write the value of NAME to stdout
//	pwd                          write the working directory to stdout
//	readlink PATH                write the target of the symbolic link PATH to stdout
//	sleep DURATION               sleep
//	touch PATH                   create an empty file
//	orphan PIDFILE               start a child that sleeps a minute holding stdout and
//	                             stderr, and write its pid to PIDFILE
//	exit CODE                    exit with CODE
//
// It returns 0 when the script ends without exit, 99 on a malformed script.
func helperMain(args []string) int {
	arg := func(i int) string {
		if i >= len(args) {
			fmt.Fprintf(os.Stderr, "helper: %s needs an argument\n", args[i-1])
			os.Exit(99)
		}
		return args[i]
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 99
	}
	for i := 0; i < len(args); i++ {
		switch op := args[i]; op {
		case "stdout":
			i++
			os.Stdout.WriteString(arg(i))
		case "stderr":
			i++
			os.Stderr.WriteString(arg(i))
		case "stderr-lines":
			n, err := strconv.Atoi(arg(i + 1))
			if err != nil {
				return fail(err)
			}
			prefix := arg(i + 2)
			i += 2
			for k := range n {
				fmt.Fprintf(os.Stderr, "%s %d\n", prefix, k)
			}
		case "cat":
			if _, err := io.Copy(os.Stdout, os.Stdin); err != nil {
				return fail(err)
			}
		case "env":
			i++
			os.Stdout.WriteString(os.Getenv(arg(i)))
		case "pwd":
			wd, err := os.Getwd()
			if err != nil {
				return fail(err)
			}
			os.Stdout.WriteString(wd)
		case "readlink":
			i++
			target, err := os.Readlink(arg(i))
			if err != nil {
				return fail(err)
			}
			os.Stdout.WriteString(target)
		case "sleep":
			i++
			d, err := time.ParseDuration(arg(i))
			if err != nil {
				return fail(err)
			}
			time.Sleep(d)
		case "touch":
			i++
			if err := os.WriteFile(arg(i), nil, 0o644); err != nil {
				return fail(err)
			}
		case "orphan":
			i++
			exe, err := os.Executable()
			if err != nil {
				return fail(err)
			}
			child := exec.Command(exe, "sleep", "1m")
			child.Stdout, child.Stderr = os.Stdout, os.Stderr // inherited, not copied
			if err := child.Start(); err != nil {
				return fail(err)
			}
			tmp := arg(i) + ".tmp"
			if err := os.WriteFile(tmp, []byte(strconv.Itoa(child.Process.Pid)), 0o644); err != nil {
				return fail(err)
			}
			if err := os.Rename(tmp, arg(i)); err != nil {
				return fail(err)
			}
		case "exit":
			i++
			code, err := strconv.Atoi(arg(i))
			if err != nil {
				return fail(err)
			}
			return code
		default:
			return fail(fmt.Errorf("unknown operation %q", op))
		}
	}
	return 0
}

// helper returns a Cmd that runs the test binary as the fake program with script args.
// Under -race a binary sleeps a second before a successful exit to let races surface;
// GORACE turns that off for the helper so the tests stay fast.
func helper(args ...string) Cmd {
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	return Cmd{Argv: append([]string{helperExe}, args...), Env: []string{helperEnv + "=1", "GORACE=" + gorace}}
}

var (
	_ Runner = Exec{}
	_ Runner = (*Fake)(nil)
	_ Runner = (*DryRun)(nil)
)

func TestExecSuccess(t *testing.T) {
	res, err := Exec{}.Run(context.Background(), helper("stdout", "hello\n", "stderr", "a warning\n"))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := string(res.Stdout); got != "hello\n" {
		t.Errorf("Stdout = %q, want %q", got, "hello\n")
	}
	if got := string(res.Stderr); got != "a warning\n" {
		t.Errorf("Stderr = %q, want %q", got, "a warning\n")
	}
}

func TestExecFailure(t *testing.T) {
	cmd := helper("stdout", "partial", "stderr-lines", "300", "noise", "stderr", "final: device is busy\n", "exit", "3")
	res, err := Exec{}.Run(context.Background(), cmd)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Run error = %v (%T), want *Error", err, err)
	}
	if e.ExitCode != 3 {
		t.Errorf("ExitCode = %d, want 3", e.ExitCode)
	}
	if !slices.Equal(e.Argv, cmd.Argv) {
		t.Errorf("Argv = %q, want %q", e.Argv, cmd.Argv)
	}
	if !strings.HasPrefix(e.Stderr, "noise 0\n") || !strings.HasSuffix(e.Stderr, "noise 299\nfinal: device is busy\n") {
		t.Errorf("Stderr is not the full stderr: %d bytes starting %.40q", len(e.Stderr), e.Stderr)
	}
	if string(res.Stdout) != "partial" || string(res.Stderr) != e.Stderr {
		t.Errorf("Result not filled on failure: stdout %q, %d stderr bytes", res.Stdout, len(res.Stderr))
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Errorf("errors.As(*exec.ExitError) failed for %v", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("a program that ran matches ErrNotFound")
	}

	msg := err.Error()
	prefix := String(cmd.Argv) + ": exit status 3: "
	if !strings.HasPrefix(msg, prefix) {
		t.Fatalf("Error() = %.200q..., want prefix %q", msg, prefix)
	}
	tail := strings.TrimPrefix(msg, prefix)
	if !strings.HasPrefix(tail, "... ") || !strings.HasSuffix(tail, "noise 299; final: device is busy") {
		t.Errorf("Error() tail = %q, want the last stderr lines after \"... \"", tail)
	}
	if strings.Contains(tail, "noise 0;") || len(tail) > tailMaxBytes+len("... ") {
		t.Errorf("Error() tail is not truncated (%d bytes): %q", len(tail), tail)
	}
}

// TestExecErrorLikeFail keeps Fail honest: a fake failure must read like a real one.
func TestExecErrorLikeFail(t *testing.T) {
	const stderr = "mkfs.ext4: Device size reported to be zero.\n"
	cmd := helper("stderr", stderr, "exit", "1")
	_, err := Exec{}.Run(context.Background(), cmd)
	if err == nil {
		t.Fatal("Run succeeded, want exit status 1")
	}
	if want := Fail(cmd.Argv, 1, stderr).Error(); err.Error() != want {
		t.Errorf("Exec error = %q\nFail error = %q", err.Error(), want)
	}
}

func TestExecNotFound(t *testing.T) {
	for _, prog := range []string{
		"provisioner-test-no-such-program",
		filepath.Join(t.TempDir(), "no-such-program"),
	} {
		t.Run(filepath.Base(prog), func(t *testing.T) {
			argv := []string{prog, "--version"}
			_, err := Exec{}.Run(context.Background(), Cmd{Argv: argv})
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Run error = %v, want errors.Is ErrNotFound", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.ExitCode != -1 || !slices.Equal(e.Argv, argv) {
				t.Fatalf("Run error = %#v, want *Error with ExitCode -1 and the argv", err)
			}
			if !strings.Contains(err.Error(), prog) {
				t.Errorf("Error() = %q does not name %s", err, prog)
			}
		})
	}
	if errors.Is(exec.ErrNotFound, ErrNotFound) || errors.Is(errors.New("x"), ErrNotFound) {
		t.Error("ErrNotFound matched outside an *Error")
	}
}

// A missing working directory is also "no such file", but the program is installed.
func TestExecMissingDir(t *testing.T) {
	cmd := helper("exit", "0")
	cmd.Dir = filepath.Join(t.TempDir(), "gone")
	_, err := Exec{}.Run(context.Background(), cmd)
	if err == nil {
		t.Fatal("Run succeeded in a missing directory")
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("missing Dir matched ErrNotFound: %v", err)
	}
	if !strings.Contains(err.Error(), cmd.Dir) {
		t.Errorf("Error() = %q does not name the directory", err)
	}
}

func TestExecStdin(t *testing.T) {
	const in = "label: gpt\nsize=1GiB\n"
	cmd := helper("cat")
	cmd.Stdin = strings.NewReader(in)
	res, err := Exec{}.Run(context.Background(), cmd)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if string(res.Stdout) != in {
		t.Errorf("Stdout = %q, want stdin %q", res.Stdout, in)
	}
}

func TestExecEnv(t *testing.T) {
	t.Setenv("RUN_TEST_OVERRIDE", "inherited")
	cmd := helper("env", "RUN_TEST_VALUE", "stdout", "|", "env", "RUN_TEST_OVERRIDE", "stdout", "|", "env", "PATH")
	cmd.Env = append(cmd.Env, "RUN_TEST_VALUE=a b=c", "RUN_TEST_OVERRIDE=mine")
	res, err := Exec{}.Run(context.Background(), cmd)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// PATH shows the extra entries were appended to, not substituted for, the environment;
	// RUN_TEST_OVERRIDE that an extra entry beats an inherited one.
	if want := "a b=c|mine|" + os.Getenv("PATH"); string(res.Stdout) != want {
		t.Errorf("Stdout = %q, want %q", res.Stdout, want)
	}
}

func TestExecDir(t *testing.T) {
	dir := t.TempDir()
	cmd := helper("pwd")
	cmd.Dir = dir
	res, err := Exec{}.Run(context.Background(), cmd)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, err1 := filepath.EvalSymlinks(string(res.Stdout))
	want, err2 := filepath.EvalSymlinks(dir)
	if err1 != nil || err2 != nil || got != want {
		t.Errorf("working directory = %q, want %q (%v, %v)", res.Stdout, dir, err1, err2)
	}
}

// runWithin runs cmd in the background and fails the test if it has not returned within
// the safety timeout, so a hang shows as a failure instead of a stuck test run.
func runWithin(t *testing.T, ctx context.Context, r Runner, cmd Cmd) (Result, error) {
	t.Helper()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := r.Run(ctx, cmd)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-time.After(safety):
		t.Fatalf("Run(%s) did not return within %v", String(cmd.Argv), safety)
		return Result{}, nil
	}
}

func TestExecContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
		{"already cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			_, err := runWithin(t, ctx, Exec{}, helper("sleep", "1m"))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Run error = %v, want errors.Is %v", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.ExitCode != -1 {
				t.Errorf("Run error = %#v, want *Error with ExitCode -1", err)
			}
		})
	}
}

// TestExecOrphanHoldsPipes checks the wait delay: a background child that inherited the
// program's stdout must not keep Run from returning, whether the program exits on its
// own or is killed through ctx.
func TestExecOrphanHoldsPipes(t *testing.T) {
	old := waitDelay
	waitDelay = 200 * time.Millisecond
	t.Cleanup(func() { waitDelay = old })

	t.Run("program exits", func(t *testing.T) {
		pidfile := filepath.Join(t.TempDir(), "pid")
		t.Cleanup(func() { killPidfile(t, pidfile) })
		res, err := runWithin(t, context.Background(), Exec{}, helper("stdout", "before", "orphan", pidfile, "exit", "0"))
		var e *Error
		if !errors.As(err, &e) || e.ExitCode != 0 || !errors.Is(err, exec.ErrWaitDelay) {
			t.Errorf("Run error = %v, want *Error with ExitCode 0 matching exec.ErrWaitDelay", err)
		}
		if string(res.Stdout) != "before" {
			t.Errorf("Stdout = %q, want what was written before the exit", res.Stdout)
		}
	})
	t.Run("ctx kills program", func(t *testing.T) {
		pidfile := filepath.Join(t.TempDir(), "pid")
		t.Cleanup(func() { killPidfile(t, pidfile) })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Cancel once the orphan exists, so the kill really leaves it behind.
		go cancelOnceExists(pidfile, cancel)
		_, err := runWithin(t, ctx, Exec{}, helper("orphan", pidfile, "sleep", "1m"))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run error = %v, want errors.Is context.Canceled", err)
		}
	})
}

func killPidfile(t *testing.T, pidfile string) {
	data, err := os.ReadFile(pidfile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(string(data))
	if err != nil {
		t.Errorf("pid file %s: %v", pidfile, err)
		return
	}
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

func TestEmptyArgv(t *testing.T) {
	for name, r := range map[string]Runner{"Exec": Exec{}, "Fake": &Fake{}, "DryRun": &DryRun{}} {
		for _, argv := range [][]string{nil, {}} {
			if _, err := r.Run(context.Background(), Cmd{Argv: argv}); err == nil || !strings.Contains(err.Error(), "empty argv") {
				t.Errorf("%s.Run(argv %#v) error = %v, want an empty argv error", name, argv, err)
			}
		}
	}
}

func TestExecLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cmd := helper("stdout", "x", "exit", "2")
	if _, err := (Exec{Logger: logger}).Run(context.Background(), cmd); err == nil {
		t.Fatal("Run succeeded, want exit status 2")
	}
	out := buf.String()
	for _, want := range []string{"level=DEBUG", String(cmd.Argv), "exit=2", "duration="} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q does not contain %q", out, want)
		}
	}
	if n := strings.Count(out, "\n"); n != 1 {
		t.Errorf("log has %d lines, want 1: %q", n, out)
	}
}

// TestCancelKillsTheProcessGroup checks that a done ctx kills what the program started
// too, and that Run (and Stream's Close) return only once those processes are gone: a
// caller cleans up right after, and a child still writing would hold its mount or disk.
func TestCancelKillsTheProcessGroup(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, cmd Cmd) error
	}{
		{"Run", func(ctx context.Context, cmd Cmd) error {
			_, err := Exec{}.Run(ctx, cmd)
			return err
		}},
		{"Stream", func(ctx context.Context, cmd Cmd) error {
			rc, err := Exec{}.Stream(ctx, cmd)
			if err != nil {
				return err
			}
			_, err = io.ReadAll(rc)
			rc.Close()
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "pid")
			t.Cleanup(func() { killPidfile(t, pidfile) })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go cancelOnceExists(pidfile, cancel)
			done := make(chan error, 1)
			go func() { done <- tc.run(ctx, helper("orphan", pidfile, "sleep", "1m")) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(safety):
				t.Fatalf("did not return within %v", safety)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error = %v, want errors.Is context.Canceled", err)
			}
			data, rerr := os.ReadFile(pidfile)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if state, _, ok := procState(string(data)); ok && state != "Z" && state != "X" {
				t.Errorf("the program's child %s is still running (state %s) after it returned", data, state)
			}
		})
	}
}

// cancelOnceExists calls cancel once path exists (the helper program wrote its pid file),
// or after the safety bound.
func cancelOnceExists(path string, cancel func()) {
	for deadline := time.Now().Add(safety); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		}
	}
	cancel()
}

// TestStartKill: a started program runs until killed; one that exits by itself reports
// how.
func TestStartKill(t *testing.T) {
	var out bytes.Buffer
	p, err := Start([]string{"sh", "-c", "echo up; exec sleep 60"}, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		t.Fatal("the program ended by itself")
	case <-time.After(200 * time.Millisecond):
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill: %v", err)
	}
	if p.Err() == nil || !strings.Contains(out.String(), "up") {
		t.Errorf("after Kill: %v, output %q", p.Err(), out.String())
	}
	q, err := Start([]string{"false"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Err() == nil || q.Kill() != nil {
		t.Errorf("false: %v", q.Err())
	}
	if _, err := Start([]string{"/nonexistent/program"}, nil, nil); err == nil {
		t.Error("a missing program started")
	}
}
