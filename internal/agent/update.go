package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// UpdateOptions are the choices of POST /v1/update: the flags of `provisioner update`.
// Zero values take the command's defaults.
type UpdateOptions struct {
	// Force applies images already deployed (no-ops) and downgrades.
	Force bool `json:"force,omitempty"`
	// Tries is the number of trial boots of a rewritten default image (0: the default).
	Tries int `json:"tries,omitempty"`
	// NoTrial makes a rewritten default image the default at once, without a trial.
	NoTrial bool `json:"no_trial,omitempty"`
	// RemoveData destroys the volumes of images the spec removed (default: they are
	// left as they are); a dry run breaks them down as destroyed.
	RemoveData bool `json:"remove_data,omitempty"`
}

// check names the first option no update could accept.
func (o UpdateOptions) check() error {
	switch {
	case o.Tries < 0 || o.Tries > bootloader.MaxTrialTries:
		return fmt.Errorf(`"tries" %d: want 1 to %d (0 or absent: the default)`, o.Tries, bootloader.MaxTrialTries)
	case o.Tries > 0 && o.NoTrial:
		return errors.New(`"tries" and "no_trial" exclude each other`)
	}
	return nil
}

// UpdateRequest is the body of POST /v1/update: the changed provision.json under "spec",
// the options beside it. The spec is the document itself, not a string holding it.
type UpdateRequest struct {
	Spec json.RawMessage `json:"spec"`
	UpdateOptions
	// DryRun answers the break-down at once and writes nothing, as plan --against does.
	DryRun bool `json:"dry_run,omitempty"`
}

// UpdateFunc applies a changed spec to this deployed node, reporting progress through
// events as a deploy does. Its result carries the break-down, also with a refusal.
type UpdateFunc func(ctx context.Context, spec *schema.Spec, o UpdateOptions, events func(engine.Event)) (*engine.UpdateResult, error)

// BreakdownFunc breaks down what applying a changed spec to this node with the options o
// would do, writing nothing; a refused spec returns the break-down with a
// *partition.RefusedError.
type BreakdownFunc func(ctx context.Context, spec *schema.Spec, o UpdateOptions) (*partition.Breakdown, error)

// Results of an update (UpdateOutcome.Result).
const (
	UpdateApplied = "applied"
	UpdateNothing = "nothing_to_do"
	UpdateRefused = "refused"
	UpdateFailed  = "failed"
)

// UpdateOutcome is what an update did, in the status and the final event, so that a
// conductor tells a refusal (nothing written, a changed spec or force needed) from a
// failure and from a spec already applied.
type UpdateOutcome struct {
	// Result is UpdateApplied, UpdateNothing, UpdateRefused or UpdateFailed.
	Result string `json:"result"`
	// Summary is the break-down's one-line summary, when one was made.
	Summary string `json:"summary,omitempty"`
	// Refusals are why a refused update was refused: the break-down's, or one per
	// image already deployed or downgraded when force was not set.
	Refusals []partition.Refusal `json:"refusals,omitempty"`
	// Trial is the image booting next on trial after an applied update; Tries its boots.
	Trial string `json:"trial,omitempty"`
	Tries int    `json:"tries,omitempty"`
	// ExitCode is what `provisioner update` would exit with after a refusal or failure.
	ExitCode int `json:"exit_code,omitempty"`
	// Breakdown is the break-down the update applied or refused, as plan --against
	// --json prints it.
	Breakdown *partition.Breakdown `json:"breakdown,omitempty"`
}

