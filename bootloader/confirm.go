package bootloader

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Outcomes of Confirm (ConfirmResult.Outcome).
const (
	// ConfirmConfirmed: the system runs the entry on trial, which is now the default.
	ConfirmConfirmed = "confirmed"
	// ConfirmNoTrial: no trial is pending; nothing changed.
	ConfirmNoTrial = "no trial"
	// ConfirmNotOnTrial: a trial is pending but the system runs another entry (or one
	// that cannot be told); nothing changed.
	ConfirmNotOnTrial = "not on trial"
	// ConfirmRolledBack: grub had rolled the trial back; Confirm noted it, nothing else.
	ConfirmRolledBack = "rolled back"
)

// ConfirmResult says what Confirm found and did.
type ConfirmResult struct {
	// Outcome is one of the Confirm* constants.
	Outcome string `json:"outcome"`
	// Message says it in one sentence.
	Message string `json:"message"`
	// Trial is the trial's entry: confirmed, pending or rolled back; nil when none.
	Trial *Element `json:"trial,omitempty"`
	// Tries is how many boots the trial was given (0 when unknown); TriesLeft how many
	// grub still gives it when it is pending.
	Tries     int `json:"tries,omitempty"`
	TriesLeft int `json:"tries_left,omitempty"`
	// Booted is the entry the system runs, nil when it cannot be told.
	Booted *Element `json:"booted,omitempty"`
	// Default is the default entry after Confirm.
	Default *Element `json:"default,omitempty"`
	// Noted is the rollback record Confirm appended to the history, nil when none.
	Noted *HistoryEntry `json:"noted,omitempty"`
}

// Confirm ends a trial boot from inside the system that booted on trial: when
// bootedRootUUID is the root_uuid of the pending trial's entry, that entry becomes the
// default (saved_entry, current_element), the trial is cleared, boot-info.json records
// it as confirmed, and the history gets an operation "confirm" from the previous default to
// it, all in one Commit (grubenv first: from then on grub boots it by default).
//
// Anywhere else it changes nothing and its result says what it found: no trial, or a
// trial of another entry than the booted one (bootedRootUUID "" is never on trial). A
// rollback grub made is noted first (NoteRollback), and is then the result.
func Confirm(ctx context.Context, dir, bootedRootUUID string) (ConfirmResult, error) {
	noted, err := NoteRollback(ctx, dir)
	if err != nil {
		return ConfirmResult{}, err
	}
	files, err := readBootFiles(dir)
	if err != nil {
		return ConfirmResult{}, err
	}
	defer files.close()
	bi, env := files.bi, files.env
	st := files.status(bootedRootUUID)
	res := ConfirmResult{Default: moveTarget(bi, st.Saved), Noted: noted}
	if st.Booted != nil {
		res.Booted = elementByID(bi, *st.Booted)
	}
	switch {
	case noted != nil:
		res.Outcome, res.Message = ConfirmRolledBack, noted.Detail+": nothing to confirm"
		if lt := bi.LastTrial; lt != nil {
			res.Trial, res.Tries = elementByID(bi, lt.GrubID), lt.Tries
		}
		return res, nil
	case st.Trial == nil:
		res.Outcome, res.Message = ConfirmNoTrial, noTrialText(st)
		return res, nil
	}
	res.Trial, res.Tries, res.TriesLeft = elementByID(bi, st.Trial.GrubID), st.Trial.Tries, st.Trial.TriesLeft
	if st.Booted == nil || *st.Booted != st.Trial.GrubID {
		res.Outcome, res.Message = ConfirmNotOnTrial, notOnTrialText(st)
		return res, nil
	}
	prev := res.Default
	to := res.Trial
	env.Set(envSavedEntry, to.MenuentryID)
	clearTrial(env)
	bi.CurrentElement = to.GrubID
	bi.Trial = nil
	bi.LastTrial = &TrialOutcome{GrubID: to.GrubID, Tries: st.Trial.Tries, Result: TrialConfirmed, At: time.Now().UTC()}
	rec := HistoryEntry{Operation: "confirm", To: to.OSID, Result: ResultOK, ToImage: elementVersion(to), Tries: st.Trial.Tries,
		Detail: confirmedText(st, to.OSID, "")}
	if prev != nil {
		rec.From, rec.FromImage = prev.OSID, elementVersion(prev)
	}
	if err := Commit(ctx, files.d, State{Info: bi, Env: env, History: &rec}, CommitOptions{}); err != nil {
		return ConfirmResult{}, fmt.Errorf("confirming the trial of %s in %s: %w", to.OSID, dir, err)
	}
	res.Outcome, res.Default = ConfirmConfirmed, to
	res.Message = confirmedText(st, to.OSID, rec.From)
	return res, nil
}

