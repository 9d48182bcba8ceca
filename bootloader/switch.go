package bootloader

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Paths of the boot files under a boot directory: the mounted multiboot partition, or a
// single image's /boot. Callers pass the directory so that one code path serves both.
const (
	// DefaultGrubDir is grub's directory on the multiboot partition, and the one assumed
	// for a boot-info.json without grub_dir (older files, Bareon's).
	DefaultGrubDir = "boot/grub"
	// GrubEnvPath is grubenv on the multiboot partition.
	GrubEnvPath  = DefaultGrubDir + "/grubenv"
	BootInfoPath = "boot-info.json"
	HistoryPath  = "history.jsonl"
)

// grubenv keys that select the entry grub boots; grub.cfg reads them (see Render).
const (
	envSavedEntry = "saved_entry"
	envNextEntry  = "next_entry"
)

// bootFilePerm is the mode of a grubenv or boot-info.json we create; an existing file keeps
// its own mode, so an administrator's choice survives a switch.
const bootFilePerm = 0o644

// SwitchResult says what SwitchDefault did.
type SwitchResult struct {
	// From is the entry grub would have booted next before the switch; To the chosen one.
	From, To Element
	// Once is set for a one-shot switch (next_entry).
	Once bool
	// Unchanged means the entry was already the default (not --once): nothing written.
	Unchanged bool
}

// SwitchDefault makes the entry named by idOrName (a grub_id, an os_id or an image_name, as
// BootInfo.Find) boot next: permanently (saved_entry in grubenv and current_element in
// boot-info.json), or once (next_entry in grubenv, pending_once in boot-info.json,
// current_element unchanged). Each file is replaced with WriteFileAtomic; grubenv first, then
// boot-info.json (after a crash between the two, grub already boots the new entry and List
// reports the disagreement). An unknown entry: an error listing the valid ones (matching
// ErrUnknownEntry), nothing written. Already the default: Unchanged, nothing written. hook is
// passed to WriteFileAtomic (tests): it sees grubenv's five steps, then boot-info.json's.
//
// A permanent switch also cancels a pending one-shot entry: the caller asked for the entry to
// boot next, and a leftover next_entry would boot something else first. SwitchDefault does
// not append to the history; the caller records the outcome, failures included.
func SwitchDefault(dir, idOrName string, once bool, hook func(step string) error) (SwitchResult, error) {
	res := SwitchResult{Once: once}
	bi, env, err := readBootFiles(dir)
	if err != nil {
		return res, err
	}
	target, err := bi.Find(idOrName)
	if err != nil {
		return res, fmt.Errorf("switching default in %s: %w", dir, err)
	}
	res.To = *target
	if target.MenuentryID == "" {
		// grub selects entries by --id only; an index would silently follow reordering.
		return res, fmt.Errorf("switching default in %s: boot entry %d has no menuentry_id in %s", dir, target.GrubID, BootInfoPath)
	}
	st := status(bi, env, "")
	if from := elementByID(bi, st.Default); from != nil {
		res.From = *from
	}

	saved, _ := env.Get(envSavedEntry)
	next, _ := env.Get(envNextEntry)
	if !once && saved == target.MenuentryID && next == "" &&
		bi.CurrentElement == target.GrubID && bi.PendingOnce == nil {
		res.Unchanged = true
		return res, nil
	}

	id := target.GrubID
	if once {
		env.Set(envNextEntry, target.MenuentryID)
		bi.PendingOnce = &id
	} else {
		env.Set(envSavedEntry, target.MenuentryID)
		env.Unset(envNextEntry)
		bi.CurrentElement = id
		bi.PendingOnce = nil
	}
	// Encode both before writing either, so that an encoding error changes nothing.
	envData, err := env.Encode()
	if err != nil {
		return res, fmt.Errorf("switching default in %s: %w", dir, err)
	}
	biData, err := bi.Encode()
	if err != nil {
		return res, fmt.Errorf("switching default in %s: %w", dir, err)
	}
	envPath := bi.GrubEnv(dir)
	if err := WriteFileAtomic(envPath, envData, fileMode(envPath), hook); err != nil {
		return res, fmt.Errorf("switching default: %w", err)
	}
	biPath := filepath.Join(dir, BootInfoPath)
	if err := WriteFileAtomic(biPath, biData, fileMode(biPath), hook); err != nil {
		return res, fmt.Errorf("switching default: grubenv already updated, boot info not: %w", err)
	}
	return res, nil
}

// fileMode returns the mode of the existing file at path, or bootFilePerm for a new one.
func fileMode(path string) os.FileMode {
	if fi, err := os.Stat(path); err == nil {
		return fi.Mode().Perm()
	}
	return bootFilePerm
}

