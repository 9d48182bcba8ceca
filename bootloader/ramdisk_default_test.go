package bootloader

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// singleBootInfo is a node with one image, centos, and the multiboot partition.
func singleBootInfo() *BootInfo {
	bi := switchBootInfo()
	bi.Elements = bi.Elements[:1]
	return bi
}

// TestReloadToRamdisk follows a single-image node reloaded by the kept ramdisk: the
// default moves to the ramdisk before the root is rewritten, the trial falls back to it,
// and a confirmed trial makes the image the default again.
func TestReloadToRamdisk(t *testing.T) {
	ctx := context.Background()
	dir := writeBootDir(t, singleBootInfo(), defaultEnv())
	moveTo := RamdiskGrubID
	moved, err := BeginReload(ctx, dir, 0, &moveTo, "")
	if err != nil {
		t.Fatal(err)
	}
	if moved == nil || moved.GrubID != RamdiskGrubID {
		t.Fatalf("moved = %+v", moved)
	}
	if v := envVar(readEnv(t, dir), "saved_entry"); v != RamdiskEntryID {
		t.Errorf("saved_entry = %q", v)
	}
	st, err := List(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Default != RamdiskGrubID || st.Saved != RamdiskGrubID || st.Mismatch != "" || st.Elements[0].State != ElementReloading {
		t.Errorf("status while reloading: %+v", st)
	}
	hist, _ := os.ReadFile(filepath.Join(dir, HistoryPath))
	if !strings.Contains(string(hist), "default moved from centos to the deploy ramdisk while centos is reloaded") {
		t.Errorf("history:\n%s", hist)
	}

	menu := modelConfig()
	menu.Entries = menu.Entries[:1]
	menu.Default = 0
	n := singleBootInfo().Elements[0]
	n.Kernel = "/boot/vmlinuz-5.15"
	bi, err := CommitReload(ctx, dir, menu, Reloaded{GrubID: 0, Element: n, Tries: 2})
	if err != nil {
		t.Fatal(err)
	}
	if bi.Trial == nil || bi.Trial.Previous != RamdiskGrubID || bi.CurrentElement != 0 {
		t.Errorf("trial armed: %+v, current %d", bi.Trial, bi.CurrentElement)
	}
	env := readEnv(t, dir)
	if envVar(env, "trial_entry") != "provisioner-centos" || envVar(env, "saved_entry") != RamdiskEntryID {
		t.Errorf("grubenv %v", env.pairs)
	}

	// grub uses both tries, then gives up on the trial: the ramdisk boots and notes it.
	m := grubModel{ids: []string{"provisioner-centos", RamdiskEntryID}}
	for range 3 {
		env = m.boot(env, nil).env
	}
	if envVar(env, "trial_failed") != "provisioner-centos" {
		t.Fatalf("grubenv after the tries %v", env.pairs)
	}
	writeEnvFile(t, dir, env)
	rec, err := NoteRollback(ctx, dir)
	if err != nil || rec == nil {
		t.Fatalf("NoteRollback: %v, %v", rec, err)
	}
	if want := "trial of centos failed after 2 boots; the deploy ramdisk boots now"; rec.Detail != want {
		t.Errorf("rollback %q, want %q", rec.Detail, want)
	}
}

// TestConfirmAfterRamdiskReload: confirming the trial inside the reloaded image makes it
// the default again, from the ramdisk.
func TestConfirmAfterRamdiskReload(t *testing.T) {
	ctx := context.Background()
	env := defaultEnv()
	env.Set("saved_entry", RamdiskEntryID)
	bi := singleBootInfo()
	if err := ArmTrial(env, bi, 0, 3); err != nil {
		t.Fatal(err)
	}
	dir := writeBootDir(t, bi, env)
	res, err := Confirm(ctx, dir, "aaaa-root-0")
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != ConfirmConfirmed || res.Default == nil || res.Default.OSID != "centos" {
		t.Errorf("confirm: %+v", res)
	}
	if v := envVar(readEnv(t, dir), "saved_entry"); v != "provisioner-centos" {
		t.Errorf("saved_entry = %q", v)
	}
	hist, _ := os.ReadFile(filepath.Join(dir, HistoryPath))
	if !strings.Contains(string(hist), `"from":"the deploy ramdisk"`) {
		t.Errorf("history:\n%s", hist)
	}
}

func writeEnvFile(t *testing.T, dir string, env *Env) {
	t.Helper()
	data, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, GrubEnvPath), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStageRamdiskBoot: the ramdisk boots once, then the default again.
func TestStageRamdiskBoot(t *testing.T) {
	ctx := context.Background()
	dir := writeBootDir(t, switchBootInfo(), defaultEnv())
	if err := StageRamdiskBoot(ctx, dir, "reload of centos from http://x/c.tar.zst staged", true, nil); err != nil {
		t.Fatal(err)
	}
	st, err := List(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Default != RamdiskGrubID || st.Pending == nil || *st.Pending != RamdiskGrubID || st.Saved != 0 || st.Mismatch != "" {
		t.Errorf("status: %+v", st)
	}
	m := grubModel{ids: []string{"provisioner-centos", "provisioner-ubuntu", "provisioner-utility", RamdiskEntryID}}
	first := m.boot(readEnv(t, dir), nil)
	second := m.boot(first.env, nil)
	if first.entry != 3 || second.entry != 0 {
		t.Errorf("boots %d then %d, want the ramdisk (3) then centos (0)", first.entry, second.entry)
	}
	hist, _ := os.ReadFile(filepath.Join(dir, HistoryPath))
	if !strings.Contains(string(hist), `"operation":"boot-ramdisk --once","to":"the deploy ramdisk","result":"ok","detail":"reload of centos`) {
		t.Errorf("history:\n%s", hist)
	}
}
