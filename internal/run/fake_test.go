package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestFakeRecordsAndAnswers(t *testing.T) {
	f := &Fake{Handler: func(c Call) (Result, error) {
		switch c.Argv[0] {
		case "blkid":
			return Result{Stdout: []byte("UUID=1234\n")}, nil
		case "sfdisk":
			return Result{Stdout: c.Stdin}, nil
		case "mkfs.ext4":
			return Result{}, Fail(c.Argv, 1, "mkfs.ext4: Device size reported to be zero.\n")
		}
		return Result{}, nil
	}}
	ctx := context.Background()

	res, err := f.Run(ctx, Cmd{Argv: []string{"blkid", "-s", "UUID", "/dev/vda3"}})
	if err != nil || string(res.Stdout) != "UUID=1234\n" {
		t.Errorf("blkid: %q, %v", res.Stdout, err)
	}
	argv := []string{"sfdisk", "/dev/vda"}
	res, err = f.Run(ctx, Cmd{Argv: argv, Stdin: strings.NewReader("label: gpt\n"), Env: []string{"LC_ALL=C"}})
	if err != nil || string(res.Stdout) != "label: gpt\n" {
		t.Errorf("sfdisk: %q, %v", res.Stdout, err)
	}
	argv[1] = "/dev/changed" // the record must not alias the caller's slice
	_, err = f.Run(ctx, Cmd{Argv: []string{"mkfs.ext4", "-L", "my root", "/dev/vda3"}})
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != 1 {
		t.Errorf("mkfs.ext4: error %v, want *Error with exit code 1", err)
	}

	wantCmds := []string{"blkid -s UUID /dev/vda3", "sfdisk /dev/vda", "mkfs.ext4 -L 'my root' /dev/vda3"}
	if got := f.Commands(); !slices.Equal(got, wantCmds) {
		t.Errorf("Commands() = %q, want %q", got, wantCmds)
	}
	calls := f.Calls()
	if len(calls) != 3 {
		t.Fatalf("Calls() has %d calls, want 3", len(calls))
	}
	if c := calls[1]; string(c.Stdin) != "label: gpt\n" || !slices.Equal(c.Env, []string{"LC_ALL=C"}) {
		t.Errorf("sfdisk call = %+v, want its stdin and env", c)
	}
	if calls[0].Stdin != nil {
		t.Errorf("call without stdin recorded Stdin %q", calls[0].Stdin)
	}
	calls[0].Argv[0] = "mutated"
	if got := f.Calls()[0].Argv[0]; got != "blkid" {
		t.Errorf("Calls() is not a copy: recorded argv[0] became %q", got)
	}
}

func TestFakeZeroValue(t *testing.T) {
	var f Fake
	res, err := f.Run(context.Background(), Cmd{Argv: []string{"true"}})
	if err != nil || res.Stdout != nil || res.Stderr != nil {
		t.Errorf("zero Fake: %+v, %v; want empty success", res, err)
	}
}

func TestFakeContext(t *testing.T) {
	called := false
	f := &Fake{Handler: func(Call) (Result, error) { called = true; return Result{}, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Run(ctx, Cmd{Argv: []string{"wipefs", "-a", "/dev/vda"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Run error = %v, want context.Canceled", err)
	}
	if called || len(f.Calls()) != 0 {
		t.Errorf("a cancelled call reached the handler or was recorded")
	}
}

// TestFakeConcurrent is meant for -race: runners are shared by goroutines that, say,
// format several partitions at once.
func TestFakeConcurrent(t *testing.T) {
	f := &Fake{}
	f.Handler = func(c Call) (Result, error) {
		_ = f.Calls() // a handler may inspect the fake without deadlocking
		return Result{Stdout: []byte(c.Argv[1])}, nil
	}
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := f.Run(context.Background(), Cmd{Argv: []string{"prog", strconv.Itoa(i)}, Stdin: strings.NewReader("in")})
			if err != nil || string(res.Stdout) != strconv.Itoa(i) {
				t.Errorf("call %d: %q, %v", i, res.Stdout, err)
			}
			_ = f.Commands()
		})
	}
	wg.Wait()
	got := f.Commands()
	slices.Sort(got)
	want := make([]string, n)
	for i := range n {
		want[i] = "prog " + strconv.Itoa(i)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Commands() = %q, want every call once", got)
	}
}

func TestFail(t *testing.T) {
	argv := []string{"mkfs.ext4", "-F", "-U", "1234", "/dev/vda3"}
	err := Fail(argv, 1, "mkfs.ext4: Device size reported to be zero.\n")
	const want = "mkfs.ext4 -F -U 1234 /dev/vda3: exit status 1: mkfs.ext4: Device size reported to be zero."
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.ExitCode != 1 || !slices.Equal(e.Argv, argv) || e.Stderr != "mkfs.ext4: Device size reported to be zero.\n" {
		t.Errorf("Fail = %#v", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Error("Fail matched ErrNotFound")
	}
	argv[0] = "changed"
	if e.Argv[0] != "mkfs.ext4" {
		t.Error("Fail kept the caller's argv slice")
	}
	if err := Fail([]string{"sleep"}, -9, ""); !errors.As(err, &e) || e.ExitCode != -1 || err.Error() != "sleep: signal: killed" {
		t.Errorf("Fail(-9) = %v (exit code %d), want a killed program", err, e.ExitCode)
	}
}

func TestDryRun(t *testing.T) {
	file := filepath.Join(t.TempDir(), "created")
	cmd := helper("touch", file)
	var buf bytes.Buffer
	d := &DryRun{W: &buf}
	res, err := d.Run(context.Background(), cmd)
	if err != nil || res.Stdout != nil || res.Stderr != nil {
		t.Fatalf("DryRun.Run = %+v, %v; want empty success", res, err)
	}
	if _, err := d.Run(context.Background(), Cmd{Argv: []string{"mkfs.vfat", "-n", "EFI SYSTEM", "/dev/vda1"}}); err != nil {
		t.Fatalf("DryRun.Run: %v", err)
	}
	want := "run: " + String(cmd.Argv) + "\nrun: mkfs.vfat -n 'EFI SYSTEM' /dev/vda1\n"
	if buf.String() != want {
		t.Errorf("printed %q, want %q", buf.String(), want)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run touched %s (stat: %v)", file, err)
	}
	if len(d.Calls) != 2 || !slices.Equal(d.Calls[0], cmd.Argv) {
		t.Errorf("Calls = %q", d.Calls)
	}

	// The same command run for real does create the file, so the check above means something.
	if _, err := (Exec{}).Run(context.Background(), cmd); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the helper did not create %s: %v", file, err)
	}
}

func TestDryRunEdges(t *testing.T) {
	var d DryRun // nil W only records
	if _, err := d.Run(context.Background(), Cmd{Argv: []string{"true"}}); err != nil || len(d.Calls) != 1 {
		t.Errorf("nil W: %v, %d calls", err, len(d.Calls))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Run(ctx, Cmd{Argv: []string{"true"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v, want context.Canceled", err)
	}
	w := &DryRun{W: failWriter{}}
	if _, err := w.Run(context.Background(), Cmd{Argv: []string{"true"}}); !errors.Is(err, errWrite) {
		t.Errorf("failing writer: %v, want it wrapped", err)
	}
}

var errWrite = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }
