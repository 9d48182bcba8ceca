package bootloader

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/provisioner/provisioner/internal/confine"
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

// bootFilePerm is the mode of a boot file the provisioner creates, and of every file a commit
// with a new menu replaces; otherwise an existing file keeps its own mode (see Commit).
const bootFilePerm = 0o644

// SwitchResult says what SwitchDefault did.
type SwitchResult struct {
	// From is the entry grub would have booted next before the switch, except that a
	// permanent switch during a trial comes from the default the trial would have rolled
	// back to; To is the chosen one.
	From, To Element
	// Once is set for a one-shot switch (next_entry).
	Once bool
	// Unchanged means the entry was already the default (not --once): nothing written but
	// the history record.
	Unchanged bool
	// EnvRewritten, when set, says why grubenv could not be read: the switch replaced it
	// with a valid block holding only the switch's variables.
	EnvRewritten string
	// CancelledTrial is the entry whose pending trial a permanent switch cancelled, nil
	// when none was pending.
	CancelledTrial *Element
	// NotedRollback is the record of a rollback grub had made, which the switch noted
	// first (NoteRollback); nil when there was none.
	NotedRollback *HistoryEntry
}

// SwitchOptions say which entry SwitchDefault makes boot next, and how.
type SwitchOptions struct {
	// Entry is a grub_id, an os_id or an image_name, as BootInfo.Find takes.
	Entry string
	// Once boots the entry at the next boot only (grub's next_entry), then the default
	// again; otherwise it becomes the default.
	Once bool
	// hook is passed to Commit (tests): it sees grubenv's five steps, then boot-info.json's.
	hook func(step string) error
}

// SwitchDefault makes o.Entry boot next: permanently (saved_entry in grubenv and
// current_element in boot-info.json), or once (next_entry in grubenv, pending_once in
// boot-info.json, current_element unchanged). The files are committed with Commit: grubenv
// first, then boot-info.json (after a crash between the two, grub already boots the new
// entry and List reports the disagreement), then the history record. An unknown entry: an
// error listing the valid ones (matching ErrUnknownEntry), nothing written. Already the
// default: Unchanged, nothing written but the history record.
//
// Every switch but one naming an unknown entry is recorded in the history, failures
// included: operation "switch-default" (or "switch-default --once"), the entries and their
// images before and after, the result ("ok" or "failed" with the error) and a detail:
// "unchanged: already the default", "grubenv rewritten: <why>", a cancelled trial.
//
// A permanent switch also cancels a pending one-shot entry: the caller asked for the entry to
// boot next, and a leftover next_entry would boot something else first. For the same reason it
// cancels a pending trial (ArmTrial), and its record says so. A one-shot switch leaves a trial
// alone: the one-shot entry boots once, without taking a try, and the trial goes on after it.
// A rollback grub made is noted (NoteRollback) before the switch, which would otherwise
// clear it unrecorded.
//
// A grubenv that does not parse (corrupted, or not a grub environment block) is replaced by a
// valid one (EnvRewritten says why): grub cannot read it either, so nothing it held still
// takes effect. One that is not a regular file, or a grub_dir leading out of dir, is refused
// (matching confine.ErrUnsafe) and nothing is written. ctx is passed to Commit.
func SwitchDefault(ctx context.Context, dir string, o SwitchOptions) (SwitchResult, error) {
	res, recorded, err := switchDefault(ctx, dir, o)
	if recorded || errors.Is(err, ErrUnknownEntry) {
		return res, err
	}
	if herr := AppendHistory(dir, switchRecord(o, res, err)); herr != nil && err == nil {
		err = herr
	}
	return res, err
}

