package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
)

// ReloadRequest is the body of POST /v1/reload: the arguments of `provisioner reload`.
// Zero values take the command's defaults.
type ReloadRequest struct {
	// Image is the image to reload: a grub_id, a name or an image_name.
	Image string `json:"image"`
	// URL is where the new root filesystem is fetched from.
	URL string `json:"url"`
	// Checksum, Format, ImageUUID and ImageName are the flags of the same names.
	Checksum  string `json:"checksum,omitempty"`
	Format    string `json:"format,omitempty"`
	ImageUUID string `json:"image_uuid,omitempty"`
	ImageName string `json:"image_name,omitempty"`
	// Tries is the number of trial boots before grub rolls back (0: the default).
	Tries int `json:"tries,omitempty"`
	// NoTrial makes the reloaded image the default at once, without a trial.
	NoTrial bool `json:"no_trial,omitempty"`
}

// check names the first field of r that no reload could accept.
func (r ReloadRequest) check() error {
	switch {
	case r.Image == "":
		return errors.New(`"image" is required: the grub_id, name or image_name of the image to reload`)
	case r.URL == "":
		return errors.New(`"url" is required: where to fetch the new root filesystem`)
	case r.Tries < 0:
		return fmt.Errorf(`"tries" %d: want 1 or more (0 or absent: the default)`, r.Tries)
	case r.Tries > 0 && r.NoTrial:
		return errors.New(`"tries" and "no_trial" exclude each other`)
	}
	return nil
}

// ReloadFunc reloads one image of this deployed node, reporting progress through events
// as a deploy does, and returns the boot info it committed.
type ReloadFunc func(ctx context.Context, req ReloadRequest, events func(engine.Event)) (*bootloader.BootInfo, error)

// NodeFunc is a synchronous node operation; what it returns is the endpoint's JSON answer.
type NodeFunc func(ctx context.Context) (any, error)

// Node is what the agent does on a deployed node. A nil function makes its endpoint
// answer 501, as a missing PowerFunc does.
type Node struct {
	// Reload serves POST /v1/reload, in the background like a deploy.
	Reload ReloadFunc
	// Confirm serves POST /v1/confirm: it makes the image booted on trial the default.
	Confirm NodeFunc
	// Boot serves GET /v1/boot: what `provisioner list --json` prints.
	Boot NodeFunc
	// Update serves POST /v1/update, in the background like a reload.
	Update UpdateFunc
	// PlanAgainst serves POST /v1/update with dry_run: the break-down alone.
	PlanAgainst BreakdownFunc
}

// ErrDeployedNode is returned by Start on a deployed node: a deploy from the running
// system would wipe the disks it runs from.
var ErrDeployedNode = errors.New("this agent runs on a deployed node: a deploy would wipe the disks it runs from; reload one image with POST /v1/reload")

// errNoNode is wrapped by the node operations of an agent without a Node.
var errNoNode = fmt.Errorf("not a deployed node: %w", errors.ErrUnsupported)

// StartReload begins a reload of req.Image in the background and returns; it returns
// ErrBusy (or an error matching it) while another operation runs, and an error matching
// errors.ErrUnsupported when the agent cannot reload. Its events, status and done are
// those of Start, with the operation OpReload and the state StateReloading.
func (a *Agent) StartReload(ctx context.Context, req ReloadRequest, done func(*bootloader.BootInfo, error)) error {
	if a.NodeAPI == nil {
		return fmt.Errorf("reload: %w", errNoNode)
	}
	if a.NodeAPI.Reload == nil {
		return fmt.Errorf("reload: %w", errors.ErrUnsupported)
	}
	if err := req.check(); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var bi *bootloader.BootInfo
	run := func(ctx context.Context, events func(engine.Event)) (_ *bootloader.BootInfo, _ *partition.Layout, err error) {
		// A panic becomes the reload's failure: an agent whose goroutine dies silently
		// would report "reloading" forever.
		defer func() {
			if r := recover(); r != nil {
				bi, err = nil, fmt.Errorf("reload panicked: %v", r)
			}
		}()
		bi, err = a.NodeAPI.Reload(ctx, req, events)
		return bi, nil, err
	}
	op := operation{kind: OpReload, state: StateReloading, image: req.Image, run: run}
	return a.startOp(ctx, op, func(err error) {
		if done != nil {
			done(bi, err)
		}
	})
}

// RunReload is StartReload and wait: it returns the reload's boot info (the ramdisk's
// reload mode uses it).
func (a *Agent) RunReload(ctx context.Context, req ReloadRequest) (*bootloader.BootInfo, error) {
	type result struct {
		bi  *bootloader.BootInfo
		err error
	}
	ch := make(chan result, 1)
	if err := a.StartReload(ctx, req, func(bi *bootloader.BootInfo, err error) { ch <- result{bi, err} }); err != nil {
		return nil, err
	}
	r := <-ch
	return r.bi, r.err
}

// Confirm runs the node's Confirm and returns its answer. It returns an error matching
// ErrBusy while a reload or another confirm runs, ErrPowerPending once a power action
// was accepted (the grubenv it writes must not be cut by the reboot), and one matching
// errors.ErrUnsupported when the agent cannot confirm.
func (a *Agent) Confirm(ctx context.Context) (any, error) {
	if a.NodeAPI == nil {
		return nil, fmt.Errorf("confirm: %w", errNoNode)
	}
	if a.NodeAPI.Confirm == nil {
		return nil, fmt.Errorf("confirm: %w", errors.ErrUnsupported)
	}
	a.mu.Lock()
	if err := a.busyLocked(); err != nil {
		a.mu.Unlock()
		return nil, err
	}
	a.confirming = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.confirming = false
		a.mu.Unlock()
	}()
	return a.NodeAPI.Confirm(ctx)
}

// Boot runs the node's Boot and returns its answer. While a reload or an update runs it
// returns ErrReloading or ErrUpdating: the boot files are being rewritten, and the
// status tells the progress.
func (a *Agent) Boot(ctx context.Context) (any, error) {
	if a.NodeAPI == nil {
		return nil, fmt.Errorf("boot: %w", errNoNode)
	}
	if a.NodeAPI.Boot == nil {
		return nil, fmt.Errorf("boot: %w", errors.ErrUnsupported)
	}
	a.mu.Lock()
	busy := a.rewritingLocked()
	a.mu.Unlock()
	if busy != nil {
		return nil, busy
	}
	return a.NodeAPI.Boot(ctx)
}
