package engine

import (
	"context"

	"github.com/provisioner/provisioner/bootloader"
)

// Rollback is a rollback of a trial boot that grub made and List or History found.
type Rollback struct {
	// TrialOutcome says which entry failed after how many tries.
	bootloader.TrialOutcome
	// Message says it in one sentence, with what boots now.
	Message string `json:"message"`
	// Recorded is set once the rollback is in the history; NotRecorded says why it is not
	// (boot files that cannot be written, such as a read-only disk-image file).
	Recorded    bool   `json:"recorded"`
	NotRecorded string `json:"not_recorded,omitempty"`
}

// BootListing is what List found.
type BootListing struct {
	// Source says where the boot files are (BootDir.Source).
	Source string
	// Status is the boot files' state, after the rollback was recorded.
	Status bootloader.Status
	// Rollback is the rollback found, nil when none.
	Rollback *Rollback
}

// BootHistory is what History found.
type BootHistory struct {
	Source  string
	Entries []bootloader.HistoryEntry
	// Dropped counts the older entries rotation removed from the history.
	Dropped int64
	// Rollback is the rollback found (and recorded, when Recorded), nil when none.
	Rollback *Rollback
}

// List reads the boot files o names (read-only, whatever o.Writable says); on the running
// system it also tells which entry is booted. A rollback grub made is recorded first, once
// (see withRollbackNoted).
func List(ctx context.Context, o BootDirOptions) (BootListing, error) {
	var l BootListing
	rb, err := withRollbackNoted(ctx, o, func(bd *BootDir) error {
		booted := ""
		if bd.Live {
			booted = BootedRootUUID(ctx, o.Env)
		}
		st, err := bootloader.List(bd.Path, booted)
		if err != nil {
			return Environmentf("%w", err)
		}
		l.Source, l.Status = bd.Source, st
		return nil
	})
	l.Rollback = rb
	return l, err
}

// History reads the history of the boot files o names, oldest first, after recording a
// rollback grub made, once (see withRollbackNoted).
func History(ctx context.Context, o BootDirOptions) (BootHistory, error) {
	var h BootHistory
	rb, err := withRollbackNoted(ctx, o, func(bd *BootDir) error {
		log, err := bootloader.ReadHistory(bd.Path)
		if err != nil {
			return Environmentf("%w", err)
		}
		h.Source, h.Entries, h.Dropped = bd.Source, log.Entries, log.Dropped
		return nil
	})
	h.Rollback = rb
	return h, err
}

// Confirm ends a trial boot from inside the system on trial: it opens the boot files for
// writing and runs bootloader.Confirm with the running system's root filesystem UUID. With
// --device or --boot-dir no entry is booted from the boot files, so it only says what it
// finds (and notes a rollback grub made).
func Confirm(ctx context.Context, o BootDirOptions) (bootloader.ConfirmResult, error) {
	o.Writable = true
	var res bootloader.ConfirmResult
	err := withBootDir(ctx, o, func(bd *BootDir) error {
		booted := ""
		if bd.Live {
			booted = BootedRootUUID(ctx, o.Env)
		}
		r, err := bootloader.Confirm(ctx, bd.Path, booted)
		if err != nil {
			return Environmentf("%w", err)
		}
		res = r
		return nil
	})
	return res, err
}

// withRollbackNoted opens the boot files read-only and runs fn on them. When grub rolled
// back a trial that is not recorded yet, it first records it (bootloader.NoteRollback)
// through a writable open, so that the rollback is in the history from the first look on;
// where the boot files cannot be written it is only shown (Rollback.NotRecorded says why).
// The read-only look comes first so that a plain list of a node with nothing to note
// mounts nothing for writing.
func withRollbackNoted(ctx context.Context, o BootDirOptions, fn func(*BootDir) error) (*Rollback, error) {
	o.Writable = false
	var found *Rollback
	err := withBootDir(ctx, o, func(bd *BootDir) error {
		st, err := bootloader.List(bd.Path, "")
		if err == nil && st.FailedTrial != nil {
			found = &Rollback{TrialOutcome: *st.FailedTrial, Message: st.RollbackMessage()}
			return nil
		}
		return fn(bd)
	})
	if err != nil || found == nil {
		return nil, err
	}
	w := o
	w.Writable = true
	err = withBootDir(ctx, w, func(bd *BootDir) error {
		rec, err := bootloader.NoteRollback(ctx, bd.Path)
		if rec != nil {
			found.Message = rec.Detail
		}
		return err
	})
	if err != nil {
		found.NotRecorded = err.Error()
	} else {
		// Recorded now, or by another run between the two opens.
		found.Recorded = true
	}
	return found, withBootDir(ctx, o, fn)
}

// withBootDir opens the boot files o names, runs fn on them and always closes them; a
// failure to close (unmount, detach) is returned when fn succeeded.
func withBootDir(ctx context.Context, o BootDirOptions, fn func(*BootDir) error) (err error) {
	bd, err := OpenBootDir(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := bd.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return fn(bd)
}