// confirmedText is the sentence of a confirmation of the trial in st of entry to, whose
// previous default was from.
func confirmedText(st Status, to, from string) string {
	s := to + " confirmed"
	if t := st.Trial; t.Tries > 0 {
		s += fmt.Sprintf(" at try %d of %d", t.Tries-t.TriesLeft, t.Tries)
	}
	s += ": it is the default now"
	if from != "" {
		s += " (was " + from + ")"
	}
	return s
}

// noTrialText is the sentence of a Confirm that found no trial in st.
func noTrialText(st Status) string {
	parts := []string{"no trial pending", st.name(st.Saved) + " is the default"}
	if st.Booted != nil {
		parts = append(parts, st.name(*st.Booted)+" is booted now")
	}
	s := strings.Join(parts, "; ")
	if lt := st.LastTrial; lt != nil {
		s += fmt.Sprintf(" (the last trial, of %s, was %s)", st.name(lt.GrubID), lt.Result)
	}
	return s + ": nothing changed"
}

// notOnTrialText is the sentence of a Confirm run outside the trial's entry.
func notOnTrialText(st Status) string {
	t := st.Trial
	s := "trial of " + st.name(t.GrubID) + " pending"
	switch {
	case t.TriesLeft == 0:
		s += " with no try left (the next boot rolls back to " + st.name(st.Saved) + ")"
	case t.Tries > 0:
		s += fmt.Sprintf(" with %d of %d tries left", t.TriesLeft, t.Tries)
	default:
		s += fmt.Sprintf(" with %d tries left", t.TriesLeft)
	}
	if st.Booted != nil {
		s += ", but " + st.name(*st.Booted) + " is booted now"
	} else {
		s += ", but none of the entries is booted here"
	}
	return s + ": nothing changed (confirm runs inside the system on trial)"
}

// NoteRollback notes a rollback grub made: when grubenv holds trial_failed, it appends a
// history record (operation "rollback", from the failed entry to the default that boots
// now, with a sentence saying after how many boots), clears the trial from grubenv and
// boot-info.json and records the outcome as boot-info.json's last_trial, in one Commit. It
// returns the record, or nil when there is nothing to note: once noted, a rollback is not
// noted again.
//
// The commit writes grubenv first: a power cut right after it loses the record (list then
// reports that boot-info.json still holds the trial) but never notes a rollback twice.
func NoteRollback(ctx context.Context, dir string) (*HistoryEntry, error) {
	files, err := readBootFiles(dir)
	if err != nil {
		return nil, err
	}
	defer files.close()
	bi, env := files.bi, files.env
	if files.envErr != nil {
		return nil, nil // grub cannot read it either: it rolled nothing back through it
	}
	failed, _ := env.Get(envTrialFailed)
	if failed == "" {
		return nil, nil
	}
	st := files.status("")
	from, tries := failed, 0
	var fromImage *ImageVersion
	if e := resolveEnvEntry(bi, failed); e != nil {
		from, tries, fromImage = st.name(e.GrubID), armedTries(bi, e.GrubID), elementVersion(e)
		bi.LastTrial = &TrialOutcome{GrubID: e.GrubID, Tries: tries, Result: TrialRolledBack, At: time.Now().UTC()}
	}
	now := st.name(st.Saved)
	rec := HistoryEntry{Time: time.Now().UTC(), Operation: "rollback", From: from, To: now, Result: ResultOK,
		Detail: rollbackText(from, tries, now), FromImage: fromImage, ToImage: elementVersion(moveTarget(bi, st.Saved)), Tries: tries}
	clearTrial(env)
	bi.Trial = nil
	if err := Commit(ctx, files.d, State{Info: bi, Env: env, History: &rec}, CommitOptions{}); err != nil {
		return nil, fmt.Errorf("noting the rollback of the trial of %s in %s: %w", from, dir, err)
	}
	return &rec, nil
}
