package disk

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// inOwnMountNamespace runs f on a thread moved into a mount namespace of its own, so
// that what f mounts is never seen by the machine. The thread is not handed back to the
// runtime: it ends with the goroutine, and the namespace with it.
func inOwnMountNamespace(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- err
			return
		}
		done <- f()
	}()
	return <-done
}

// mountOptions returns the per-mount options of the mount at dir in the calling
// thread's mount table, and whether it carries a propagation tag (shared:N, master:N).
func mountOptions(dir string) (opts string, propagated bool, ok bool) {
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return "", false, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || f[4] != dir {
			continue
		}
		opts, propagated, ok = f[5], false, true // the last mount at dir wins
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			propagated = propagated || strings.HasPrefix(opt, "shared:") || strings.HasPrefix(opt, "master:")
		}
	}
	return opts, propagated, ok
}

func TestNamespaceMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mount test needs root")
	}
	dir := t.TempDir()
	over := filepath.Join(dir, "over")
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(over, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("replacement\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := inOwnMountNamespace(t, func() error {
		// First of all, so that nothing below can reach the machine's mounts.
		if err := MakeTreePrivate("/"); err != nil {
			return err
		}
		if err := MountTmpfs("provisioner-test", over, "mode=0755,size=1m", true); err != nil {
			return err
		}
		// Shared on purpose, so that making it private has something to undo.
		if err := unix.Mount("", over, "", unix.MS_SHARED, ""); err != nil {
			return err
		}
		if _, propagated, ok := mountOptions(over); !ok || !propagated {
			t.Errorf("tmpfs at %s: mounted %v, shared %v", over, ok, propagated)
		}
		if err := MakeTreePrivate(over); err != nil {
			return err
		}
		opts, propagated, ok := mountOptions(over)
		if !ok || propagated {
			t.Errorf("tmpfs at %s after MakeTreePrivate: mounted %v, propagated %v", over, ok, propagated)
		}
		for _, want := range []string{"nosuid", "nodev", "noexec"} {
			if !strings.Contains(","+opts+",", ","+want+",") {
				t.Errorf("tmpfs at %s has options %q, without %s", over, opts, want)
			}
		}
		target := filepath.Join(over, "file")
		if err := os.WriteFile(target, []byte("original\n"), 0o644); err != nil {
			return err
		}
		if err := BindMount(src, target); err != nil {
			return err
		}
		if b, err := os.ReadFile(target); err != nil || string(b) != "replacement\n" {
			t.Errorf("bind-mounted %s reads %q, %v", target, b, err)
		}
		if err := DetachMount(target); err != nil {
			return err
		}
		if err := DetachMount(over); err != nil {
			return err
		}
		if _, _, ok := mountOptions(over); ok {
			t.Errorf("%s is still mounted after DetachMount", over)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing of it shows here.
	if _, err := os.Stat(filepath.Join(over, "file")); err == nil {
		t.Errorf("the namespace's tmpfs shows in the test's own namespace")
	}
}

// TestNamespaceMountErrors checks that each failure names the path it was about.
func TestNamespaceMountErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for name, err := range map[string]error{
		"MakeTreePrivate": MakeTreePrivate(missing),
		"MountTmpfs":      MountTmpfs("provisioner-test", missing, "", false),
		"BindMount":       BindMount(missing, missing),
		"DetachMount":     DetachMount(missing),
	} {
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("%s on a missing path: %v", name, err)
		}
	}
}
