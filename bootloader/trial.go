package bootloader

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// grubenv variables of a trial boot. grub.cfg (see Render) counts the tries down in
// trial_tries and, when none is left, moves trial_entry to trial_failed; the provisioner
// arms the trial (ArmTrial), confirms it (Confirm) and notes a rollback (NoteRollback).
// saved_entry keeps the previous default throughout: it is what a rollback boots.
const (
	envTrialEntry  = "trial_entry"
	envTrialTries  = "trial_tries"
	envTrialFailed = "trial_failed"
)

// MaxTrialTries bounds the tries of a trial: each is one character of trial_tries in
// grubenv, and a node whose new OS keeps failing belongs back on its previous one soon.
const MaxTrialTries = 10

// triesChar is the character of trial_tries that stands for one try; grub.cfg removes the
// first character of the string at each boot, whatever it is.
const triesChar = "x"

// Results of a trial (TrialOutcome.Result).
const (
	TrialConfirmed  = "confirmed"
	TrialRolledBack = "rolled back"
)

// ErrTrial is matched by ArmTrial's refusals: a trial that cannot be armed as asked.
var ErrTrial = errors.New("cannot arm a trial boot")

// Trial is a trial boot armed in grubenv, as boot-info.json records it.
type Trial struct {
	// GrubID is the entry on trial.
	GrubID int `json:"grub_id"`
	// Tries is how many boots the entry was given.
	Tries int `json:"tries"`
	// Armed is when the trial was armed (UTC).
	Armed time.Time `json:"armed"`
	// Previous is the grub_id of the default that a failed trial rolls back to.
	Previous int `json:"previous"`
}

// TrialOutcome is how a trial ended.
type TrialOutcome struct {
	GrubID int `json:"grub_id"`
	// Tries is how many boots the entry was given (0 when boot-info.json did not say).
	Tries int `json:"tries"`
	// Result is TrialConfirmed or TrialRolledBack.
	Result string `json:"result"`
	// At is when the provisioner learnt it (UTC); zero for a rollback grub made that is
	// not noted yet, since grub keeps no clock in grubenv.
	At time.Time `json:"at,omitzero"`
}

// TrialStatus is a pending trial, as List reports it.
type TrialStatus struct {
	GrubID int `json:"grub_id"`
	// Tries is how many boots the entry was given (0 when boot-info.json does not say).
	Tries int `json:"tries"`
	// TriesLeft is how many boots grub still gives it; at 0 the next boot rolls back.
	TriesLeft int `json:"tries_left"`
}

// ArmTrial arms a trial boot of the entry grubID with tries boots in env and bi, and writes
// nothing: the caller commits both (Commit). grub then boots the entry at each of the next
// tries boots, counting them in grubenv, and after that rolls back to the default, which
// stays saved_entry until Confirm makes the trial entry the default.
//
// The entry must exist and have a menuentry_id, tries must be 1 to MaxTrialTries, and the
// entry must not be the default (saved_entry, else current_element): a trial of the default
// has nothing to roll back to. Refusals match ErrTrial (and ErrUnknownEntry for an unknown
// entry); env and bi are then unchanged. Arming forgets a rollback that is not noted yet, so
// callers call NoteRollback first.
func ArmTrial(env *Env, bi *BootInfo, grubID, tries int) error {
	if tries < 1 || tries > MaxTrialTries {
		return fmt.Errorf("%w: %d tries: want 1 to %d", ErrTrial, tries, MaxTrialTries)
	}
	e := elementByID(bi, grubID)
	if e == nil {
		return fmt.Errorf("%w: boot entry %d: %w; valid: %s", ErrTrial, grubID, ErrUnknownEntry, bi.validEntries())
	}
	if e.MenuentryID == "" {
		return fmt.Errorf("%w: boot entry %d has no menuentry_id in %s", ErrTrial, grubID, BootInfoPath)
	}
	prev := savedDefault(bi, env)
	if prev == grubID {
		return fmt.Errorf("%w: boot entry %d (%s) is the default: a trial of it would have nothing to roll back to", ErrTrial, grubID, e.OSID)
	}
	env.Set(envTrialEntry, e.MenuentryID)
	env.Set(envTrialTries, strings.Repeat(triesChar, tries))
	env.Unset(envTrialFailed)
	bi.Trial = &Trial{GrubID: grubID, Tries: tries, Armed: time.Now().UTC(), Previous: prev}
	return nil
}

