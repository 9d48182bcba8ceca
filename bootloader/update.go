package bootloader

import (
	"context"
	"fmt"

	"github.com/provisioner/provisioner/partition"
)

// Updated is what an update of a node from a changed spec leaves in the boot files: the
// whole new menu and boot-info.json (entries added, removed or with new images), which
// entry is the default, and the trial of a new default.
type Updated struct {
	// Menu is the new menu; its Default is set by CommitUpdate.
	Menu Config
	// Info is the new boot-info.json, its elements numbered by their menu position.
	Info *BootInfo
	// Default is the os_id of the image that boots by default after the update.
	Default string
	// Trial is the os_id of an image updated or added by the update that boots next on
	// trial, Tries times, with Default as what grub falls back to; "" for none.
	Trial string
	Tries int
	// Record is the plan record of the updated node.
	Record *partition.Record
	// Images are the history record's images: those the update changed, added or
	// removed.
	Images []ImageChange
}

// CommitUpdate writes an update's boot files with Commit's crash-safe order for a new
// menu: grub.cfg, the plan record, boot-info.json, the history record ("update"), and
// grubenv last, with saved_entry the default's menu entry, a one-shot entry of an image
// the update removed dropped, and the trial armed (or any earlier trial cleared). It
// returns the boot info written.
func CommitUpdate(ctx context.Context, dir string, u Updated) (*BootInfo, error) {
	files, err := readBootFiles(dir)
	if err != nil {
		return nil, err
	}
	defer files.close()
	old, env, bi := files.bi, files.commitEnv(), u.Info
	def := elementByOSID(bi, u.Default)
	if def == nil || def.MenuentryID == "" {
		return nil, fmt.Errorf("update: the default %q has no menu entry", u.Default)
	}
	keepOnce(env, old, bi)
	clearTrial(env)
	bi.Trial = nil
	env.Set(envSavedEntry, def.MenuentryID)
	bi.CurrentElement = def.GrubID
	detail := "default " + def.OSID
	if u.Trial != "" {
		t := elementByOSID(bi, u.Trial)
		if t == nil {
			return nil, fmt.Errorf("update: the image on trial %q has no menu entry", u.Trial)
		}
		if err := ArmTrial(env, bi, t.GrubID, u.Tries); err != nil {
			return nil, fmt.Errorf("update: %w", err)
		}
		detail = fmt.Sprintf("%s boots next on trial (%d tries), then %s", t.OSID, u.Tries, def.OSID)
	}
	u.Menu.Default = menuIndex(u.Menu, bi.CurrentElement, bi)
	s := State{
		Menu: Render(u.Menu), Info: bi, Env: env, Record: u.Record,
		History: &HistoryEntry{Operation: "update", From: old.currentOSID(), To: def.OSID, Result: ResultOK, Detail: detail, Images: u.Images, Tries: u.Tries},
	}
	if u.Trial == "" {
		s.History.Tries = 0
	}
	if err := Commit(ctx, files.d, s, CommitOptions{}); err != nil {
		return nil, fmt.Errorf("update: committing the boot files in %s: %w", dir, err)
	}
	return bi, nil
}

// keepOnce keeps a one-shot entry (next_entry, pending_once) of an image still in the
// menu, renumbered in bi, and drops one of an image the update removed.
func keepOnce(env *Env, old, bi *BootInfo) {
	bi.PendingOnce = nil
	v, _ := env.Get(envNextEntry)
	if v == "" {
		return
	}
	was := resolveEnvEntry(old, v)
	if was == nil {
		env.Unset(envNextEntry)
		return
	}
	now := elementByOSID(bi, was.OSID)
	if now == nil {
		env.Unset(envNextEntry)
		return
	}
	env.Set(envNextEntry, now.MenuentryID)
	id := now.GrubID
	bi.PendingOnce = &id
}

// elementByOSID returns bi's element of the image named osID, or nil.
func elementByOSID(bi *BootInfo, osID string) *Element {
	for i := range bi.Elements {
		if bi.Elements[i].OSID == osID {
			return &bi.Elements[i]
		}
	}
	return nil
}

// currentOSID is the os_id of the element current_element names, "" when none.
func (bi *BootInfo) currentOSID() string {
	if e := elementByID(bi, bi.CurrentElement); e != nil {
		return e.OSID
	}
	return ""
}
