package agent

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Event types.
const (
	EventStarted   = "started"
	EventPhase     = "phase"
	EventProgress  = "progress"
	EventSucceeded = "succeeded"
	EventFailed    = "failed"
	EventHeartbeat = "heartbeat"
)

// maxQueued bounds the queue against a callback that is down for long: past it, new
// progress events that cannot be coalesced are dropped. The events that matter
// (started, phase, succeeded, failed) are always kept; there are only a handful per
// deploy, and at most one heartbeat is ever queued.
const maxQueued = 256

// defaultHeartbeat is Heartbeat's interval when none is given.
const defaultHeartbeat = 30 * time.Second

// queue holds the events waiting for the agent's single sender goroutine, which
// delivers them one at a time so that the callback sees them in order.
type queue struct {
	mu    sync.Mutex
	items []queued
	// idle is closed when the queue is empty and nothing is being sent; nil while
	// idle, so no goroutine exists then.
	idle chan struct{}
}

type queued struct {
	ctx context.Context
	e   Event
}

// emitLocked stamps e and queues it for the callback. a.mu must be held, so that the
// queue's order is the order in which the state changed.
func (a *Agent) emitLocked(ctx context.Context, e Event) {
	e.Time = time.Now().UTC()
	e.Node = a.node()
	if e.Type != EventHeartbeat && e.Type != EventProgress {
		a.log().Debug("agent event", "type", e.Type, "phase", e.Phase)
	}
	if a.Callback == nil {
		return
	}
	if e.Type != EventHeartbeat {
		// A deploy's events are still worth delivering when its context ends (a
		// cancelled deploy reports "failed"); the retries of Send bound the effort.
		ctx = context.WithoutCancel(ctx)
	}
	a.push(queued{ctx, e})
}

// push queues one event, coalescing where order allows, and starts the sender.
func (a *Agent) push(it queued) {
	q := &a.q
	q.mu.Lock()
	defer q.mu.Unlock()
	switch it.e.Type {
	case EventProgress:
		// A newer progress of the same image replaces a queued one, but only when no
		// other kind of event sits between them (a heartbeat aside), so the receiver
		// never sees progress that belongs before a phase change after it.
		for i := len(q.items) - 1; i >= 0; i-- {
			t := q.items[i].e.Type
			if t == EventProgress && q.items[i].e.Image == it.e.Image {
				q.items[i] = it
				return
			}
			if t != EventProgress && t != EventHeartbeat {
				break
			}
		}
		if len(q.items) >= maxQueued {
			a.log().Debug("callback queue full: dropping progress", "image", it.e.Image)
			return
		}
	case EventHeartbeat:
		// Only the newest heartbeat means anything; it goes last so its state is
		// never older than an event before it.
		for i := range q.items {
			if q.items[i].e.Type == EventHeartbeat {
				q.items = append(q.items[:i], q.items[i+1:]...)
				break
			}
		}
	}
	q.items = append(q.items, it)
	if q.idle == nil {
		q.idle = make(chan struct{})
		go a.drain()
	}
}

// drain sends queued events in order until the queue is empty. A failed event is
// logged and dropped: holding the queue forever behind it would lose everything after.
func (a *Agent) drain() {
	q := &a.q
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			close(q.idle)
			q.idle = nil
			q.mu.Unlock()
			return
		}
		it := q.items[0]
		q.items[0] = queued{}
		q.items = q.items[1:]
		q.mu.Unlock()
		if err := a.Callback.Send(it.ctx, it.e); err != nil {
			a.log().Warn("callback: dropping event", "type", it.e.Type, "err", err)
		}
	}
}

// Flush waits until every queued event has been sent (or given up on), or ctx ends.
// The boot flow calls it before rebooting so that the final event reaches the callback.
func (a *Agent) Flush(ctx context.Context) error {
	a.q.mu.Lock()
	idle := a.q.idle
	a.q.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flushing agent events: %w", ctx.Err())
	}
}

// Heartbeat sends a "heartbeat" event (node, state, phase, agent_url) at once and then
// every interval (0: 30 s) until ctx is done; it returns immediately when the agent has
// no callback. Heartbeats go through the same ordered queue as the deploy's events, so a
// heartbeat never reports a state older than an event delivered before it; at most one
// is queued (a newer one replaces it) and one still queued when ctx ends is dropped.
func (a *Agent) Heartbeat(ctx context.Context, every time.Duration, agentURL string) {
	if a.Callback == nil {
		return
	}
	if every <= 0 {
		every = defaultHeartbeat
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		a.mu.Lock()
		a.emitLocked(ctx, Event{Type: EventHeartbeat, State: a.stateLocked(), Phase: a.phase, AgentURL: agentURL})
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
