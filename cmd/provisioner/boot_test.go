package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
)

// bootDir writes the boot files of a two-image deploy into a fresh directory.
func bootDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bi := &bootloader.BootInfo{CurrentElement: 0, MultibootPartition: "0b5e1c3a-0000-4000-8000-000000000001"}
	for i, name := range []string{"ubuntu", "centos"} {
		bi.Elements = append(bi.Elements, bootloader.Element{
			GrubID: i, ImageName: name + "-image", OSID: name, BootName: "Linux (" + name + ")",
			RootUUID: "0b5e1c3a-0000-4000-8000-00000000001" + string(rune('0'+i)), MenuentryID: "provisioner-" + name,
		})
	}
	data, err := bi.Encode()
	if err != nil {
		t.Fatal(err)
	}
	env := &bootloader.Env{}
	env.Set("saved_entry", "provisioner-ubuntu")
	envData, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "boot/grub"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, bootloader.BootInfoPath), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bootloader.GrubEnvPath), envData, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestListSwitchHistory(t *testing.T) {
	dir := bootDir(t)
	r := runCLI(t, "", "list", "--boot-dir", dir)
	if r.code != 0 || !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "0 ubuntu ubuntu-image Linux (ubuntu) default 1 centos") {
		t.Fatalf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = runCLI(t, "", "switch-default", "centos", "--boot-dir", dir)
	if r.code != 0 || r.stdout != "default is now 1 (centos) (was 0 (ubuntu))\n" {
		t.Fatalf("switch: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "switch-default", "1", "--boot-dir", dir)
	if r.code != 0 || r.stdout != "1 (centos) is already the default\n" {
		t.Errorf("switch again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "switch-default", "ubuntu-image", "--once", "--boot-dir", dir)
	if r.code != 0 || r.stdout != "0 (ubuntu) boots once, at the next boot; then 1 (centos) again\n" {
		t.Errorf("switch --once: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = runCLI(t, "", "list", "--json", "--boot-dir", dir)
	var got engine.BootDocument
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("list --json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if got.Saved != 1 || got.Default != 0 || got.Pending == nil || *got.Pending != 0 || got.Booted != nil || got.Mismatch != "" || len(got.Elements) != 2 {
		t.Errorf("list --json: %+v", got)
	}
	r = runCLI(t, "", "list", "--boot-dir", dir)
	if !strings.Contains(r.stdout, "next boot (once)") {
		t.Errorf("list does not show the pending one-shot entry:\n%s", r.stdout)
	}

	before, _ := os.ReadFile(filepath.Join(dir, bootloader.GrubEnvPath))
	r = runCLI(t, "", "switch-default", "fedora", "--boot-dir", dir)
	if r.code != engine.ExitFailure || !strings.Contains(r.stderr, `boot entry "fedora"`) || !strings.Contains(r.stderr, "0 (ubuntu, ubuntu-image); 1 (centos, centos-image)") {
		t.Errorf("unknown entry: exit %d\n%s", r.code, r.stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, bootloader.GrubEnvPath)); string(after) != string(before) {
		t.Error("an unknown entry changed grubenv")
	}

	r = runCLI(t, "", "history", "--boot-dir", dir)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	words := func(i int) string {
		if i >= len(lines) {
			return ""
		}
		return strings.Join(strings.Fields(lines[i])[1:], " ")
	}
	node := bootloader.NodeName()
	if r.code != 0 || len(lines) != 4 || words(1) != "switch-default "+node+" ubuntu (ubuntu-image) -> centos (centos-image) ok" ||
		words(2) != "switch-default "+node+" centos: centos-image ok; unchanged: already the default" ||
		words(3) != "switch-default --once "+node+" centos (centos-image) -> ubuntu (ubuntu-image) ok" {
		t.Errorf("history: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "history", "--json", "--boot-dir", dir)
	var hist historyJSON
	if err := json.Unmarshal([]byte(r.stdout), &hist); err != nil || len(hist.Entries) != 3 || hist.Entries[0].ToImage == nil ||
		hist.Entries[0].ToImage.ImageName != "centos-image" || hist.Entries[0].Node != node {
		t.Errorf("history --json: %v\n%s", err, r.stdout)
	}
}

func TestBootDirErrors(t *testing.T) {
	empty := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"list", "--boot-dir", empty}, engine.ExitEnvironment, "no boot-info.json there"},
		{[]string{"list", "--boot-dir", empty, "--device", "/dev/null"}, engine.ExitFailure, "exclude each other"},
		{[]string{"switch-default", "--boot-dir", empty}, engine.ExitFailure, "accepts 1 arg"},
		{[]string{"history", "--device", filepath.Join(empty, "nope.img")}, engine.ExitEnvironment, "nope.img"},
	} {
		r := runCLI(t, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
}

// TestSwitchTamperedBootInfo: a boot-info.json whose grub_dir leads out of the boot files'
// directory makes switch-default exit 4 naming it, with nothing written there; list too.
func TestSwitchTamperedBootInfo(t *testing.T) {
	dir := bootDir(t)
	outside := filepath.Join(filepath.Dir(dir), "outside-"+filepath.Base(dir))
	os.MkdirAll(outside, 0o755)
	defer os.RemoveAll(outside)
	bi, err := bootloader.ReadBootInfo(filepath.Join(dir, bootloader.BootInfoPath))
	if err != nil {
		t.Fatal(err)
	}
	bi.GrubDir = "../" + filepath.Base(outside)
	data, _ := bi.Encode()
	os.WriteFile(filepath.Join(dir, bootloader.BootInfoPath), data, 0o644)
	for _, args := range [][]string{
		{"switch-default", "centos", "--boot-dir", dir},
		{"switch-default", "centos", "--once", "--boot-dir", dir},
		{"list", "--boot-dir", dir},
	} {
		r := runCLI(t, "", args...)
		if r.code != engine.ExitImage || !strings.Contains(r.stderr, `grub_dir "../`) {
			t.Errorf("%v: exit %d, want %d naming grub_dir\n%s", args, r.code, engine.ExitImage, r.stderr)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("written outside the boot files' directory: %v", entries)
	}
}

// TestCorruptGrubEnvCLI: list shows the menu and says grubenv is unreadable; switch-default
// writes a valid grubenv and the history records the rewrite.
func TestCorruptGrubEnvCLI(t *testing.T) {
	dir := bootDir(t)
	os.WriteFile(filepath.Join(dir, bootloader.GrubEnvPath), []byte("# GRUB Environment Block\nsaved_entry=provisioner-centos\\"), 0o644)
	r := runCLI(t, "", "list", "--boot-dir", dir)
	if flat := strings.Join(strings.Fields(r.stdout), " "); r.code != 0 || !strings.Contains(flat, "0 ubuntu ubuntu-image Linux (ubuntu) default 1 centos") ||
		!strings.Contains(flat, "grubenv is unreadable") {
		t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "list", "--json", "--boot-dir", dir)
	var got engine.BootDocument
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 || !strings.Contains(got.GrubEnv, "unreadable") || len(got.Elements) != 2 {
		t.Errorf("list --json: exit %d, %v %+v", r.code, err, got)
	}
	r = runCLI(t, "", "switch-default", "centos", "--boot-dir", dir)
	if r.code != 0 || r.stdout != "default is now 1 (centos) (was 0 (ubuntu))\n" || !strings.Contains(r.stderr, "replaced by a valid one") {
		t.Fatalf("switch: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	data, _ := os.ReadFile(filepath.Join(dir, bootloader.GrubEnvPath))
	env, err := bootloader.ParseEnv(data)
	if err != nil || len(data) != bootloader.EnvSize {
		t.Fatalf("grubenv after the switch: %v (%d bytes)", err, len(data))
	}
	if v, _ := env.Get("saved_entry"); v != "provisioner-centos" {
		t.Errorf("saved_entry = %q", v)
	}
	r = runCLI(t, "", "history", "--boot-dir", dir)
	if !strings.Contains(r.stdout, "ok; grubenv rewritten: grub environment") {
		t.Errorf("history does not record the rewrite:\n%s", r.stdout)
	}
	r = runCLI(t, "", "list", "--boot-dir", dir)
	if r.code != 0 || strings.Contains(r.stdout, "warning") {
		t.Errorf("list after the switch: exit %d\n%s", r.code, r.stdout)
	}
}
