// Package agent is the provisioner's Ironic-style agent: one deploy at a time, driven
// through a small JSON-over-HTTP API (Server) or by the ramdisk's boot flow (Agent.Run),
// with its progress pushed to a conductor's callback URL (Callback) in order. On a
// deployed node (Agent.NodeAPI) it reloads, updates, confirms and lists that node's
// images instead.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// DeployFunc runs one deploy of a validated spec, reporting progress through events.
// The wiring side typically sets engine.DeployOptions.Events to events and calls
// engine.Deploy.
type DeployFunc func(ctx context.Context, spec *schema.Spec, events func(engine.Event)) (*engine.DeployResult, error)

// PlanFunc plans a spec against this machine's disks without writing (for GET /v1/plan).
type PlanFunc func(ctx context.Context, spec *schema.Spec) (*partition.Layout, error)

// PowerFunc performs "reboot", "poweroff" or "kexec" (after the response has been sent).
type PowerFunc func(ctx context.Context, action string) error

// States of an Agent, as reported by Status and heartbeats.
const (
	StateIdle      = "idle"
	StateDeploying = "deploying"
	StateReloading = "reloading"
	StateUpdating  = "updating"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// Operations an Agent runs in the background, as reported by Status and events.
const (
	OpDeploy = "deploy"
	OpReload = "reload"
	OpUpdate = "update"
)

// Power actions accepted by POST /v1/power.
const (
	ActionReboot   = "reboot"
	ActionPoweroff = "poweroff"
	ActionKexec    = "kexec"
)

// ErrBusy is returned by Start (and the API answers 409) while a deploy runs; the
// errors for the other operations that keep the agent busy match it too.
var ErrBusy = errors.New("a deploy is already running")

// ErrReloading, ErrUpdating and ErrConfirming say what keeps the agent busy on a
// deployed node; each matches ErrBusy, so a caller that only needs "busy" checks one error.
var (
	ErrReloading  error = busyError("a reload is running")
	ErrUpdating   error = busyError("an update is running")
	ErrConfirming error = busyError("a confirm is running")
)

// busyError is an ErrBusy that says which operation runs.
type busyError string

func (e busyError) Error() string        { return string(e) }
func (e busyError) Is(target error) bool { return target == ErrBusy }

// ErrPowerPending is returned by Start once a power action has been accepted: the
// machine is about to go down, so a deploy started now would be cut short.
var ErrPowerPending = errors.New("a power action is pending")

// ErrNoSpec is returned by CurrentPlan before any spec was accepted.
var ErrNoSpec = errors.New("no spec has been accepted yet")

// defaultProgressEvery is the rate limit of progress events per image.
const defaultProgressEvery = time.Second

// Agent holds the deploy state shared by the HTTP API, the boot flow and the heartbeat.
// Its zero value (with Deploy set) is ready to use; it must not be copied after first use.
type Agent struct {
	// Node is the node name reported in events ("": the hostname).
	Node string
	// Deploy runs a deploy; required by Start.
	Deploy DeployFunc
	// Plan plans the last accepted spec for GET /v1/plan (nil: the endpoint answers 501).
	Plan PlanFunc
	// Power performs power actions for POST /v1/power (nil: the endpoint answers 501).
	Power PowerFunc
	// NodeAPI, when set, makes this the agent of a deployed node: it serves reload,
	// update, confirm and boot, and refuses deploys (ErrDeployedNode).
	NodeAPI *Node
	// Callback receives the events (nil: events are only logged).
	Callback *Callback
	// Log receives the agent's own log lines (nil: discarded).
	Log *slog.Logger
	// ProgressEvery is the minimum interval between two progress events of one image
	// (0: one second). The last progress of each image is always sent.
	ProgressEvery time.Duration

	nodeOnce sync.Once
	nodeName string

	mu         sync.Mutex
	gen        int    // counts operations, so late events of an old one are ignored
	op         string // the last operation started: OpDeploy, OpReload or OpUpdate
	state      string
	phase      string
	images     map[string]*imageState
	lastErr    string
	failedStep string
	update     *UpdateOutcome // the last update's outcome, nil for another operation
	startedAt  time.Time
	finishedAt time.Time
	spec       *schema.Spec
	specGen    int // gen of the deploy that accepted spec; plan is cached for it
	plan       *partition.Layout
	bootInfo   *bootloader.BootInfo
	powerBusy  bool
	confirming bool
	running    chan struct{} // closed when the last operation started has ended; nil before one

	q queue
}

// imageState is one image's progress and what the rate limiter needs.
type imageState struct {
	ImageProgress
	last     engine.Event // the newest progress event
	sentAt   time.Time    // when a progress event of this image was last queued
	unsent   bool         // last was suppressed by the rate limit
	finalOut bool         // the final progress (done == total) was queued
}

// ImageProgress is one image's progress in a Status.
type ImageProgress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"` // -1 when unknown
}

