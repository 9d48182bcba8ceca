// Package run is the single seam through which the provisioner executes external programs
// (mkfs, sgdisk, grub-mkimage, ...). Keeping every exec in one place means argv-only
// invocations (no shell, so no quoting bugs or injection through labels and paths), one
// cancellation policy, stderr that always ends up in the error a person reads, and one
// interface that tests replace with Fake and --dry-run replaces with DryRun.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// Cmd is one program invocation: argv only, never a shell string.
type Cmd struct {
	Argv  []string  // Argv[0] is the program (looked up in PATH), the rest its arguments
	Stdin io.Reader // optional
	Env   []string  // optional extra KEY=VALUE entries, appended to the process environment
	Dir   string    // optional working directory
	// A new mount namespace starts as a copy of ours whose shared mounts still propagate
	// both ways: the program must make them private (mount --make-rprivate /) before it
	// mounts anything that the rest of the machine must not see.
	MountNamespace bool // run the program in a new mount namespace (CLONE_NEWNS; needs root)
}

// Result is what a finished program wrote. Runners fill it also when the program failed,
// because a tool's partial output is often what explains the failure.
type Result struct {
	Stdout []byte
	Stderr []byte
}

// Runner executes programs. Implementations: Exec (real), Fake (tests), DryRun (prints,
// runs nothing). Code that runs programs takes a Runner so that it can be tested without
// touching disks and previewed without changing anything.
type Runner interface {
	Run(ctx context.Context, cmd Cmd) (Result, error)
}

// Error is returned when a program cannot start or exits non-zero. It keeps the whole
// stderr for callers that parse it, while Error() shows only its tail so a chatty tool
// cannot flood logs.
type Error struct {
	Argv []string
	// ExitCode is -1 when the program did not start or was killed by a signal or the
	// context. It is 0 when the program succeeded but a child it left behind kept its
	// output open past the wait delay, so the captured output may be incomplete.
	ExitCode int
	Stderr   string // full captured stderr
	Err      error  // the underlying error (*exec.ExitError, exec.ErrNotFound, context error, ...)
}

// Error reads like
//
//	mkfs.ext4 -F -U 1234 /dev/vda3: exit status 1: mkfs.ext4: Device size reported to be zero.
//
// that is the argv, the exit status (or why the program did not start), and the last few
// non-empty lines of stderr joined by "; ".
func (e *Error) Error() string {
	var b strings.Builder
	if len(e.Argv) == 0 {
		b.WriteString("command")
	} else {
		b.WriteString(String(e.Argv))
	}
	b.WriteString(": ")
	switch {
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, "exit status %d", e.ExitCode)
	default:
		b.WriteString("failed")
	}
	if t := stderrTail(e.Stderr); t != "" {
		b.WriteString(": ")
		b.WriteString(t)
	}
	return b.String()
}

// Unwrap exposes the underlying error, so errors.Is works for context errors and
// errors.As for *exec.ExitError.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) true for a program missing from PATH and for an
// explicit path that does not exist, which the standard library reports differently.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && notFound(e.Err)
}

func notFound(err error) bool {
	if errors.Is(err, exec.ErrNotFound) {
		return true
	}
	// A missing working directory is also ENOENT, but it is not a missing program.
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Op != "chdir" && errors.Is(pe.Err, fs.ErrNotExist)
}

// ErrNotFound is matched (errors.Is) when the program is not installed, so callers can
// name the package to install or fall back to another tool; the message names it.
var ErrNotFound = errors.New("program not found")

// errEmptyArgv is returned instead of panicking on argv[0], because an empty argv is a
// bug in the caller that should surface as an error with context, not a crash mid-apply.
var errEmptyArgv = errors.New("running a program: empty argv")

// waitDelay bounds how long Exec waits for the output pipes after the program exited or
// was killed: a background child that inherited them must not hang the provisioner.
// A variable so tests can shorten it.
var waitDelay = 5 * time.Second

// Exec runs programs for real with os/exec (exec.CommandContext, argv only). Stdout and
// stderr are captured in full. Logger, when non-nil, gets one Debug line per command
// (argv, duration, exit code). A nil *slog.Logger means no logging. Cmd.Env entries
// come after the inherited environment and so win, which lets a caller pin LC_ALL=C for
// output it parses. Cmd.MountNamespace is honoured by Run and Stream alike.
type Exec struct{ Logger *slog.Logger }

// Run starts cmd and waits for it. A done ctx kills the program and every process it
// started (it runs in a process group of its own), and Run returns once they are gone
// (or after the wait delay); the error then matches the context's error.
func (e Exec) Run(ctx context.Context, cmd Cmd) (Result, error) {
	if len(cmd.Argv) == 0 {
		return Result{}, errEmptyArgv
	}
	start := time.Now()
	c := exec.CommandContext(ctx, cmd.Argv[0], cmd.Argv[1:]...)
	c.Stdin = cmd.Stdin
	c.Dir = cmd.Dir
	if len(cmd.Env) > 0 {
		c.Env = append(os.Environ(), cmd.Env...)
	}
	c.SysProcAttr = sysProcAttr(cmd)
	killed := groupKill(c)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	c.WaitDelay = waitDelay

	err := checkDir(cmd.Dir)
	if err == nil {
		err = c.Run()
	}
	if killed() {
		waitGroupGone(c.Process.Pid)
	}
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	code := -1
	if c.ProcessState != nil {
		code = c.ProcessState.ExitCode()
	}
	if err != nil {
		// os/exec reports a killed program as "signal: killed"; callers need to know it
		// was us who killed it, so the context's error leads.
		if ctxErr := ctx.Err(); ctxErr != nil {
			code = -1
			if !errors.Is(err, ctxErr) {
				err = fmt.Errorf("%w: %w", ctxErr, err)
			}
		}
		err = &Error{Argv: slices.Clone(cmd.Argv), ExitCode: code, Stderr: stderr.String(), Err: err}
	}
	if e.Logger != nil {
		attrs := []any{"argv", String(cmd.Argv), "duration", time.Since(start), "exit", code}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		e.Logger.DebugContext(ctx, "run", attrs...)
	}
	return res, err
}

