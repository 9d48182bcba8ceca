package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/bootloader"
	"golang.org/x/sys/unix"
)

// writeTrialFiles writes, in the boot directory dir, the boot files of two images, tiny-a
// (the default) and tiny-b, with a trial of tiny-b of 3 tries; rolledBack makes them as
// grub leaves them after the third failed try.
func writeTrialFiles(t *testing.T, dir string, rolledBack bool) {
	t.Helper()
	bi := &bootloader.BootInfo{MultibootPartition: "mb-uuid"}
	for i, name := range []string{"tiny-a", "tiny-b"} {
		bi.Elements = append(bi.Elements, bootloader.Element{GrubID: i, OSID: name, ImageName: name,
			BootName: "Linux (" + name + ")", RootUUID: "root-" + name, MenuentryID: "provisioner-" + name})
	}
	env := &bootloader.Env{}
	env.Set("saved_entry", "provisioner-tiny-a")
	if err := bootloader.ArmTrial(env, bi, 1, 3); err != nil {
		t.Fatal(err)
	}
	if rolledBack {
		env.Set("trial_tries", "")
		env.Set("trial_entry", "")
		env.Set("trial_failed", "provisioner-tiny-b")
	}
	envData, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	biData, err := bi.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "boot/grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, bootloader.GrubEnvPath), envData, 0o644)
	os.WriteFile(filepath.Join(dir, bootloader.BootInfoPath), biData, 0o644)
}

// TestConfirmLive: on a node, confirm run inside the entry on trial (by root=UUID on the
// kernel command line) makes it the default; run in another entry it changes nothing.
func TestConfirmLive(t *testing.T) {
	ctx := context.Background()
	env, mb := fakeNode(t, func(argv []string) (string, int) { return "", -1 })
	writeTrialFiles(t, mb, false)
	cmdline := filepath.Join(env.Sys.ProcRoot, "cmdline")

	os.WriteFile(cmdline, []byte("root=UUID=root-tiny-a ro\n"), 0o644)
	res, err := Confirm(ctx, BootDirOptions{Env: env})
	if err != nil || res.Outcome != bootloader.ConfirmNotOnTrial || res.Booted == nil || res.Booted.OSID != "tiny-a" {
		t.Fatalf("in tiny-a: %v %+v", err, res)
	}

	os.WriteFile(cmdline, []byte("root=UUID=root-tiny-b ro\n"), 0o644)
	res, err = Confirm(ctx, BootDirOptions{Env: env})
	if err != nil || res.Outcome != bootloader.ConfirmConfirmed || res.Default == nil || res.Default.OSID != "tiny-b" {
		t.Fatalf("in tiny-b: %v %+v", err, res)
	}
	l, err := List(ctx, BootDirOptions{Env: env})
	if err != nil || l.Status.Trial != nil || l.Status.Saved != 1 || l.Status.Booted == nil || *l.Status.Booted != 1 || l.Rollback != nil {
		t.Errorf("list after: %v %+v", err, l)
	}

	// Offline (--boot-dir), nothing is booted from the boot files: nothing to confirm.
	dir := t.TempDir()
	writeTrialFiles(t, dir, false)
	res, err = Confirm(ctx, BootDirOptions{Dir: dir, Env: env})
	if err != nil || res.Outcome != bootloader.ConfirmNotOnTrial || res.Booted != nil {
		t.Errorf("--boot-dir: %v %+v", err, res)
	}
}

// TestListNotesRollback: the first list or history after grub rolled back a trial records
// it, once, and says so.
func TestListNotesRollback(t *testing.T) {
	ctx := context.Background()
	env, mb := fakeNode(t, func(argv []string) (string, int) { return "", -1 })
	writeTrialFiles(t, mb, true)
	l, err := List(ctx, BootDirOptions{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	rb := l.Rollback
	if rb == nil || !rb.Recorded || rb.NotRecorded != "" || rb.GrubID != 1 || rb.Tries != 3 ||
		rb.Message != "trial of tiny-b failed after 3 boots; tiny-a boots now" {
		t.Fatalf("rollback %+v", rb)
	}
	st := l.Status
	if st.FailedTrial != nil || st.LastTrial == nil || st.LastTrial.Result != bootloader.TrialRolledBack || st.Default != 0 || st.Mismatch != "" {
		t.Errorf("status %+v", st)
	}
	h, err := History(ctx, BootDirOptions{Env: env})
	if err != nil || h.Rollback != nil || len(h.Entries) != 1 || h.Entries[0].Operation != "rollback" || h.Entries[0].Detail != rb.Message {
		t.Errorf("history: %v %+v", err, h)
	}
	if l, err := List(ctx, BootDirOptions{Env: env}); err != nil || l.Rollback != nil {
		t.Errorf("second list: %v %+v", err, l.Rollback)
	}

	// History notes it too.
	writeTrialFiles(t, mb, true)
	h, err = History(ctx, BootDirOptions{Env: env})
	if err != nil || h.Rollback == nil || !h.Rollback.Recorded || len(h.Entries) != 2 || h.Entries[1].Operation != "rollback" {
		t.Errorf("history: %v %+v", err, h)
	}
}

// TestListRollbackReadOnly: boot files that cannot be written show the rollback, say why
// it is not recorded, and are left as they were.
func TestListRollbackReadOnly(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root and no -short")
	}
	ctx := context.Background()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Error(err)
		}
	})
	writeTrialFiles(t, dir, true)
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	l, err := List(ctx, BootDirOptions{Dir: dir, Env: HostEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if rb := l.Rollback; rb == nil || rb.Recorded || !strings.Contains(rb.NotRecorded, "read-only") ||
		rb.Message != "trial of tiny-b failed after 3 boots; tiny-a boots now" || l.Status.FailedTrial == nil {
		t.Errorf("rollback %+v, status %+v", rb, l.Status)
	}
}
