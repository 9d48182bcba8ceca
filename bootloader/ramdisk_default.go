package bootloader

import (
	"context"
	"fmt"
)

// RamdiskGrubID stands for the kept deploy ramdisk's menu entry (RamdiskEntryID) where a
// grub_id is expected: in Status.Default and Status.Saved, in a trial's Previous, and as
// BeginReload's moveTo. boot-info.json has no element for the ramdisk (its elements are the
// images, as Bareon's consumers expect), so it takes a number no element has.
//
// The ramdisk is the default of a single-image node while its only root is rewritten by
// the ramdisk itself (a power cut boots the ramdisk again, which redoes the reload), and
// the entry a trial of that root falls back to: there is no other image to boot.
const RamdiskGrubID = -1

// ramdiskName is how messages name the ramdisk entry.
const ramdiskName = "the deploy ramdisk"

// ramdiskElement is the element that stands for the ramdisk entry in lookups: it has a
// menuentry_id and no root.
func ramdiskElement() *Element {
	return &Element{GrubID: RamdiskGrubID, OSID: ramdiskName, MenuentryID: RamdiskEntryID, BootName: ramdiskName}
}

// StageRamdiskBoot records in the history why the kept deploy ramdisk boots next, and with
// once makes grub boot it once, at the next boot (next_entry, as switch-default --once),
// for what its entry's kernel words ask (a reload through the ramdisk): the words are in
// ramdisk.cfg, written before this by WriteRamdiskEntry. The boot after returns to the
// default, so a ramdisk that fails before it writes anything leaves the node booting as
// before. Without once (the ramdisk is loaded for kexec), only the history is written. A
// menu, when given, is written first (a grub.cfg that sources the ramdisk's entry, on a
// node deployed without it); its default is the current element's entry. A rollback grub
// made is noted first, as a switch notes it.
func StageRamdiskBoot(ctx context.Context, dir string, why string, once bool, menu *Config) error {
	if _, err := NoteRollback(ctx, dir); err != nil {
		return err
	}
	files, err := readBootFiles(dir)
	if err != nil {
		return err
	}
	defer files.close()
	bi, env := files.bi, files.commitEnv()
	rec := &HistoryEntry{Operation: "boot-ramdisk", To: ramdiskName, Result: ResultOK, Detail: why}
	s := State{Info: bi, History: rec}
	if once {
		env.Set(envNextEntry, RamdiskEntryID)
		id := RamdiskGrubID
		bi.PendingOnce = &id
		rec.Operation += " --once"
		s.Env = env
	}
	if menu != nil {
		m := *menu
		m.Default = menuIndex(m, bi.CurrentElement, bi)
		s.Menu = Render(m)
		s.Env = env
	}
	if err := Commit(ctx, files.d, s, CommitOptions{}); err != nil {
		return fmt.Errorf("making the deploy ramdisk boot next in %s: %w", dir, err)
	}
	return nil
}