// switchDefault does SwitchDefault's work; recorded says whether its commit appended the
// history record or failed doing so.
func switchDefault(ctx context.Context, dir string, o SwitchOptions) (res SwitchResult, recorded bool, err error) {
	res = SwitchResult{Once: o.Once}
	if res.NotedRollback, err = NoteRollback(ctx, dir); err != nil {
		return res, false, err
	}
	files, err := readBootFiles(dir)
	if err != nil {
		return res, false, err
	}
	defer files.close()
	bi, env := files.bi, files.env
	if files.envErr != nil {
		res.EnvRewritten = files.envErr.Error()
		env = &Env{}
	}
	target, err := bi.Find(o.Entry)
	if err != nil {
		return res, false, fmt.Errorf("switching default in %s: %w", dir, err)
	}
	res.To = *target
	if target.MenuentryID == "" {
		// grub selects entries by --id only; an index would silently follow reordering.
		return res, false, fmt.Errorf("switching default in %s: boot entry %d has no menuentry_id in %s", dir, target.GrubID, BootInfoPath)
	}
	st := files.status("")
	fromID := st.Default
	if !o.Once && st.Trial != nil {
		fromID = st.Saved
	}
	if from := elementByID(bi, fromID); from != nil {
		res.From = *from
	}

	saved, _ := env.Get(envSavedEntry)
	next, _ := env.Get(envNextEntry)
	if !o.Once && files.envErr == nil && saved == target.MenuentryID && next == "" &&
		bi.CurrentElement == target.GrubID && bi.PendingOnce == nil && !trialPending(bi, env) {
		res.Unchanged = true
		return res, false, nil
	}

	id := target.GrubID
	if o.Once {
		env.Set(envNextEntry, target.MenuentryID)
		bi.PendingOnce = &id
	} else {
		env.Set(envSavedEntry, target.MenuentryID)
		env.Unset(envNextEntry)
		bi.CurrentElement = id
		bi.PendingOnce = nil
		res.CancelledTrial = pendingTrialEntry(bi, env)
		clearTrial(env)
		bi.Trial = nil
	}
	rec := switchRecord(o, res, nil)
	err = Commit(ctx, files.d, State{Info: bi, Env: env, History: &rec}, CommitOptions{hook: o.hook})
	var ce *commitError
	recorded = err == nil || (errors.As(err, &ce) && ce.op == opWrite && ce.file == HistoryPath)
	return res, recorded, switchError(dir, err)
}

// switchError wraps the error of a switch's commit, saying what it had already written.
func switchError(dir string, err error) error {
	var ce *commitError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &ce):
		return fmt.Errorf("switching default: %w", err)
	case ce.op == opEncode:
		return fmt.Errorf("switching default in %s: %w", dir, err)
	case ce.op == opWrite && ce.file == HistoryPath:
		// The switch is done; only its record is missing.
		return err
	case ce.op == opWrite && ce.file == BootInfoPath:
		// grubenv, written first, was the only file before it.
		return fmt.Errorf("switching default: grubenv already updated, boot info not: %w", err)
	}
	return fmt.Errorf("switching default: %w", err)
}

// switchRecord is the history record of a switch that ended with res and err.
func switchRecord(o SwitchOptions, res SwitchResult, err error) HistoryEntry {
	op := "switch-default"
	if o.Once {
		op += " --once"
	}
	h := HistoryEntry{Operation: op, From: res.From.OSID, To: res.To.OSID, Result: ResultOK,
		FromImage: elementVersion(&res.From), ToImage: elementVersion(&res.To)}
	var detail []string
	switch {
	case err != nil:
		h.Result, h.Error = ResultFailed, err.Error()
	case res.Unchanged:
		detail = append(detail, "unchanged: already the default")
	case res.EnvRewritten != "":
		detail = append(detail, "grubenv rewritten: "+res.EnvRewritten)
	}
	if res.CancelledTrial != nil && err == nil {
		detail = append(detail, "trial of "+res.CancelledTrial.OSID+" cancelled")
	}
	h.Detail = strings.Join(detail, "; ")
	return h
}

// pendingTrialEntry returns the entry of the trial pending in env (else in bi), nil when
// none is or it names no entry.
func pendingTrialEntry(bi *BootInfo, env *Env) *Element {
	if entry, _ := env.Get(envTrialEntry); entry != "" {
		if e := resolveEnvEntry(bi, entry); e != nil {
			c := *e
			return &c
		}
	}
	if bi.Trial != nil {
		if e := elementByID(bi, bi.Trial.GrubID); e != nil {
			c := *e
			return &c
		}
	}
	return nil
}

// bootFiles are boot-info.json and grubenv as read from a boot directory.
type bootFiles struct {
	d  *confine.Dir
	bi *BootInfo
	// env is grubenv's content: empty when it is missing, nil when envErr is set.
	env *Env
	// envErr says why grubenv does not parse; grub cannot read such a block either.
	envErr error
}

func (f *bootFiles) close() { f.d.Close() }

// readBootFiles reads boot-info.json and grubenv under dir, confined to it. A missing
// grubenv reads as an empty one, because grub.cfg tolerates its absence (it falls back to
// the plan's default); one that does not parse is reported in envErr, not as an error, so
// that list can still show the menu and switch-default can write a valid one.
func readBootFiles(dir string) (_ *bootFiles, err error) {
	d, err := confine.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the boot files: %w", err)
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	bi, err := readBootInfo(d, BootInfoPath)
	if err != nil {
		return nil, err
	}
	f := &bootFiles{d: d, bi: bi, env: &Env{}}
	envName := bi.GrubEnvName()
	data, err := d.ReadFile(envName, maxEnvFile)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading grub environment %s: %w", d.Path(envName), err)
	}
	if len(data) == 0 {
		// grub.cfg loads grubenv only when it is not empty ([ -s ]): an empty file is
		// no grubenv, not a broken one.
		return f, nil
	}
	if f.env, err = ParseEnv(data); err != nil {
		f.env, f.envErr = nil, fmt.Errorf("grub environment %s is unreadable: %w", d.Path(envName), err)
	}
	return f, nil
}