// savedDefault returns the grub_id of the default: saved_entry when it names an entry,
// else current_element.
func savedDefault(bi *BootInfo, env *Env) int {
	if saved, _ := env.Get(envSavedEntry); saved != "" {
		if e := resolveEnvEntry(bi, saved); e != nil {
			return e.GrubID
		}
	}
	return bi.CurrentElement
}

// clearTrial removes the trial's variables from env. Removing is right here, unlike in
// grub.cfg: the provisioner writes the whole block, while grub's save_env of an unset
// variable would delete it only from the file.
func clearTrial(env *Env) {
	env.Unset(envTrialEntry)
	env.Unset(envTrialTries)
	env.Unset(envTrialFailed)
}

// trialPending reports whether env or bi hold a trial that has not ended.
func trialPending(bi *BootInfo, env *Env) bool {
	entry, _ := env.Get(envTrialEntry)
	return entry != "" || bi.Trial != nil
}

// addTrial adds the trial's state in env and bi to st and returns the disagreements it
// found. A pending trial with tries left and no one-shot entry is what grub boots next.
func (st *Status) addTrial(bi *BootInfo, env *Env) []string {
	var mismatch []string
	st.LastTrial = bi.LastTrial
	entry, _ := env.Get(envTrialEntry)
	failed, _ := env.Get(envTrialFailed)
	left, _ := env.Get(envTrialTries)
	if entry != "" {
		e := resolveEnvEntry(bi, entry)
		switch {
		case e == nil:
			mismatch = append(mismatch, fmt.Sprintf("grubenv trial_entry %q names no entry in boot-info.json; grub boots its first entry", entry))
			if st.Pending == nil && left != "" {
				st.Default, st.bySaved = 0, false
			}
		default:
			st.Trial = &TrialStatus{GrubID: e.GrubID, Tries: armedTries(bi, e.GrubID), TriesLeft: len(left)}
			if bi.Trial == nil || bi.Trial.GrubID != e.GrubID {
				mismatch = append(mismatch, fmt.Sprintf("grubenv trial_entry %q is grub_id %d but boot-info.json records %s", entry, e.GrubID, trialText(bi.Trial)))
			}
			if st.Pending == nil && left != "" {
				st.Default, st.bySaved = e.GrubID, false
			}
		}
	}
	if failed != "" {
		if e := resolveEnvEntry(bi, failed); e != nil {
			st.FailedTrial = &TrialOutcome{GrubID: e.GrubID, Tries: armedTries(bi, e.GrubID), Result: TrialRolledBack}
		} else {
			mismatch = append(mismatch, fmt.Sprintf("grubenv trial_failed %q names no entry in boot-info.json", failed))
		}
	}
	if entry == "" && failed == "" && bi.Trial != nil {
		mismatch = append(mismatch, fmt.Sprintf("boot-info.json records a trial of grub_id %d that grubenv does not hold", bi.Trial.GrubID))
	}
	return mismatch
}

// armedTries returns the tries boot-info.json records for a trial of grubID, 0 when it
// records none.
func armedTries(bi *BootInfo, grubID int) int {
	if bi.Trial != nil && bi.Trial.GrubID == grubID {
		return bi.Trial.Tries
	}
	return 0
}

func trialText(t *Trial) string {
	if t == nil {
		return "no trial"
	}
	return "a trial of grub_id " + strconv.Itoa(t.GrubID)
}

// RollbackMessage says which trial grub rolled back, after how many boots, and what boots
// now; "" when st shows no rollback.
func (st Status) RollbackMessage() string {
	if st.FailedTrial == nil {
		return ""
	}
	return rollbackText(st.name(st.FailedTrial.GrubID), st.FailedTrial.Tries, st.name(st.Saved))
}

// rollbackText is RollbackMessage's sentence; tries is 0 when unknown.
func rollbackText(failed string, tries int, now string) string {
	s := "trial of " + failed + " failed"
	if tries > 0 {
		s += " after " + boots(tries)
	}
	return s + "; " + now + " boots now"
}

// boots is "1 boot", "3 boots".
func boots(n int) string {
	if n == 1 {
		return "1 boot"
	}
	return strconv.Itoa(n) + " boots"
}

// name returns the os_id of the element grubID, or the number when there is none.
func (st Status) name(grubID int) string {
	if grubID == RamdiskGrubID {
		return ramdiskName
	}
	for _, e := range st.Elements {
		if e.GrubID == grubID && e.OSID != "" {
			return e.OSID
		}
	}
	return "grub_id " + strconv.Itoa(grubID)
}
