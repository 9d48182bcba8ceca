package bootloader

import (
	"context"
	"fmt"

	"github.com/provisioner/provisioner/partition"
)

// BeginReload marks the element grubID as being reloaded, before anything is written to
// its root, so that a reload that is cut shows in list as failed. When the element is what
// grub boots next (the saved default, a pending one-shot entry or a pending trial), the
// default first moves to the element moveTo, so that at no moment does the default point
// at a root being rewritten; the history says so. moveTo nil means there is no other image
// to boot (an offline reload of a disk's only image): the default stays. moveTo
// RamdiskGrubID makes the kept deploy ramdisk the default (the ramdisk reloading a
// single-image node's root). A rollback grub
// made is noted first (NoteRollback), since the reload clears the trial's variables. It returns the
// element the default moved to, nil when it did not move. op names the operation in the
// history record of the move ("": "reload"). The files are written by Commit
// without a menu: grubenv first, then boot-info.json and the history record.
func BeginReload(ctx context.Context, dir string, grubID int, moveTo *int, op string) (*Element, error) {
	if op == "" {
		op = "reload"
	}
	// A rollback grub made and nobody noted yet would be lost with the trial's variables.
	if _, err := NoteRollback(ctx, dir); err != nil {
		return nil, err
	}
	files, err := readBootFiles(dir)
	if err != nil {
		return nil, err
	}
	defer files.close()
	bi, env := files.bi, files.commitEnv()
	el := elementByID(bi, grubID)
	if el == nil {
		return nil, fmt.Errorf("reload: boot info has no grub_id %d", grubID)
	}
	el.State, el.StateError = ElementReloading, ""
	s := State{Info: bi}
	var moved *Element
	if bootsNext(files, grubID) && moveTo != nil {
		to := moveTarget(bi, *moveTo)
		if to == nil || to.MenuentryID == "" || to.GrubID == grubID {
			return nil, fmt.Errorf("reload: cannot move the default to grub_id %d", *moveTo)
		}
		dropEntry(env, bi, el)
		env.Set(envSavedEntry, to.MenuentryID)
		if to.GrubID != RamdiskGrubID {
			bi.CurrentElement = to.GrubID
		}
		s.Env = env
		s.History = &HistoryEntry{Operation: op, From: el.OSID, To: to.OSID, Result: ResultOK,
			Detail:    fmt.Sprintf("default moved from %s to %s while %s is %s", el.OSID, to.OSID, el.OSID, rewrittenBy(op)),
			FromImage: elementVersion(el), ToImage: elementVersion(to)}
		moved = to
	}
	if err := Commit(ctx, files.d, s, CommitOptions{}); err != nil {
		return nil, fmt.Errorf("reload: marking %s as being reloaded in %s: %w", el.OSID, dir, err)
	}
	return moved, nil
}

// rewrittenBy says how op rewrites an image's root, for the history: "reloaded" by a
// reload, "updated" by an update.
func rewrittenBy(op string) string {
	if op == "update" {
		return "updated"
	}
	return "reloaded"
}

// moveTarget is the element BeginReload may move the default to: an element of bi, or the
// ramdisk's stand-in.
func moveTarget(bi *BootInfo, id int) *Element {
	if id == RamdiskGrubID {
		return ramdiskElement()
	}
	return elementByID(bi, id)
}

// bootsNext reports whether grub would boot the element grubID next, or may boot it on
// a later boot without anyone choosing it again (a pending trial).
func bootsNext(f *bootFiles, grubID int) bool {
	st := f.status("")
	if st.Default == grubID || st.Saved == grubID || f.bi.CurrentElement == grubID {
		return true
	}
	if st.Pending != nil && *st.Pending == grubID {
		return true
	}
	return trialOf(f.env, f.bi, grubID)
}

// trialOf reports whether a trial of the element grubID is pending in env or bi.
func trialOf(env *Env, bi *BootInfo, grubID int) bool {
	if v, _ := env.Get(envTrialEntry); v != "" {
		if e := resolveEnvEntry(bi, v); e != nil && e.GrubID == grubID {
			return true
		}
	}
	return bi.Trial != nil && bi.Trial.GrubID == grubID
}

// dropEntry cancels what would make grub boot el: a one-shot entry or a trial naming it.
func dropEntry(env *Env, bi *BootInfo, el *Element) {
	if v, _ := env.Get(envNextEntry); v != "" && resolveEnvEntry(bi, v) == el {
		env.Unset(envNextEntry)
	}
	if bi.PendingOnce != nil && *bi.PendingOnce == el.GrubID {
		bi.PendingOnce = nil
	}
	if trialOf(env, bi, el.GrubID) {
		clearTrial(env)
		bi.Trial = nil
	}
}