// maxEnvFile bounds what is read of grubenv: grub's own blocks are EnvSize bytes.
const maxEnvFile = 64 << 10

// status computes List's answer for the files read.
func (f *bootFiles) status(bootedRootUUID string) Status {
	env := f.env
	if env == nil {
		env = &Env{}
	}
	st := status(f.bi, env, bootedRootUUID)
	if _, saved := env.Get(envSavedEntry); !saved || f.envErr != nil {
		// Without saved_entry grub.cfg falls back to the deploy's boot image.
		if e := f.fallback(); e != nil {
			if st.bySaved {
				st.Default = e.GrubID
			}
			if st.Pending == nil {
				st.Saved = e.GrubID
			}
		}
	}
	if f.envErr != nil {
		st.EnvError = f.envErr.Error()
	}
	return st
}

// fallback returns the entry grub.cfg boots when grubenv names none, nil when grub.cfg cannot
// be read or names no entry of boot-info.json.
func (f *bootFiles) fallback() *Element {
	cfg, err := f.d.ReadFile(f.bi.grubCfgName(), maxGrubCfg)
	if err != nil {
		return nil
	}
	id := FallbackEntry(cfg)
	if id == "" {
		return nil
	}
	return resolveEnvEntry(f.bi, id)
}

// maxGrubCfg bounds what is read of grub.cfg: ours is a few KiB per entry.
const maxGrubCfg = 1 << 20

// Status is what List reports.
type Status struct {
	Elements []Element
	// Default is the grub_id grub will boot: next_entry if set, else a pending trial's entry
	// while it has tries left, else saved_entry, else current_element. A value naming no
	// entry makes grub boot its first entry, grub_id 0.
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
	// EnvError is non-empty when grubenv does not parse: grub then boots grub.cfg's fallback
	// entry (Default says which, when grub.cfg could be read), and switch-default rewrites it.
	EnvError string
	// Trial is the pending trial boot (trial_entry in grubenv), nil when none.
	Trial *TrialStatus
	// FailedTrial is a trial grub rolled back (trial_failed in grubenv) that NoteRollback has
	// not noted yet, nil when none; its At is zero.
	FailedTrial *TrialOutcome
	// LastTrial is how the last trial ended, as boot-info.json records it.
	LastTrial *TrialOutcome
	// bySaved is set when Default is saved_entry's: neither a one-shot nor a trial entry.
	bySaved bool
}

// List reads the boot files under dir; bootedRootUUID is the running system's root
// filesystem UUID ("" when unknown).
func List(dir, bootedRootUUID string) (Status, error) {
	files, err := readBootFiles(dir)
	if err != nil {
		return Status{}, err
	}
	defer files.close()
	return files.status(bootedRootUUID), nil
}

// status computes List's answer; SwitchDefault reuses it to know what booted next before.
// grubenv wins over boot-info.json wherever they disagree, because grubenv is what grub
// actually reads at boot.
func status(bi *BootInfo, env *Env, bootedRootUUID string) Status {
	st := Status{Elements: bi.Elements, Saved: bi.CurrentElement, Default: bi.CurrentElement, bySaved: true}
	var mismatch []string
	if elementByID(bi, bi.CurrentElement) == nil {
		mismatch = append(mismatch, fmt.Sprintf("boot-info.json current_element %d names no element", bi.CurrentElement))
	}
	if saved, ok := env.Get(envSavedEntry); ok && saved != "" {
		if e := resolveEnvEntry(bi, saved); e != nil {
			st.Saved = e.GrubID
			st.Default = e.GrubID
			// While the ramdisk is the default, current_element keeps naming the image
			// the ramdisk reloads: boot-info.json has no element for the ramdisk.
			if e.GrubID != bi.CurrentElement && e.GrubID != RamdiskGrubID {
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
			st.Default, st.bySaved = id, false
			if bi.PendingOnce == nil || *bi.PendingOnce != id {
				mismatch = append(mismatch, fmt.Sprintf("grubenv next_entry %q is grub_id %d but boot-info.json pending_once is %s", next, id, optInt(bi.PendingOnce)))
			}
		} else {
			st.Default, st.bySaved = 0, false
			mismatch = append(mismatch, fmt.Sprintf("grubenv next_entry %q names no entry in boot-info.json; grub boots its first entry", next))
		}
	}
	// A pending_once without next_entry is not a mismatch: grub clears next_entry when it
	// boots the one-shot entry and cannot update boot-info.json.
	mismatch = append(mismatch, st.addTrial(bi, env)...)
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
	if v == RamdiskEntryID {
		return ramdiskElement()
	}
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