// readBootFiles reads boot-info.json and grubenv under dir. A missing grubenv reads as an
// empty one, because grub.cfg tolerates its absence (it falls back to the plan's default).
func readBootFiles(dir string) (*BootInfo, *Env, error) {
	bi, err := ReadBootInfo(filepath.Join(dir, BootInfoPath))
	if err != nil {
		return nil, nil, err
	}
	envPath := bi.GrubEnv(dir)
	data, err := os.ReadFile(envPath)
	if errors.Is(err, fs.ErrNotExist) {
		return bi, &Env{}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading grub environment: %w", err)
	}
	env, err := ParseEnv(data)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", envPath, err)
	}
	return bi, env, nil
}

// Status is what List reports.
type Status struct {
	Elements []Element
	// Default is the grub_id grub will boot: next_entry if set, else saved_entry, else
	// current_element. A value naming no entry makes grub boot its first entry, grub_id 0.
	Default int
	// Saved is the grub_id of saved_entry (current_element when saved_entry is unset).
	Saved int
	// Pending is the grub_id of a pending one-shot entry (next_entry), nil when none.
	Pending *int
	// Booted is the grub_id whose root_uuid equals the booted root UUID, nil when none matches.
	Booted *int
	// Mismatch is non-empty when grubenv and boot-info.json disagree (e.g. a crash between
	// the two writes of SwitchDefault), saying how.
	Mismatch string
}

// List reads the boot files under dir; bootedRootUUID is the running system's root
// filesystem UUID ("" when unknown).
func List(dir, bootedRootUUID string) (Status, error) {
	bi, env, err := readBootFiles(dir)
	if err != nil {
		return Status{}, err
	}
	return status(bi, env, bootedRootUUID), nil
}

// status computes List's answer; SwitchDefault reuses it to know what booted next before.
// grubenv wins over boot-info.json wherever they disagree, because grubenv is what grub
// actually reads at boot.
func status(bi *BootInfo, env *Env, bootedRootUUID string) Status {
	st := Status{Elements: bi.Elements, Saved: bi.CurrentElement, Default: bi.CurrentElement}
	var mismatch []string
	if elementByID(bi, bi.CurrentElement) == nil {
		mismatch = append(mismatch, fmt.Sprintf("boot-info.json current_element %d names no element", bi.CurrentElement))
	}
	if saved, ok := env.Get(envSavedEntry); ok && saved != "" {
		if e := resolveEnvEntry(bi, saved); e != nil {
			st.Saved = e.GrubID
			st.Default = e.GrubID
			if e.GrubID != bi.CurrentElement {
				mismatch = append(mismatch, fmt.Sprintf("grubenv saved_entry %q is grub_id %d but boot-info.json current_element is %d", saved, e.GrubID, bi.CurrentElement))
			}
		} else {
			st.Saved, st.Default = 0, 0
			mismatch = append(mismatch, fmt.Sprintf("grubenv saved_entry %q names no entry in boot-info.json; grub boots its first entry", saved))
		}
	}
	next, _ := env.Get(envNextEntry)
	if next != "" {
		if e := resolveEnvEntry(bi, next); e != nil {
			id := e.GrubID
			st.Pending = &id
			st.Default = id
			if bi.PendingOnce == nil || *bi.PendingOnce != id {
				mismatch = append(mismatch, fmt.Sprintf("grubenv next_entry %q is grub_id %d but boot-info.json pending_once is %s", next, id, optInt(bi.PendingOnce)))
			}
		} else {
			st.Default = 0
			mismatch = append(mismatch, fmt.Sprintf("grubenv next_entry %q names no entry in boot-info.json; grub boots its first entry", next))
		}
	}
	// A pending_once without next_entry is not a mismatch: grub clears next_entry when it
	// boots the one-shot entry and cannot update boot-info.json.
	if bootedRootUUID != "" {
		for _, e := range bi.Elements {
			// vfat and some tools print UUIDs in upper case.
			if strings.EqualFold(e.RootUUID, bootedRootUUID) {
				id := e.GrubID
				st.Booted = &id
				break
			}
		}
	}
	st.Mismatch = strings.Join(mismatch, "; ")
	return st
}

func optInt(p *int) string {
	if p == nil {
		return "unset"
	}
	return strconv.Itoa(*p)
}

// elementByID returns the element with grub_id id, or nil.
func elementByID(bi *BootInfo, id int) *Element {
	for i := range bi.Elements {
		if bi.Elements[i].GrubID == id {
			return &bi.Elements[i]
		}
	}
	return nil
}

// resolveEnvEntry finds the element a saved_entry or next_entry value selects the way grub
// does: by menuentry id, by index (grub-set-default N, written by hand or by older tools),
// or by title.
func resolveEnvEntry(bi *BootInfo, v string) *Element {
	for i := range bi.Elements {
		if bi.Elements[i].MenuentryID == v {
			return &bi.Elements[i]
		}
	}
	if n, err := strconv.Atoi(v); err == nil {
		return elementByID(bi, n)
	}
	for i := range bi.Elements {
		if bi.Elements[i].BootName == v {
			return &bi.Elements[i]
		}
	}
	return nil
}
