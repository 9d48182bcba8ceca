package engine

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/disk"
)

// TestOpenBootDirLocks: on a node, OpenBootDir locks the disk holding the multiboot
// partition and then the boot directory, exclusive for a writer and shared for readers,
// and Close releases both.
func TestOpenBootDirLocks(t *testing.T) {
	ctx := context.Background()
	env, mb := fakeNode(t, func(argv []string) (string, int) { return "", -1 })
	sda := filepath.Join(env.Sys.DevRoot, "sda")
	for _, tc := range []struct {
		name     string
		path     string // held by "another run"
		mode     disk.LockMode
		writable bool
		wantErr  string // "" when it opens
	}{
		{"writer, disk held by a reader", sda, disk.Shared, true, "multiboot partition " + filepath.Join(env.Sys.DevRoot, "sda2") + ": " + sda + " is locked by another run"},
		{"writer, directory held by a reader", mb, disk.Shared, true, "boot files in " + filepath.Join(env.Sys.DevRoot, "sda2") + " (multiboot, mounted at " + mb + "): " + mb + " is locked by another run"},
		{"reader, disk held by a writer", sda, disk.Exclusive, false, sda + " is locked by another run"},
		{"reader beside a reader", sda, disk.Shared, false, ""},
		{"reader beside a reader of the directory", mb, disk.Shared, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other, err := disk.LockPath(ctx, tc.path, tc.mode, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Release()
			bd, err := OpenBootDir(ctx, BootDirOptions{Env: env, Writable: tc.writable, LockWait: 100 * time.Millisecond})
			if tc.wantErr != "" {
				if !errors.Is(err, ErrEnvironment) || !errors.Is(err, disk.ErrLocked) || err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "(waited 100ms)") {
					t.Errorf("err = %v, want %q", err, tc.wantErr)
				}
				if err == nil {
					bd.Close(ctx)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if err := bd.Close(ctx); err != nil {
					t.Error(err)
				}
			}
			// Nothing stays locked: a writer gets both at once now.
			other.Release()
			bd, err = OpenBootDir(ctx, BootDirOptions{Env: env, Writable: true})
			if err != nil {
				t.Fatalf("after release: %v", err)
			}
			if err := bd.Close(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

// ext4Image makes an ext4 filesystem image file (no partition table) holding
// boot-info.json at its root.
func ext4Image(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "boot.img")
	sparse(t, img, 32<<20)
	if out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-L", multibootLabel, img).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	ctx := context.Background()
	loop, err := disk.AttachLoop(ctx, img, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := loop.Detach(ctx); err != nil {
			t.Error(err)
		}
	}()
	mnt := t.TempDir()
	if err := disk.Mount(ctx, loop.Path, mnt, "ext4", ""); err != nil {
		t.Fatal(err)
	}
	werr := os.WriteFile(filepath.Join(mnt, bootloader.BootInfoPath), []byte(`{"elements":[]}`), 0o644)
	if err := disk.Unmount(ctx, mnt); err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	return img
}

// TestOpenBootDirTwoMounts: two mounts of one filesystem are one set of inodes, so a
// boot directory opened for writing through one mount is locked through the other.
func TestOpenBootDirTwoMounts(t *testing.T) {
	needLoop(t, "mke2fs")
	ctx := context.Background()
	img := ext4Image(t)
	loop, err := disk.AttachLoop(ctx, img, 512)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := loop.Detach(ctx); err != nil {
			t.Error(err)
		}
	})
	var mnts []string
	for range 2 {
		mnt := t.TempDir()
		if err := disk.Mount(ctx, loop.Path, mnt, "ext4", ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := disk.Unmount(ctx, mnt); err != nil {
				t.Error(err)
			}
		})
		mnts = append(mnts, mnt)
	}
	a, err := OpenBootDir(ctx, BootDirOptions{Dir: mnts[0], Writable: true, Env: HostEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	_, err = OpenBootDir(ctx, BootDirOptions{Dir: mnts[1], Env: HostEnv(nil)})
	if !errors.Is(err, disk.ErrLocked) || !strings.Contains(err.Error(), mnts[1]+" is locked by another run") {
		t.Errorf("second mount: %v", err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := OpenBootDir(ctx, BootDirOptions{Dir: mnts[1], Env: HostEnv(nil)})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	b.Close(ctx)
}

// TestOpenBootDirJournalRecovery: a read-only look at an image file whose ext4 journal
// needs recovery (left by a crash) cannot mount it, and says why.
func TestOpenBootDirJournalRecovery(t *testing.T) {
	needLoop(t, "mke2fs", "debugfs")
	ctx := context.Background()
	img := ext4Image(t)
	bd, err := OpenBootDir(ctx, BootDirOptions{Device: img, Env: HostEnv(nil)})
	if err != nil {
		t.Fatalf("clean filesystem: %v", err)
	}
	if err := bd.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("debugfs", "-w", "-R", "feature needs_recovery", img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	_, err = OpenBootDir(ctx, BootDirOptions{Device: img, Env: HostEnv(nil)})
	if !errors.Is(err, ErrEnvironment) || err == nil || !strings.Contains(err.Error(), "journal needs recovery") {
		t.Errorf("err = %v", err)
	}
	noLoopFor(t, img)
}