// FailReload marks the element grubID as failed after a reload failed with cause, and
// records the failure in the history under the operation op ("reload", "reload-live",
// "update"; "" is "reload"); the default is left where BeginReload put it.
func FailReload(ctx context.Context, dir string, grubID int, op string, cause error) error {
	if op == "" {
		op = "reload"
	}
	files, err := readBootFiles(dir)
	if err != nil {
		return err
	}
	defer files.close()
	el := elementByID(files.bi, grubID)
	if el == nil {
		return fmt.Errorf("reload: boot info has no grub_id %d", grubID)
	}
	el.State, el.StateError = ElementFailed, cause.Error()
	h := &HistoryEntry{Operation: op, From: el.OSID, To: el.OSID, Result: ResultFailed, Error: cause.Error(), FromImage: elementVersion(el)}
	return Commit(ctx, files.d, State{Info: files.bi, History: h}, CommitOptions{})
}

// Reloaded is what a reload put in place of an element.
type Reloaded struct {
	// GrubID is the element reloaded.
	GrubID int
	// Element holds the new image_name, image_uuid, boot_name, kernel, initrd, cmdline,
	// filesystems and digest; its grub_id, os_id, menuentry_id and root_uuid are kept.
	Element Element
	// Tries is the number of trial boots; 0 makes the element the default at once.
	Tries int
	// Record is the plan record with the image's new source.
	Record *partition.Record
	// From and To say which image was replaced by which, for the history.
	From, To ImageVersion
}

// CommitReload writes the reload's outcome with Commit's crash-safe order for a new menu:
// grub.cfg (menu, whose fallback default is the entry that boots when grubenv is
// unreadable: the saved default, which a trial rolls back to), the plan record,
// boot-info.json with the element's new content, the history record, and grubenv last,
// with the trial armed (or the element as the default). It returns the boot info written.
func CommitReload(ctx context.Context, dir string, menu Config, r Reloaded) (*BootInfo, error) {
	files, err := readBootFiles(dir)
	if err != nil {
		return nil, err
	}
	defer files.close()
	bi, env := files.bi, files.commitEnv()
	el := elementByID(bi, r.GrubID)
	if el == nil {
		return nil, fmt.Errorf("reload: boot info has no grub_id %d", r.GrubID)
	}
	n := r.Element
	n.GrubID, n.OSID, n.MenuentryID, n.RootUUID = el.GrubID, el.OSID, el.MenuentryID, el.RootUUID
	n.State, n.StateError = "", ""
	*el = n
	detail := "it is the default"
	if r.Tries > 0 {
		if err := ArmTrial(env, bi, el.GrubID, r.Tries); err != nil {
			return nil, fmt.Errorf("reload: %w", err)
		}
		detail = fmt.Sprintf("it boots next on trial (%d tries)", r.Tries)
	} else {
		dropEntry(env, bi, el)
		env.Set(envSavedEntry, el.MenuentryID)
		bi.CurrentElement = el.GrubID
	}
	menu.Default = menuIndex(menu, bi.CurrentElement, bi)
	from, to := r.From, r.To
	s := State{
		Menu: Render(menu), Info: bi, Env: env, Record: r.Record,
		History: &HistoryEntry{Operation: "reload", From: el.OSID, To: el.OSID, Result: ResultOK, Detail: detail, FromImage: &from, ToImage: &to, Tries: r.Tries},
	}
	if err := Commit(ctx, files.d, s, CommitOptions{}); err != nil {
		return nil, fmt.Errorf("reload: committing the boot files in %s: %w", dir, err)
	}
	return bi, nil
}

// menuIndex returns the position in menu of the entry of the element grubID, 0 when it
// has none.
func menuIndex(menu Config, grubID int, bi *BootInfo) int {
	el := elementByID(bi, grubID)
	for i, e := range menu.Entries {
		if el != nil && e.ID == el.MenuentryID {
			return i
		}
	}
	return 0
}

// commitEnv is the grubenv a reload's commit builds on: the one read, or an empty block
// when it does not parse, since grub cannot read it either and a valid block replaces it.
func (f *bootFiles) commitEnv() *Env {
	if f.envErr != nil {
		return &Env{}
	}
	return f.env
}
