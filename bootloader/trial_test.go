package bootloader

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArmTrial(t *testing.T) {
	bi := switchBootInfo()
	env := defaultEnv()
	env.Set("trial_failed", "provisioner-utility")
	if err := ArmTrial(env, bi, 2, 4); err != nil {
		t.Fatal(err)
	}
	if envVar(env, "trial_entry") != "provisioner-utility" || envVar(env, "trial_tries") != "xxxx" || envVar(env, "saved_entry") != "provisioner-centos" {
		t.Errorf("grubenv %v", env.pairs)
	}
	if _, ok := env.Get("trial_failed"); ok {
		t.Error("trial_failed kept")
	}
	if tr := bi.Trial; tr == nil || tr.GrubID != 2 || tr.Tries != 4 || tr.Previous != 0 || tr.Armed.IsZero() {
		t.Errorf("Trial = %+v", bi.Trial)
	}
	// The previous default is saved_entry, which grub boots, even when boot-info.json says
	// otherwise.
	bi = switchBootInfo()
	env = defaultEnv()
	env.Set("saved_entry", "provisioner-utility")
	if err := ArmTrial(env, bi, 1, MaxTrialTries); err != nil || bi.Trial.Previous != 2 {
		t.Errorf("err %v, Trial %+v", err, bi.Trial)
	}

	for _, tc := range []struct {
		name          string
		grubID, tries int
		want          string
	}{
		{"no try", 1, 0, "0 tries"},
		{"too many", 1, MaxTrialTries + 1, "want 1 to 10"},
		{"unknown", 7, 3, "boot entry 7"},
		{"default", 0, 3, "is the default"},
		{"no menuentry_id", 2, 3, "no menuentry_id"},
	} {
		bi := switchBootInfo()
		bi.Elements[2].MenuentryID = ""
		env := defaultEnv()
		before, _ := env.Encode()
		err := ArmTrial(env, bi, tc.grubID, tc.tries)
		if !errors.Is(err, ErrTrial) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
		if after, _ := env.Encode(); string(after) != string(before) || bi.Trial != nil {
			t.Errorf("%s: changed env or boot info", tc.name)
		}
	}
	if err := ArmTrial(defaultEnv(), switchBootInfo(), 9, 1); !errors.Is(err, ErrUnknownEntry) {
		t.Errorf("unknown entry: %v", err)
	}
}

// trialDir writes a boot directory with a trial of ubuntu (grub_id 1) armed with tries,
// after grub counted used of them down; centos is the default.
func trialDir(t *testing.T, tries, used int) string {
	t.Helper()
	m, bi, env := armed(t, tries)
	for range used {
		env = m.boot(env, nil).env
	}
	return writeBootDir(t, bi, env)
}

// rolledBackDir writes a boot directory where grub rolled back a trial of ubuntu of 3 tries.
func rolledBackDir(t *testing.T) string {
	t.Helper()
	m, bi, env := armed(t, 3)
	for range 4 {
		env = m.boot(env, nil).env
	}
	return writeBootDir(t, bi, env)
}