// Status is a JSON-able snapshot of an Agent.
type Status struct {
	State      string                   `json:"state"`
	Operation  string                   `json:"operation,omitempty"` // of the last operation started
	Phase      string                   `json:"phase,omitempty"`
	Images     map[string]ImageProgress `json:"images,omitempty"`
	Error      string                   `json:"error,omitempty"`
	FailedStep string                   `json:"failed_step,omitempty"`
	StartedAt  time.Time                `json:"started_at,omitzero"`
	FinishedAt time.Time                `json:"finished_at,omitzero"`
	// Update is what the last operation, an update, did once it ended: applied, nothing
	// to do, refused with the refusals, or failed.
	Update *UpdateOutcome `json:"update,omitempty"`
}

func (a *Agent) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// node returns Node, or the hostname, looked up once.
func (a *Agent) node() string {
	if a.Node != "" {
		return a.Node
	}
	a.nodeOnce.Do(func() {
		a.nodeName, _ = os.Hostname()
	})
	return a.nodeName
}

// stateLocked returns the state, idle for a fresh agent. a.mu must be held.
func (a *Agent) stateLocked() string {
	if a.state == "" {
		return StateIdle
	}
	return a.state
}

// Status returns a snapshot of the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{
		State: a.stateLocked(), Operation: a.op, Phase: a.phase, Error: a.lastErr, FailedStep: a.failedStep,
		StartedAt: a.startedAt, FinishedAt: a.finishedAt, Update: a.update,
	}
	if len(a.images) > 0 {
		s.Images = make(map[string]ImageProgress, len(a.images))
		for name, im := range a.images {
			s.Images[name] = im.ImageProgress
		}
	}
	return s
}

// BootInfo returns the boot info of the last successful deploy, or nil (none yet, or
// a deploy started since: its disks no longer hold what that boot info describes).
func (a *Agent) BootInfo() *bootloader.BootInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bootInfo
}

// Start begins a deploy of spec in the background and returns; it returns ErrBusy while
// another operation runs, and ErrDeployedNode on a deployed node. ctx bounds the deploy,
// so it must not be a request's context.
// Start queues a "started" event, one "phase" event per phase change, rate-limited
// "progress" events per image, then "succeeded" with boot_info or "failed" with error
// and step. done (may be nil) is called with the result when the deploy ends, after
// the agent's state has been updated.
func (a *Agent) Start(ctx context.Context, spec *schema.Spec, done func(*engine.DeployResult, error)) error {
	if spec == nil {
		return errors.New("starting a deploy: no spec")
	}
	if a.NodeAPI != nil {
		return ErrDeployedNode
	}
	if a.Deploy == nil {
		return errors.New("starting a deploy: the agent has no deploy function")
	}
	var res *engine.DeployResult
	run := func(ctx context.Context, events func(engine.Event)) (*bootloader.BootInfo, *partition.Layout, error) {
		var err error
		res, err = a.runDeploy(ctx, spec, events)
		if res == nil {
			return nil, nil, err
		}
		return res.BootInfo, res.Layout, err
	}
	durations := func() *engine.Durations {
		if res == nil {
			return nil
		}
		return res.Durations
	}
	return a.startOp(ctx, operation{kind: OpDeploy, state: StateDeploying, spec: spec, run: run, durations: durations}, func(err error) {
		if done != nil {
			done(res, err)
		}
	})
}

// operation is one background run of the agent: a deploy, a reload or an update.
type operation struct {
	kind, state string
	image       string       // a reload's image, for the started event
	spec        *schema.Spec // a deploy's spec, kept for GET /v1/plan
	// run does the work; a non-nil layout replaces the cached plan on success.
	run func(ctx context.Context, events func(engine.Event)) (*bootloader.BootInfo, *partition.Layout, error)
	// outcome, when set, says what an update did, given run's error; the status and
	// the final event carry it.
	outcome func(err error) *UpdateOutcome
	// durations, when set, says how long run's phases took, once it has returned; the
	// succeeded event carries them.
	durations func() *engine.Durations
}