// StartUpdate begins an update of this node to spec in the background and returns; it
// returns an error matching ErrBusy while another operation runs, and one matching
// errors.ErrUnsupported when the agent cannot update. Its events and status are those of
// StartReload, with the operation OpUpdate, the state StateUpdating and the outcome in
// Status.Update and the final event. done (may be nil) gets the engine's answer.
func (a *Agent) StartUpdate(ctx context.Context, spec *schema.Spec, o UpdateOptions, done func(*engine.UpdateResult, error)) error {
	if a.NodeAPI == nil {
		return fmt.Errorf("update: %w", errNoNode)
	}
	if a.NodeAPI.Update == nil {
		return fmt.Errorf("update: %w", errors.ErrUnsupported)
	}
	if spec == nil {
		return errors.New("update: no spec")
	}
	if err := o.check(); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	var res *engine.UpdateResult
	run := func(ctx context.Context, events func(engine.Event)) (_ *bootloader.BootInfo, _ *partition.Layout, err error) {
		defer func() {
			if r := recover(); r != nil {
				res, err = nil, fmt.Errorf("update panicked: %v", r)
			}
		}()
		res, err = a.NodeAPI.Update(ctx, spec, o, events)
		switch {
		case err != nil:
			return nil, nil, err
		case res == nil:
			return nil, nil, errors.New("update: the engine returned no result")
		case res.Cancelled:
			return nil, nil, errors.New("update cancelled before anything was written")
		}
		return res.BootInfo, nil, nil
	}
	op := operation{kind: OpUpdate, state: StateUpdating, run: run,
		outcome: func(err error) *UpdateOutcome { return updateOutcome(res, err) }}
	return a.startOp(ctx, op, func(err error) {
		if done != nil {
			done(res, err)
		}
	})
}

// updateOutcome classifies an update's end from the engine's result and the run's error.
func updateOutcome(res *engine.UpdateResult, err error) *UpdateOutcome {
	out := &UpdateOutcome{}
	if res != nil && res.Breakdown != nil {
		out.Breakdown, out.Summary = res.Breakdown, res.Breakdown.Summary
	}
	var refused *partition.RefusedError
	var force *partition.ForceError
	switch {
	case errors.As(err, &refused):
		out.Result, out.Refusals = UpdateRefused, refused.Problems
	case errors.As(err, &force):
		out.Result, out.Refusals = UpdateRefused, forceRefusals(force)
	case err != nil:
		out.Result = UpdateFailed
	case out.Breakdown != nil && out.Breakdown.NothingToDo:
		out.Result = UpdateNothing
	default:
		out.Result, out.Trial, out.Tries = UpdateApplied, res.Trial, res.Tries
	}
	if err != nil {
		out.ExitCode = engine.ExitCode(err)
	}
	return out
}

// forceRefusals names each image an update refuses without force, one refusal each.
func forceRefusals(e *partition.ForceError) []partition.Refusal {
	var out []partition.Refusal
	for _, name := range e.NoOps {
		out = append(out, partition.Refusal{Reason: fmt.Sprintf("image %s is already deployed (same image_uuid and digest): refused without force", name)})
	}
	for _, d := range e.Downgrades {
		out = append(out, partition.Refusal{Reason: fmt.Sprintf("image %s is a downgrade: refused without force", d)})
	}
	return out
}

// PlanUpdate breaks down what updating this node to spec with the options o would do,
// writing nothing. It
// returns ErrReloading or ErrUpdating while one of them rewrites the boot files, and an
// error matching errors.ErrUnsupported when the agent cannot plan an update. A refused
// spec returns the break-down with the *partition.RefusedError.
func (a *Agent) PlanUpdate(ctx context.Context, spec *schema.Spec, o UpdateOptions) (*partition.Breakdown, error) {
	if a.NodeAPI == nil {
		return nil, fmt.Errorf("update: %w", errNoNode)
	}
	if a.NodeAPI.PlanAgainst == nil {
		return nil, fmt.Errorf("update dry run: %w", errors.ErrUnsupported)
	}
	if spec == nil {
		return nil, errors.New("update dry run: no spec")
	}
	a.mu.Lock()
	busy := a.rewritingLocked()
	a.mu.Unlock()
	if busy != nil {
		return nil, busy
	}
	return a.NodeAPI.PlanAgainst(ctx, spec, o)
}
