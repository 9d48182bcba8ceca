package bootloader

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

var atomicSteps = []string{"create", "write", "fsync", "rename", "fsync-dir"}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	var steps []string
	err := WriteFileAtomic(p, []byte("new content"), 0o644, func(s string) error {
		steps = append(steps, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "new content" {
		t.Errorf("content = %q", got)
	}
	// The directory fsync must come last: only after it is the rename durable.
	if !slices.Equal(steps, atomicSteps) {
		t.Errorf("steps = %q, want %q", steps, atomicSteps)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("perm = %v, want 0644", fi.Mode().Perm())
	}
	assertOnlyFile(t, dir, "f")

	// A new file, a nil hook and a mode the umask would usually strip.
	q := filepath.Join(dir, "g")
	if err := WriteFileAtomic(q, nil, 0o666, nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(q); err != nil || fi.Mode().Perm() != 0o666 || fi.Size() != 0 {
		t.Error("g:", fi, err)
	}
}

func TestWriteFileAtomicAbort(t *testing.T) {
	errCut := errors.New("power cut")
	for _, step := range atomicSteps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "grubenv")
			if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			err := WriteFileAtomic(p, []byte("new"), 0o644, func(s string) error {
				if s == step {
					return errCut
				}
				return nil
			})
			if !errors.Is(err, errCut) {
				t.Fatalf("err = %v, want the hook's error", err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the path", err)
			}
			want := "old"
			if step == "fsync-dir" {
				want = "new" // the rename happened; only its durability was lost
			}
			if got, _ := os.ReadFile(p); string(got) != want {
				t.Errorf("content = %q, want %q", got, want)
			}
			// A later write succeeds and removes whatever the aborted one left.
			if err := WriteFileAtomic(p, []byte("newer"), 0o644, nil); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(p); string(got) != "newer" {
				t.Errorf("content after retry = %q", got)
			}
			assertOnlyFile(t, dir, "grubenv")
		})
	}
}

func TestWriteFileAtomicKeepsOtherFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"grubenv.tmp-1", ".grubenv.tmp", ".other.tmp-1"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFileAtomic(filepath.Join(dir, "grubenv"), []byte("x"), 0o644, nil); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Errorf("files = %v, want the three unrelated ones and grubenv", ents)
	}
}

func TestWriteFileAtomicErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "f")
	err := WriteFileAtomic(p, []byte("x"), 0o644, nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), p) {
		t.Errorf("err = %v, want ErrNotExist naming %s", err, p)
	}
}

func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{name}) {
		t.Errorf("directory holds %q, want only %q", names, name)
	}
}

// The power-cut test re-runs the test binary as a child (as os/exec's own tests do). The
// child writes a new grubenv, then a new boot-info.json, through WriteFileAtomic; its hook
// reports every step on fd 3 and, at the step the parent chose, waits forever, so the
// parent can SIGKILL it exactly there.
const (
	powerCutEnv  = "BOOTLOADER_POWERCUT_HELPER"  // "<dir>"
	powerCutStop = "BOOTLOADER_POWERCUT_STOP_AT" // "<file>:<step>"
)

func TestPowerCutHelper(t *testing.T) {
	dir := os.Getenv(powerCutEnv)
	if dir == "" {
		t.Skip("helper process for TestPowerCut")
	}
	report := os.NewFile(3, "report")
	stopAt := os.Getenv(powerCutStop)
	hook := func(file string) func(string) error {
		return func(step string) error {
			fmt.Fprintf(report, "%s:%s\n", file, step)
			if file+":"+step == stopAt {
				select {} // blocks until the parent kills us
			}
			return nil
		}
	}
	env, bi := powerCutContent(t, "new")
	if err := WriteFileAtomic(filepath.Join(dir, "grubenv"), env, 0o644, hook("grubenv")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "boot-info.json"), bi, 0o644, hook("boot-info.json")); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(report, "done")
	os.Exit(0) // no test summary noise in the parent's pipe
}

