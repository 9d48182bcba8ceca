package bootloader

import (
	"context"
	"strings"
	"testing"
)

// updatedInfo is switchBootInfo after an update that removed utility and put a new
// image, fedora, before ubuntu: the elements renumbered by menu position.
func updatedInfo() *BootInfo {
	bi := switchBootInfo()
	bi.Elements = []Element{bi.Elements[0],
		{GrubID: 1, OSID: "fedora", BootName: "Fedora (fedora)", MenuentryID: "provisioner-fedora", Kernel: "/boot/vmlinuz-6.8"},
		bi.Elements[1]}
	bi.Elements[2].GrubID = 2
	return bi
}

// updateMenu is a menu with an entry per element of bi.
func updateMenu(bi *BootInfo) Config {
	var c Config
	for _, e := range bi.Elements {
		c.Entries = append(c.Entries, MenuEntry{ID: e.MenuentryID, Title: e.BootName, Kernel: e.Kernel})
	}
	return c
}

// TestCommitUpdateOnceAndTrial: a one-shot entry of an image still in the menu stays
// pending under its new number; one of a removed image is dropped; a trial of the new
// image is armed with the default to fall back to; the history records the update.
func TestCommitUpdateOnceAndTrial(t *testing.T) {
	ctx := context.Background()
	env := defaultEnv()
	env.Set("next_entry", "provisioner-ubuntu")
	dir := writeBootDir(t, switchBootInfo(), env)
	bi, err := CommitUpdate(ctx, dir, Updated{Menu: updateMenu(updatedInfo()), Info: updatedInfo(), Default: "centos", Trial: "fedora", Tries: 2,
		Images: []ImageChange{{Name: "fedora", To: &ImageVersion{ImageName: "Fedora"}}, {Name: "utility", From: &ImageVersion{ImageName: "debian-12"}}}})
	if err != nil {
		t.Fatal(err)
	}
	got := readEnv(t, dir)
	next, _ := got.Get("next_entry")
	saved, _ := got.Get("saved_entry")
	trial, _ := got.Get("trial_entry")
	if next != "provisioner-ubuntu" || bi.PendingOnce == nil || *bi.PendingOnce != 2 || saved != "provisioner-centos" || trial != "provisioner-fedora" ||
		bi.Trial == nil || bi.Trial.GrubID != 1 || bi.Trial.Previous != 0 || bi.CurrentElement != 0 {
		t.Errorf("next %q (pending %v), saved %q, trial %q %+v, current %d", next, bi.PendingOnce, saved, trial, bi.Trial, bi.CurrentElement)
	}
	if info := readInfo(t, dir); len(info.Elements) != 3 || info.Elements[1].OSID != "fedora" {
		t.Errorf("boot-info.json: %+v", info.Elements)
	}
	h, err := ReadHistory(dir)
	if err != nil || len(h.Entries) != 1 {
		t.Fatalf("history %+v, %v", h, err)
	}
	if e := h.Entries[0]; e.Operation != "update" || e.Tries != 2 || len(e.Images) != 2 || !strings.Contains(e.Detail, "fedora boots next on trial (2 tries), then centos") {
		t.Errorf("history record %+v", e)
	}

	env = defaultEnv()
	env.Set("next_entry", "provisioner-utility")
	dir = writeBootDir(t, switchBootInfo(), env)
	bi, err = CommitUpdate(ctx, dir, Updated{Menu: updateMenu(updatedInfo()), Info: updatedInfo(), Default: "ubuntu"})
	if err != nil {
		t.Fatal(err)
	}
	got = readEnv(t, dir)
	next, _ = got.Get("next_entry")
	saved, _ = got.Get("saved_entry")
	if next != "" || bi.PendingOnce != nil || saved != "provisioner-ubuntu" || bi.CurrentElement != 2 || bi.Trial != nil {
		t.Errorf("removed one-shot: next %q (pending %v), saved %q, current %d, trial %+v", next, bi.PendingOnce, saved, bi.CurrentElement, bi.Trial)
	}
	if _, err := CommitUpdate(ctx, dir, Updated{Menu: updateMenu(updatedInfo()), Info: updatedInfo(), Default: "utility"}); err == nil || !strings.Contains(err.Error(), `"utility" has no menu entry`) {
		t.Errorf("a default without an entry: %v", err)
	}
}