func TestStatusTrial(t *testing.T) {
	st, err := List(trialDir(t, 3, 1), "bbbb-root-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Trial == nil || *st.Trial != (TrialStatus{GrubID: 1, Tries: 3, TriesLeft: 2}) || st.Default != 1 || st.Saved != 0 || st.Mismatch != "" || st.FailedTrial != nil {
		t.Errorf("List = %+v (trial %+v)", st, st.Trial)
	}
	// boot-info.json written, grubenv not yet (a cut commit of a reload): reported.
	dir := writeBootDir(t, func() *BootInfo { bi := switchBootInfo(); bi.Trial = &Trial{GrubID: 1, Tries: 3}; return bi }(), defaultEnv())
	if st, _ := List(dir, ""); st.Trial != nil || st.Default != 0 || !strings.Contains(st.Mismatch, "records a trial of grub_id 1 that grubenv does not hold") {
		t.Errorf("trial only in boot-info.json: %+v", st)
	}
	// grubenv's trial without boot-info.json's: shown, tries unknown, and reported.
	env := defaultEnv()
	env.Set("trial_entry", "provisioner-utility")
	env.Set("trial_tries", "x")
	st, _ = List(writeBootDir(t, switchBootInfo(), env), "")
	if st.Trial == nil || st.Trial.GrubID != 2 || st.Trial.Tries != 0 || st.Default != 2 || !strings.Contains(st.Mismatch, "boot-info.json records no trial") {
		t.Errorf("trial only in grubenv: %+v", st)
	}
	env.Set("trial_entry", "provisioner-gone")
	st, _ = List(writeBootDir(t, switchBootInfo(), env), "")
	if st.Trial != nil || st.Default != 0 || !strings.Contains(st.Mismatch, `trial_entry "provisioner-gone" names no entry`) {
		t.Errorf("unknown trial entry: %+v", st)
	}
	// Without saved_entry, a trial still boots its entry, and the rollback the plan's
	// default (grub.cfg's, when there is one).
	env = &Env{}
	bi := switchBootInfo()
	if err := ArmTrial(env, bi, 2, 2); err != nil {
		t.Fatal(err)
	}
	dir = writeBootDir(t, bi, env)
	os.WriteFile(filepath.Join(dir, "boot/grub/grub.cfg"), Render(modelConfig()), 0o644)
	if st, _ := List(dir, ""); st.Default != 2 || st.Saved != 1 {
		t.Errorf("no saved_entry: Default %d Saved %d, want the trial 2 and grub.cfg's default 1", st.Default, st.Saved)
	}
}