// powerCutContent returns the grubenv and boot-info.json of one generation ("old" or "new").
func powerCutContent(t testing.TB, gen string) (env, bootInfo []byte) {
	t.Helper()
	cur := 0
	if gen == "new" {
		cur = 1
	}
	e := &Env{}
	e.Set("saved_entry", fmt.Sprintf("image-%d", cur))
	e.Set("generation", gen)
	env, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b := testBootInfo()
	b.CurrentElement = cur
	bootInfo, err = b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return env, bootInfo
}

func TestPowerCut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	oldEnv, oldBI := powerCutContent(t, "old")
	newEnv, newBI := powerCutContent(t, "new")
	var cases []string
	for _, f := range []string{"grubenv", "boot-info.json"} {
		for _, s := range atomicSteps {
			cases = append(cases, f+":"+s)
		}
	}
	cases = append(cases, "none") // runs to completion
	for _, stop := range cases {
		t.Run(strings.ReplaceAll(stop, ":", "/"), func(t *testing.T) {
			dir := t.TempDir()
			envPath := filepath.Join(dir, "grubenv")
			biPath := filepath.Join(dir, "boot-info.json")
			if err := os.WriteFile(envPath, oldEnv, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(biPath, oldBI, 0o644); err != nil {
				t.Fatal(err)
			}
			steps := runPowerCutChild(t, dir, stop)
			if stop == "none" {
				if steps[len(steps)-1] != "done" {
					t.Fatalf("child did not finish: %q", steps)
				}
			} else if steps[len(steps)-1] != stop {
				t.Fatalf("child was killed after %q, want at %q", steps, stop)
			}

			env := checkWhole(t, envPath, oldEnv, newEnv)
			bi := checkWhole(t, biPath, oldBI, newBI)
			if _, err := ParseEnv(env); err != nil {
				t.Error("grubenv does not parse:", err)
			}
			if _, err := ReadBootInfo(biPath); err != nil {
				t.Error("boot-info.json does not parse:", err)
			}
			// A SIGKILL loses no page cache, so which generation survives is exact: a file
			// is new once its rename ran, and grubenv is written before boot-info.json.
			wantEnvNew := stop == "none" || stop == "grubenv:fsync-dir" || strings.HasPrefix(stop, "boot-info.json:")
			wantBINew := stop == "none" || stop == "boot-info.json:fsync-dir"
			if bytes.Equal(env, newEnv) != wantEnvNew || bytes.Equal(bi, newBI) != wantBINew {
				t.Errorf("grubenv new = %v (want %v), boot-info.json new = %v (want %v)",
					bytes.Equal(env, newEnv), wantEnvNew, bytes.Equal(bi, newBI), wantBINew)
			}
			// A later switch completes and leaves no temporary file behind.
			if err := WriteFileAtomic(envPath, newEnv, 0o644, nil); err != nil {
				t.Fatal(err)
			}
			if err := WriteFileAtomic(biPath, newBI, 0o644, nil); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 2 {
				t.Errorf("directory after the retry: %v", ents)
			}
		})
	}
}

// runPowerCutChild starts the helper, waits until it reports the step stop (or finishes),
// SIGKILLs it there, and returns the steps it reported.
func runPowerCutChild(t *testing.T, dir, stop string) []string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPowerCutHelper$")
	cmd.Env = append(os.Environ(), powerCutEnv+"="+dir, powerCutStop+"="+stop)
	cmd.ExtraFiles = []*os.File{w}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	lines := make(chan string, 64) // buffered: the reader must not block after we return
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var steps []string
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				killed = true
				return steps
			}
			steps = append(steps, l)
			if l == stop {
				// The hook blocks before the step runs, so the kill lands exactly between
				// the previous step and this one.
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				cmd.Wait()
				killed = true
				return steps
			}
		case <-timeout:
			t.Fatalf("child stuck after %q; output:\n%s", steps, stderr.String())
		}
	}
}

// checkWhole fails unless path holds exactly old or exactly new, and returns its content.
func checkWhole(t *testing.T, path string, old, new []byte) []byte {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("after the cut: %v", err)
	}
	if !bytes.Equal(got, old) && !bytes.Equal(got, new) {
		t.Errorf("%s is torn: %q", filepath.Base(path), got)
	}
	return got
}