// startOp starts op in the background unless the agent is busy; done (not nil) is called
// when it ends, after the agent's state has been updated.
func (a *Agent) startOp(ctx context.Context, op operation, done func(error)) error {
	a.mu.Lock()
	if err := a.busyLocked(); err != nil {
		a.mu.Unlock()
		return err
	}
	a.gen++
	gen := a.gen
	a.op, a.state, a.phase, a.images = op.kind, op.state, "", map[string]*imageState{}
	a.lastErr, a.failedStep, a.update = "", "", nil
	a.startedAt, a.finishedAt = time.Now().UTC(), time.Time{}
	// The last boot info describes disks that are being rewritten now.
	a.bootInfo = nil
	if op.spec != nil {
		a.spec, a.specGen, a.plan = op.spec, gen, nil
	}
	running := make(chan struct{})
	a.running = running
	a.emitLocked(ctx, Event{Type: EventStarted, Operation: op.kind, Image: op.image})
	a.mu.Unlock()
	a.log().Info(op.kind+" started", "image", op.image)

	go func() {
		defer close(running)
		bi, l, err := op.run(ctx, func(e engine.Event) { a.onEvent(ctx, gen, e) })
		var upd *UpdateOutcome
		if op.outcome != nil {
			upd = op.outcome(err)
		}
		var took *engine.Durations
		if op.durations != nil {
			took = op.durations()
		}
		a.finish(ctx, gen, bi, l, upd, took, err)
		done(err)
	}()
	return nil
}

// busyLocked says why no operation may start now, or nil. a.mu must be held.
func (a *Agent) busyLocked() error {
	switch {
	case a.state == StateDeploying:
		return ErrBusy
	case a.state == StateReloading:
		return ErrReloading
	case a.state == StateUpdating:
		return ErrUpdating
	case a.confirming:
		return ErrConfirming
	case a.powerBusy:
		return ErrPowerPending
	}
	return nil
}

// runningLocked reports whether a background operation runs. a.mu must be held.
func (a *Agent) runningLocked() bool {
	return a.state == StateDeploying || a.state == StateReloading || a.state == StateUpdating
}

// rewritingLocked says which node operation is rewriting the boot files now (ErrReloading
// or ErrUpdating), or nil. a.mu must be held.
func (a *Agent) rewritingLocked() error {
	switch a.state {
	case StateReloading:
		return ErrReloading
	case StateUpdating:
		return ErrUpdating
	}
	return nil
}

// Wait blocks until the operation started last has ended (its cleanup done, its final
// event queued); it returns at once when none was started. A process that stops serving
// calls it, so that a deploy cancelled by the shutdown finishes its cleanup first.
func (a *Agent) Wait() {
	a.mu.Lock()
	running := a.running
	a.mu.Unlock()
	if running != nil {
		<-running
	}
}

// runDeploy calls Deploy, turning a panic into an error: an agent whose deploy
// goroutine dies silently would report "deploying" forever.
func (a *Agent) runDeploy(ctx context.Context, spec *schema.Spec, events func(engine.Event)) (res *engine.DeployResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("deploy panicked: %v", r)
		}
	}()
	return a.Deploy(ctx, spec, events)
}

// Run is Start and wait: it returns the deploy's result (the boot flow uses it).
func (a *Agent) Run(ctx context.Context, spec *schema.Spec) (*engine.DeployResult, error) {
	type result struct {
		res *engine.DeployResult
		err error
	}
	ch := make(chan result, 1)
	if err := a.Start(ctx, spec, func(r *engine.DeployResult, err error) { ch <- result{r, err} }); err != nil {
		return nil, err
	}
	// The deploy honours ctx, so waiting for it (rather than for ctx) keeps the state
	// and the final event consistent with what Run returns.
	r := <-ch
	return r.res, r.err
}