func TestNoteRollback(t *testing.T) {
	ctx := context.Background()
	dir := rolledBackDir(t)
	st, err := List(dir, "")
	if err != nil || st.FailedTrial == nil || st.Default != 0 {
		t.Fatalf("List before: %v %+v", err, st)
	}
	rec, err := NoteRollback(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := HistoryEntry{Operation: "rollback", From: "ubuntu", To: "centos", Result: ResultOK, Detail: "trial of ubuntu failed after 3 boots; centos boots now", Tries: 3}
	if rec == nil || rec.Time.IsZero() || rec.Operation != want.Operation || rec.From != want.From || rec.To != want.To || rec.Result != want.Result || rec.Detail != want.Detail || rec.Tries != want.Tries {
		t.Fatalf("record %+v", rec)
	}
	env := readEnv(t, dir)
	for _, k := range []string{"trial_entry", "trial_tries", "trial_failed"} {
		if v, ok := env.Get(k); ok {
			t.Errorf("%s=%q left", k, v)
		}
	}
	bi := readInfo(t, dir)
	if bi.Trial != nil || bi.LastTrial == nil || bi.LastTrial.GrubID != 1 || bi.LastTrial.Tries != 3 || bi.LastTrial.Result != TrialRolledBack || bi.LastTrial.At.IsZero() || bi.CurrentElement != 0 {
		t.Errorf("boot info %+v, last trial %+v", bi, bi.LastTrial)
	}
	st, _ = List(dir, "")
	if st.FailedTrial != nil || st.Trial != nil || st.Mismatch != "" || st.LastTrial == nil || st.Default != 0 {
		t.Errorf("List after: %+v", st)
	}
	// Once only.
	before := snapshot(t, dir)
	if rec, err := NoteRollback(ctx, dir); rec != nil || err != nil {
		t.Errorf("second note: %+v %v", rec, err)
	}
	assertUntouched(t, dir, before)
	if h, _ := ReadHistory(dir); len(h.Entries) != 1 {
		t.Errorf("history %+v", h)
	}
	// Nothing to note: nothing written.
	dir = trialDir(t, 3, 1)
	before = snapshot(t, dir)
	if rec, err := NoteRollback(ctx, dir); rec != nil || err != nil {
		t.Errorf("pending trial: %+v %v", rec, err)
	}
	assertUntouched(t, dir, before)
}

func TestConfirmOnTrial(t *testing.T) {
	ctx := context.Background()
	dir := trialDir(t, 3, 1)
	res, err := Confirm(ctx, dir, "BBBB-ROOT-1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != ConfirmConfirmed || res.Trial == nil || res.Trial.GrubID != 1 || res.Default == nil || res.Default.GrubID != 1 ||
		res.Message != "ubuntu confirmed at try 1 of 3: it is the default now (was centos)" {
		t.Errorf("result %+v", res)
	}
	env := readEnv(t, dir)
	if envVar(env, "saved_entry") != "provisioner-ubuntu" || slices.Contains(env.Keys(), "trial_entry") || slices.Contains(env.Keys(), "trial_tries") {
		t.Errorf("grubenv %v", env.pairs)
	}
	bi := readInfo(t, dir)
	if bi.CurrentElement != 1 || bi.Trial != nil || bi.LastTrial == nil || bi.LastTrial.Result != TrialConfirmed || bi.LastTrial.Tries != 3 {
		t.Errorf("boot info %+v", bi)
	}
	hl, _ := ReadHistory(dir)
	h := hl.Entries
	if len(h) != 1 || h[0].Operation != "confirm" || h[0].From != "centos" || h[0].To != "ubuntu" || h[0].Result != "ok" || h[0].Tries != 3 {
		t.Errorf("history %+v", h)
	}
	// grub now boots ubuntu by default, with no trial and no fallback.
	r := modelConfig().model().boot(env, func(string) bool { return true })
	if r.entry != 1 || r.fellBack {
		t.Errorf("boot after confirm: %+v", r)
	}
	if st, _ := List(dir, "bbbb-root-1"); st.Trial != nil || st.Default != 1 || st.Mismatch != "" {
		t.Errorf("List after: %+v", st)
	}
	// Again: nothing to confirm, nothing written.
	before := snapshot(t, dir)
	res, err = Confirm(ctx, dir, "bbbb-root-1")
	if err != nil || res.Outcome != ConfirmNoTrial ||
		res.Message != "no trial pending; ubuntu is the default; ubuntu is booted now (the last trial, of ubuntu, was confirmed): nothing changed" {
		t.Errorf("second confirm: %v %+v", err, res)
	}
	assertUntouched(t, dir, before)
}

// TestConfirmOnLastTry: the boot that used the last try can still confirm.
func TestConfirmOnLastTry(t *testing.T) {
	dir := trialDir(t, 2, 2)
	res, err := Confirm(context.Background(), dir, "bbbb-root-1")
	if err != nil || res.Outcome != ConfirmConfirmed || res.Message != "ubuntu confirmed at try 2 of 2: it is the default now (was centos)" {
		t.Errorf("%v %+v", err, res)
	}
}

func TestConfirmElsewhere(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, booted string
		used         int
		want         string
	}{
		{"previous default", "aaaa-root-0", 1, "trial of ubuntu pending with 2 of 3 tries left, but centos is booted now: nothing changed (confirm runs inside the system on trial)"},
		{"unknown system", "", 0, "trial of ubuntu pending with 3 of 3 tries left, but none of the entries is booted here: nothing changed (confirm runs inside the system on trial)"},
		{"no try left", "cccc-root-2", 3, "trial of ubuntu pending with no try left (the next boot rolls back to centos), but utility is booted now: nothing changed (confirm runs inside the system on trial)"},
	} {
		dir := trialDir(t, 3, tc.used)
		before := snapshot(t, dir)
		res, err := Confirm(ctx, dir, tc.booted)
		if err != nil || res.Outcome != ConfirmNotOnTrial || res.Message != tc.want || res.Trial == nil || res.Trial.GrubID != 1 || res.TriesLeft != 3-tc.used {
			t.Errorf("%s: %v %+v", tc.name, err, res)
		}
		assertUntouched(t, dir, before)
	}
	dir := writeBootDir(t, switchBootInfo(), defaultEnv())
	before := snapshot(t, dir)
	res, err := Confirm(ctx, dir, "aaaa-root-0")
	if err != nil || res.Outcome != ConfirmNoTrial || res.Message != "no trial pending; centos is the default; centos is booted now: nothing changed" {
		t.Errorf("no trial: %v %+v", err, res)
	}
	assertUntouched(t, dir, before)
}

func TestConfirmAfterRollback(t *testing.T) {
	ctx := context.Background()
	dir := rolledBackDir(t)
	// Even from inside the failed entry (booted by hand with --once), the rollback stands.
	res, err := Confirm(ctx, dir, "bbbb-root-1")
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != ConfirmRolledBack || res.Noted == nil || res.Trial == nil || res.Trial.GrubID != 1 || res.Tries != 3 ||
		res.Message != "trial of ubuntu failed after 3 boots; centos boots now: nothing to confirm" {
		t.Errorf("result %+v", res)
	}
	if bi := readInfo(t, dir); bi.CurrentElement != 0 || envVar(readEnv(t, dir), "saved_entry") != "provisioner-centos" {
		t.Error("the default changed")
	}
	res, err = Confirm(ctx, dir, "bbbb-root-1")
	if err != nil || res.Outcome != ConfirmNoTrial || !strings.Contains(res.Message, "(the last trial, of ubuntu, was rolled back)") {
		t.Errorf("second confirm: %v %+v", err, res)
	}
	if h, _ := ReadHistory(dir); len(h.Entries) != 1 || h.Entries[0].Operation != "rollback" {
		t.Errorf("history %+v", h)
	}
}

func TestSwitchDefaultTrial(t *testing.T) {
	ctx := context.Background()
	// --once leaves the trial alone.
	dir := trialDir(t, 3, 1)
	res, err := SwitchDefault(ctx, dir, SwitchOptions{Entry: "utility", Once: true})
	if err != nil || res.CancelledTrial != nil {
		t.Fatalf("%v %+v", err, res)
	}
	env := readEnv(t, dir)
	if envVar(env, "trial_entry") != "provisioner-ubuntu" || envVar(env, "trial_tries") != "xx" || readInfo(t, dir).Trial == nil {
		t.Errorf("--once touched the trial: %v", env.pairs)
	}
	// A permanent switch cancels it, even to the default it would roll back to.
	res, err = SwitchDefault(ctx, dir, SwitchOptions{Entry: "centos"})
	if err != nil || res.Unchanged || res.CancelledTrial == nil || res.CancelledTrial.GrubID != 1 || res.From.GrubID != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	env = readEnv(t, dir)
	if slices.Contains(env.Keys(), "trial_entry") || slices.Contains(env.Keys(), "trial_tries") || readInfo(t, dir).Trial != nil {
		t.Errorf("trial not cancelled: %v", env.pairs)
	}
	hl, _ := ReadHistory(dir)
	h := hl.Entries
	if len(h) != 2 || h[1].Result != "ok" || h[1].Detail != "trial of ubuntu cancelled" {
		t.Errorf("history %+v", h)
	}
	if st, _ := List(dir, ""); st.Trial != nil || st.Default != 0 || st.Mismatch != "" {
		t.Errorf("List %+v", st)
	}

	// A rollback grub made is noted before the switch.
	dir = rolledBackDir(t)
	res, err = SwitchDefault(ctx, dir, SwitchOptions{Entry: "utility"})
	if err != nil || res.NotedRollback == nil || res.CancelledTrial != nil {
		t.Fatalf("%v %+v", err, res)
	}
	hl, _ = ReadHistory(dir)
	h = hl.Entries
	if len(h) != 2 || h[0].Operation != "rollback" || h[0].To != "centos" || h[1].Operation != "switch-default" || h[1].Result != "ok" {
		t.Errorf("history %+v", h)
	}
}

// TestTrialGrubEditenv: grub's own tool reads the trial the provisioner arms, and a rollback
// written by it (as grub's save_env writes one: emptied values, not removed) is noted.
func TestTrialGrubEditenv(t *testing.T) {
	dir := trialDir(t, 3, 0)
	envPath := filepath.Join(dir, GrubEnvPath)
	got := grubEditenv(t, envPath, "list")
	for _, want := range []string{"saved_entry=provisioner-centos\n", "trial_entry=provisioner-ubuntu\n", "trial_tries=xxx\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("grub-editenv list lacks %q:\n%s", want, got)
		}
	}
	grubEditenv(t, envPath, "set", "trial_tries=", "trial_entry=", "trial_failed=provisioner-ubuntu")
	rec, err := NoteRollback(context.Background(), dir)
	if err != nil || rec == nil || rec.Detail != "trial of ubuntu failed after 3 boots; centos boots now" {
		t.Fatalf("%v %+v", err, rec)
	}
	if got := grubEditenv(t, envPath, "list"); got != "saved_entry=provisioner-centos\n" {
		t.Errorf("after the note, grub-editenv list:\n%s", got)
	}
}