// sysProcAttr returns the process attributes cmd asks for, nil when it asks for none.
func sysProcAttr(cmd Cmd) *syscall.SysProcAttr {
	if !cmd.MountNamespace {
		return nil
	}
	return &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
}

// checkDir reports a missing working directory the way os.StartProcess does for a
// program started without process attributes (a *fs.PathError with Op "chdir"); with
// attributes (our process group) the failure would read as if the program were missing.
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	_, err := os.Stat(dir)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		pe.Op = "chdir"
	}
	return err
}

// LookPath reports where name is found in PATH, as Exec would find it, for callers that
// choose between tools before running one; it exists because only this package may use
// os/exec.
func LookPath(name string) (string, error) {
	return exec.LookPath(name)
}

// DryRun prints each command as one line to W ("run: " + String(argv)) and runs nothing;
// it returns an empty Result and nil. Calls keeps what was asked, for tests. A nil W only
// records. Its zero value is ready to use; it must not be copied after first use.
type DryRun struct {
	W     io.Writer
	mu    sync.Mutex
	Calls [][]string
}

// Run records and prints cmd. Like the real runners it refuses an empty argv and a done
// ctx, so a dry run stops where a real run would.
func (d *DryRun) Run(ctx context.Context, cmd Cmd) (Result, error) {
	if len(cmd.Argv) == 0 {
		return Result{}, errEmptyArgv
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Calls = append(d.Calls, slices.Clone(cmd.Argv))
	if d.W != nil {
		if _, err := io.WriteString(d.W, "run: "+String(cmd.Argv)+"\n"); err != nil {
			return Result{}, fmt.Errorf("dry run: printing %s: %w", cmd.Argv[0], err)
		}
	}
	return Result{}, nil
}

// String renders argv for people and logs, quoting arguments with spaces or shell
// metacharacters in single quotes, so that what is shown can be pasted into a shell to
// reproduce a failure. It is never used to execute anything. Arguments with control
// characters use $'...' so the rendering always stays on one line.
func String(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		quote(&b, a)
	}
	return b.String()
}

func quote(b *strings.Builder, s string) {
	if s == "" {
		b.WriteString("''")
		return
	}
	plain, printable := true, utf8.ValidString(s)
	for _, r := range s {
		if !isSafe(r) {
			plain = false
		}
		if r < 0x20 || r == 0x7f {
			printable = false
		}
	}
	switch {
	case plain:
		b.WriteString(s)
	case printable:
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(s, "'", `'\''`))
		b.WriteByte('\'')
	default:
		b.WriteString("$'")
		for i := 0; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == '\n':
				b.WriteString(`\n`)
			case r == '\t':
				b.WriteString(`\t`)
			case r == '\r':
				b.WriteString(`\r`)
			case r == '\'' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r < 0x20 || r == 0x7f || (r == utf8.RuneError && n == 1):
				fmt.Fprintf(b, `\x%02x`, s[i])
			default:
				b.WriteString(s[i : i+n])
			}
			i += n
		}
		b.WriteByte('\'')
	}
}

// isSafe reports whether r never needs quoting in a POSIX shell word.
func isSafe(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("-_./:=+,@%", r)
}

// Limits of the stderr excerpt in Error(): enough to show a tool's final complaint,
// small enough for one log line.
const (
	tailMaxBytes = 512
	tailMaxLines = 5
)

// stderrTail returns the last few non-empty lines of stderr, joined by "; ", prefixed by
// "... " when earlier output was left out. Carriage returns split lines too (progress
// output) and other control characters are dropped, so the excerpt stays one line.
func stderrTail(stderr string) string {
	lines := strings.FieldsFunc(stderr, func(r rune) bool { return r == '\n' || r == '\r' })
	var kept []string
	size, cut := 0, false
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(strings.Map(dropControl, lines[i]))
		if l == "" {
			continue
		}
		if len(kept) == tailMaxLines || size+len(l) > tailMaxBytes {
			if len(kept) == 0 {
				// A single huge line: its end is what usually holds the reason.
				k := len(l) - tailMaxBytes
				for k < len(l) && !utf8.RuneStart(l[k]) {
					k++
				}
				kept = append(kept, l[k:])
			}
			cut = true
			break
		}
		kept = append(kept, l)
		size += len(l) + len("; ")
	}
	slices.Reverse(kept)
	s := strings.Join(kept, "; ")
	if cut {
		s = "... " + s
	}
	return s
}

func dropControl(r rune) rune {
	switch {
	case r == '\t':
		return ' '
	case r < 0x20 || r == 0x7f:
		return -1
	}
	return r
}
