package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/bootloader"
)

// armTrial arms a trial of centos (grub_id 1) with 3 tries in the boot files of dir; with
// failed, grubenv is as grub leaves it after the third failed try.
func armTrial(t *testing.T, dir string, failed bool) {
	t.Helper()
	bi, err := bootloader.ReadBootInfo(filepath.Join(dir, bootloader.BootInfoPath))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, bootloader.GrubEnvPath))
	env, err := bootloader.ParseEnv(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := bootloader.ArmTrial(env, bi, 1, 3); err != nil {
		t.Fatal(err)
	}
	if failed {
		env.Set("trial_tries", "")
		env.Set("trial_entry", "")
		env.Set("trial_failed", "provisioner-centos")
	}
	envData, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	biData, _ := bi.Encode()
	os.WriteFile(filepath.Join(dir, bootloader.GrubEnvPath), envData, 0o644)
	os.WriteFile(filepath.Join(dir, bootloader.BootInfoPath), biData, 0o644)
}

func flat(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestListConfirmTrial: list shows an entry on trial with its tries; confirm outside it
// says so and changes nothing; a rollback grub made is shown and recorded by the first
// list only; a permanent switch cancels a trial.
func TestListConfirmTrial(t *testing.T) {
	dir := bootDir(t)
	armTrial(t, dir, false)
	r := runCLI(t, "", "list", "--boot-dir", dir)
	if r.code != 0 || !strings.Contains(flat(r.stdout), "0 ubuntu ubuntu-image Linux (ubuntu) default 1 centos centos-image Linux (centos) on trial (3 of 3 tries left)") {
		t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "list", "--json", "--boot-dir", dir)
	var got listJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("list --json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if got.Trial == nil || *got.Trial != (bootloader.TrialStatus{GrubID: 1, Tries: 3, TriesLeft: 3}) || got.Default != 1 || got.Saved != 0 || got.Rollback != nil || got.Mismatch != "" {
		t.Errorf("list --json: %+v", got)
	}
	if !strings.Contains(r.stdout, `"trial": {`) || !strings.Contains(r.stdout, `"tries_left": 3`) || !strings.Contains(r.stdout, `"rollback": null`) {
		t.Errorf("list --json keys:\n%s", r.stdout)
	}

	before, _ := os.ReadFile(filepath.Join(dir, bootloader.GrubEnvPath))
	// grub took every try: list says what the next boot does.
	env, _ := bootloader.ParseEnv(before)
	env.Set("trial_tries", "")
	used, _ := env.Encode()
	os.WriteFile(filepath.Join(dir, bootloader.GrubEnvPath), used, 0o644)
	r = runCLI(t, "", "list", "--boot-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "on trial (0 of 3 tries left)") ||
		!strings.Contains(r.stdout, "trial: no try left for 1 (centos): unless confirmed in it now, the next boot rolls back to 0 (ubuntu)\n") {
		t.Errorf("list, no try left: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	os.WriteFile(filepath.Join(dir, bootloader.GrubEnvPath), before, 0o644)
	r = runCLI(t, "", "confirm", "--boot-dir", dir)
	if r.code != 0 || r.stdout != "trial of centos pending with 3 of 3 tries left, but none of the entries is booted here: nothing changed (confirm runs inside the system on trial)\n" {
		t.Errorf("confirm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "confirm", "--json", "--boot-dir", dir)
	var res bootloader.ConfirmResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 0 || res.Outcome != bootloader.ConfirmNotOnTrial || res.Trial == nil || res.Trial.OSID != "centos" || res.TriesLeft != 3 {
		t.Errorf("confirm --json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, bootloader.GrubEnvPath)); string(after) != string(before) {
		t.Error("confirm outside the trial changed grubenv")
	}

	// A permanent switch cancels the trial.
	r = runCLI(t, "", "switch-default", "centos", "--boot-dir", dir)
	if r.code != 0 || r.stdout != "default is now 1 (centos) (was 0 (ubuntu))\nthe trial of 1 (centos) is cancelled\n" {
		t.Errorf("switch: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "switch-default", "ubuntu", "--boot-dir", dir)
	if r.code != 0 {
		t.Fatalf("switch back: exit %d\n%s", r.code, r.stderr)
	}

	// grub rolled a trial back: the first list shows and records it, the next does not.
	armTrial(t, dir, true)
	r = runCLI(t, "", "list", "--boot-dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "rollback: trial of centos failed after 3 boots; ubuntu boots now (recorded in the history)\n") ||
		strings.Contains(r.stdout, "on trial") {
		t.Errorf("list after the rollback: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "list", "--json", "--boot-dir", dir)
	got = listJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Rollback != nil || got.LastTrial == nil || got.LastTrial.Result != bootloader.TrialRolledBack || got.Trial != nil {
		t.Errorf("second list --json: %v %+v", err, got)
	}
	r = runCLI(t, "", "history", "--boot-dir", dir)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); r.code != 0 || len(lines) != 4 ||
		!strings.HasSuffix(flat(lines[3]), "rollback "+bootloader.NodeName()+" centos (centos-image) -> ubuntu (ubuntu-image) ok; trial of centos failed after 3 boots; ubuntu boots now") {
		t.Errorf("history: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// confirm notes a rollback as well, and says it.
	armTrial(t, dir, true)
	r = runCLI(t, "", "confirm", "--boot-dir", dir)
	if r.code != 0 || r.stdout != "trial of centos failed after 3 boots; ubuntu boots now: nothing to confirm\n" {
		t.Errorf("confirm after a rollback: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "confirm", "--boot-dir", dir)
	if r.code != 0 || r.stdout != "no trial pending; ubuntu is the default (the last trial, of centos, was rolled back): nothing changed\n" {
		t.Errorf("confirm again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestConfirmHelp(t *testing.T) {
	r := runCLI(t, "", "confirm", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "provisioner confirm --json") || !strings.Contains(r.stdout, "--lock-wait") {
		t.Errorf("confirm --help: exit %d\n%s", r.code, r.stdout)
	}
	r = runCLI(t, "", "confirm", "extra")
	if r.code == 0 {
		t.Error("confirm accepted an argument")
	}
}