// onEvent takes one engine event: it updates the state and queues what the callback
// must see. It never blocks on the network (the engine calls it from its goroutines).
func (a *Agent) onEvent(ctx context.Context, gen int, e engine.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen || !a.runningLocked() {
		return
	}
	if e.Phase != "" && e.Phase != a.phase {
		// Whatever progress the rate limit held back comes before the phase change,
		// so the receiver sees every image's last numbers in order.
		a.flushProgressLocked(ctx)
		a.phase = e.Phase
		a.emitLocked(ctx, Event{Type: EventPhase, Phase: e.Phase, Message: e.Message})
		a.log().Info(a.op+" phase", "phase", e.Phase, "message", e.Message)
		if e.Image == "" {
			return
		}
	}
	if e.Image == "" {
		if e.Message != "" {
			a.log().Info(e.Message, "phase", a.phase)
		}
		return
	}
	im := a.images[e.Image]
	if im == nil {
		im = &imageState{}
		a.images[e.Image] = im
	}
	im.Done, im.Total, im.last = e.Done, e.Total, e
	final := e.Total >= 0 && e.Done >= e.Total
	every := a.ProgressEvery
	if every <= 0 {
		every = defaultProgressEvery
	}
	now := time.Now()
	if final {
		if im.finalOut {
			// Said already; nothing newer is held back.
			im.unsent = false
			return
		}
	} else {
		// The image went on (a fetch restarted from the beginning): its next final
		// progress must be sent again.
		im.finalOut = false
		if !im.sentAt.IsZero() && now.Sub(im.sentAt) < every {
			im.unsent = true
			return
		}
	}
	im.sentAt, im.unsent, im.finalOut = now, false, final
	a.emitLocked(ctx, progressEvent(e, a.phase))
}

// flushProgressLocked queues the progress the rate limit held back. a.mu must be held.
func (a *Agent) flushProgressLocked(ctx context.Context) {
	for _, name := range sortedKeys(a.images) {
		im := a.images[name]
		if im.unsent {
			im.unsent = false
			a.emitLocked(ctx, progressEvent(im.last, a.phase))
		}
	}
}

func progressEvent(e engine.Event, phase string) Event {
	if e.Phase != "" {
		phase = e.Phase
	}
	return Event{Type: EventProgress, Phase: phase, Image: e.Image, Done: e.Done, Total: e.Total, Message: e.Message}
}

// finish records the outcome of operation gen (upd: an update's; took: how long its
// phases took) and queues its final event.
func (a *Agent) finish(ctx context.Context, gen int, bi *bootloader.BootInfo, layout *partition.Layout, upd *UpdateOutcome, took *engine.Durations, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen {
		return
	}
	a.flushProgressLocked(ctx)
	a.finishedAt = time.Now().UTC()
	a.update = upd
	if err != nil {
		step := a.phase
		if step == "" {
			// Nothing was reported: the engine failed while resolving the disks, the
			// first thing it does.
			step = engine.PhasePlan
		}
		a.state, a.lastErr, a.failedStep = StateFailed, err.Error(), step
		a.emitLocked(ctx, Event{Type: EventFailed, Operation: a.op, Phase: a.phase, Error: err.Error(), Step: step, Update: upd})
		a.log().Error(a.op+" failed", "step", step, "err", err)
		return
	}
	a.state = StateSucceeded
	a.bootInfo = bi
	if layout != nil {
		// What was deployed is the plan's truth from now on; probing the freshly
		// written disks again could plan something else.
		a.plan = layout
	}
	a.emitLocked(ctx, Event{Type: EventSucceeded, Operation: a.op, BootInfo: a.bootInfo, Update: upd, Durations: took})
	a.log().Info(a.op + " succeeded")
}

// CurrentPlan returns the plan of the last accepted spec: the deployed layout after a
// successful deploy, otherwise one computed with Plan on demand (and kept). Errors:
// ErrNoSpec before any spec; ErrBusy while a deploy runs and no plan is known yet
// (probing disks that are being rewritten would describe a half-written state); one
// matching errors.ErrUnsupported when the agent has no Plan; else Plan's, wrapped.
func (a *Agent) CurrentPlan(ctx context.Context) (*partition.Layout, error) {
	a.mu.Lock()
	spec, gen, plan, state := a.spec, a.specGen, a.plan, a.state
	a.mu.Unlock()
	switch {
	case plan != nil:
		return plan, nil
	case spec == nil:
		return nil, ErrNoSpec
	case state == StateDeploying:
		return nil, ErrBusy
	case a.Plan == nil:
		return nil, fmt.Errorf("planning: %w", errors.ErrUnsupported)
	}
	l, err := a.Plan(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("planning: %w", err)
	}
	a.mu.Lock()
	if a.specGen == gen && a.state != StateDeploying && a.plan == nil {
		a.plan = l
	}
	a.mu.Unlock()
	return l, nil
}

// beginPower reserves the machine for a power action: no operation may start after it.
func (a *Agent) beginPower() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.busyLocked(); err != nil {
		return err
	}
	a.powerBusy = true
	return nil
}

// endPower releases the reservation after a power action failed.
func (a *Agent) endPower() {
	a.mu.Lock()
	a.powerBusy = false
	a.mu.Unlock()
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
