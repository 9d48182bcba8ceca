package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/schema"
)

func TestEventsInOrder(t *testing.T) {
	rc := newReceiver(t)
	f := newFakeDeploy(
		engine.Event{Phase: engine.PhasePlan, Message: "probing vda"},
		engine.Event{Phase: engine.PhasePlan, Message: "same phase: no event"},
		engine.Event{Phase: engine.PhasePartition, Message: "writing tables"},
		engine.Event{Phase: engine.PhaseImages, Message: "deploying 1 image(s)"},
		engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 0, Total: 100},
	)
	a := &Agent{Node: "node-1", Deploy: f.deploy, Callback: rc.callback()}
	f.settle = func() { _ = a.Flush(t.Context()) }
	done := make(chan error, 1)
	if err := a.Start(t.Context(), loadSpec(t), func(_ *engine.DeployResult, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	<-f.started
	if err := a.Start(t.Context(), loadSpec(t), nil); !errors.Is(err, ErrBusy) {
		t.Errorf("Start while deploying: %v, want ErrBusy", err)
	}
	f.release <- fakeResult{
		res: &engine.DeployResult{BootInfo: testBootInfo(), Durations: &engine.Durations{TotalMS: 9000, ImagesMS: 3000,
			PerImageMS: map[string]int64{"a": 2900}, Bootloader: &engine.BootloaderMS{KernelDiscoveryMS: 4000, Concurrent: true}}},
		events: []engine.Event{
			{Phase: engine.PhaseImages, Image: "a", Done: 100, Total: 100},
			{Phase: engine.PhaseBootloader, Message: "installing grub"},
		},
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// done runs after the state is updated.
	if st := a.Status(); st.State != StateSucceeded {
		t.Errorf("state in done: %s", st.State)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rc.got()
	want := []string{"started", "phase", "phase", "phase", "progress", "progress", "phase", "succeeded"}
	if !slices.Equal(types(got), want) {
		t.Fatalf("events %v, want %v", types(got), want)
	}
	phases := []string{got[1].Phase, got[2].Phase, got[3].Phase, got[6].Phase}
	if !slices.Equal(phases, []string{"plan", "partition", "images", "bootloader"}) || got[1].Message != "probing vda" {
		t.Errorf("phase events %v (%q)", phases, got[1].Message)
	}
	if got[5].Image != "a" || got[5].Done != 100 || got[5].Total != 100 {
		t.Errorf("final progress %+v", got[5])
	}
	if bi := got[7].BootInfo; bi == nil || len(bi.Elements) != 1 || bi.Elements[0].RootUUID != "1234" {
		t.Errorf("succeeded event boot_info %+v", bi)
	}
	if d := got[7].Durations; d == nil || d.TotalMS != 9000 || d.PerImageMS["a"] != 2900 || d.Bootloader == nil || d.Bootloader.KernelDiscoveryMS != 4000 {
		t.Errorf("succeeded event durations %+v", d)
	}
	for _, e := range got[:7] {
		if e.Durations != nil {
			t.Errorf("%s event with durations", e.Type)
		}
	}
	for i, e := range got {
		if e.Seq != int64(i+1) || e.Node != "node-1" || e.Time.IsZero() {
			t.Errorf("event %d: seq %d node %q time %v", i, e.Seq, e.Node, e.Time)
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, h := range rc.auth {
		if h != "Bearer cb-token" {
			t.Errorf("callback Authorization %q", h)
		}
	}
}

func TestFailedEvent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []engine.Event
		step   string
	}{
		{"in partition", []engine.Event{{Phase: engine.PhasePlan}, {Phase: engine.PhasePartition}}, engine.PhasePartition},
		{"before any event", nil, engine.PhasePlan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t)
			f := newFakeDeploy(tc.script...)
			a := &Agent{Deploy: f.deploy, Callback: rc.callback()}
			go func() {
				<-f.started
				f.release <- fakeResult{err: fmt.Errorf("mkfs.ext4 /dev/vda2: %w", errors.New("exit status 1"))}
			}()
			res, err := a.Run(t.Context(), loadSpec(t))
			if err == nil || res != nil {
				t.Fatalf("Run: %v, %v", res, err)
			}
			if err := a.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			got := rc.got()
			last := got[len(got)-1]
			if last.Type != "failed" || last.Step != tc.step || last.Error != err.Error() {
				t.Errorf("last event %+v, want failed at %s", last, tc.step)
			}
			if st := a.Status(); st.State != StateFailed || st.FailedStep != tc.step || st.Error != err.Error() {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestRunCatchesPanic(t *testing.T) {
	a := &Agent{Deploy: func(context.Context, *schema.Spec, func(engine.Event)) (*engine.DeployResult, error) {
		panic("nil map")
	}}
	if _, err := a.Run(t.Context(), loadSpec(t)); err == nil || !strings.Contains(err.Error(), "panicked: nil map") {
		t.Errorf("Run: %v", err)
	}
	if a.Status().State != StateFailed {
		t.Errorf("state %s", a.Status().State)
	}
	if err := (&Agent{}).Start(t.Context(), loadSpec(t), nil); err == nil {
		t.Error("Start without a DeployFunc succeeded")
	}
	if err := (&Agent{Deploy: newFakeDeploy().deploy}).Start(t.Context(), nil, nil); err == nil {
		t.Error("Start without a spec succeeded")
	}
}

func TestRunCancelled(t *testing.T) {
	rc := newReceiver(t)
	f := newFakeDeploy(engine.Event{Phase: engine.PhaseImages})
	a := &Agent{Deploy: f.deploy, Callback: rc.callback()}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-f.started; cancel() }()
	if _, err := a.Run(ctx, loadSpec(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	// The final event is delivered although the deploy's context has ended.
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := types(rc.got()); !slices.Equal(got, []string{"started", "phase", "failed"}) {
		t.Errorf("events %v", got)
	}
}

func TestProgressRateLimit(t *testing.T) {
	rc := newReceiver(t)
	var script []engine.Event
	for i := int64(1); i <= 100; i++ {
		script = append(script,
			engine.Event{Phase: engine.PhaseImages, Image: "a", Done: i * 10, Total: 1000},
			engine.Event{Phase: engine.PhaseImages, Image: "b", Done: i, Total: -1})
	}
	f := newFakeDeploy(script...)
	// An hour: only the first, the final and the held-back last progress can pass.
	a := &Agent{Deploy: f.deploy, Callback: rc.callback(), ProgressEvery: time.Hour}
	f.settle = func() { _ = a.Flush(t.Context()) }
	go func() {
		<-f.started
		f.release <- fakeResult{events: []engine.Event{
			{Phase: engine.PhaseImages, Image: "a", Done: 1000, Total: 1000}, // the final one again: not repeated
			{Phase: engine.PhaseBootloader},
		}}
	}()
	if _, err := a.Run(t.Context(), loadSpec(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var progress []string
	for _, e := range rc.got() {
		if e.Type == "progress" {
			progress = append(progress, fmt.Sprintf("%s:%d/%d", e.Image, e.Done, e.Total))
		}
	}
	// b's last numbers (total unknown) are sent when the phase changes.
	want := []string{"a:10/1000", "b:1/-1", "a:1000/1000", "b:100/-1"}
	if !slices.Equal(progress, want) {
		t.Errorf("progress events %v, want %v", progress, want)
	}
	if st := a.Status(); st.Images["a"] != (ImageProgress{1000, 1000}) || st.Images["b"] != (ImageProgress{100, -1}) {
		t.Errorf("status images %v", st.Images)
	}
}

func TestProgressFinalAgainAfterRestart(t *testing.T) {
	rc := newReceiver(t)
	f := newFakeDeploy(
		engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 0, Total: 10},
		engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 10, Total: 10},
		engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 10, Total: 10}, // repeated: dropped
		engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 5, Total: 10},  // restarted: held back
		engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 10, Total: 10}, // final again: sent
	)
	a := &Agent{Deploy: f.deploy, Callback: rc.callback(), ProgressEvery: time.Hour}
	f.settle = func() { _ = a.Flush(t.Context()) }
	go func() { <-f.started; f.release <- fakeResult{} }()
	if _, err := a.Run(t.Context(), loadSpec(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var dones []int64
	for _, e := range rc.got() {
		if e.Type == "progress" {
			dones = append(dones, e.Done)
		}
	}
	if !slices.Equal(dones, []int64{0, 10, 10}) {
		t.Errorf("progress done values %v, want [0 10 10]", dones)
	}
}

func TestProgressPassesAfterInterval(t *testing.T) {
	rc := newReceiver(t)
	const every = 20 * time.Millisecond
	a := &Agent{Callback: rc.callback(), ProgressEvery: every}
	a.Deploy = func(ctx context.Context, spec *schema.Spec, emit func(engine.Event)) (*engine.DeployResult, error) {
		// Waiting for the callback after each event keeps the queue from coalescing.
		events := func(e engine.Event) { emit(e); _ = a.Flush(ctx) }
		events(engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 1, Total: 10})
		events(engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 2, Total: 10}) // held back
		time.Sleep(2 * every)
		events(engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 3, Total: 10}) // the interval is over
		events(engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 4, Total: 10}) // held back, sent at the end
		return &engine.DeployResult{}, nil
	}
	if _, err := a.Run(t.Context(), loadSpec(t)); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var dones []int64
	for _, e := range rc.got() {
		if e.Type == "progress" {
			dones = append(dones, e.Done)
		}
	}
	if !slices.Equal(dones, []int64{1, 3, 4}) {
		t.Errorf("progress done values %v, want [1 3 4]", dones)
	}
}

// blockingReceiver answers only when the test lets it.
func blockingReceiver(t *testing.T) (*httptest.Server, chan struct{}, chan Event) {
	t.Helper()
	gate := make(chan struct{})
	got := make(chan Event, 100)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		var e Event
		_ = json.NewDecoder(r.Body).Decode(&e)
		got <- e
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(ts.Close)
	return ts, gate, got
}

func TestFlush(t *testing.T) {
	ts, gate, got := blockingReceiver(t)
	f := newFakeDeploy()
	a := &Agent{Node: "n", Deploy: f.deploy, Callback: &Callback{URL: ts.URL}}
	if err := a.Flush(t.Context()); err != nil {
		t.Errorf("Flush with nothing queued: %v", err)
	}
	go func() { <-f.started; f.release <- fakeResult{} }()
	if _, err := a.Run(t.Context(), loadSpec(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if err := a.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush with the callback stuck: %v", err)
	}
	close(gate)
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e1, e2 := <-got, <-got; e1.Type != "started" || e2.Type != "succeeded" {
		t.Errorf("events %s, %s", e1.Type, e2.Type)
	}
}

func TestQueueCoalesces(t *testing.T) {
	a := &Agent{Callback: &Callback{URL: "http://127.0.0.1:1"}}
	// Pretend the sender is busy so that the queue only accumulates.
	a.q.idle = make(chan struct{})
	push := func(typ, image string, done int64) {
		a.mu.Lock()
		a.emitLocked(t.Context(), Event{Type: typ, Image: image, Done: done})
		a.mu.Unlock()
	}
	push("progress", "a", 1)
	push("heartbeat", "", 0)
	push("progress", "b", 1)
	push("progress", "a", 2) // replaces a:1 (only progress and a heartbeat between them)
	push("phase", "", 0)
	push("progress", "a", 3) // a phase in between: kept apart
	push("heartbeat", "", 1) // replaces the first heartbeat, at the end
	var got []string
	for _, it := range a.q.items {
		got = append(got, fmt.Sprintf("%s:%s%d", it.e.Type, it.e.Image, it.e.Done))
	}
	want := []string{"progress:a2", "progress:b1", "phase:0", "progress:a3", "heartbeat:1"}
	if !slices.Equal(got, want) {
		t.Errorf("queue %v, want %v", got, want)
	}
	for i := range maxQueued + 10 {
		push("progress", fmt.Sprint("img", i), 1)
		push("phase", "", 0)
	}
	progress := 0
	for _, it := range a.q.items {
		if it.e.Type == "progress" {
			progress++
		}
	}
	if len(a.q.items) > maxQueued+maxQueued+10 || progress >= maxQueued {
		t.Errorf("queue grew to %d items, %d progress", len(a.q.items), progress)
	}
	phases := 0
	for _, it := range a.q.items {
		if it.e.Type == "phase" {
			phases++
		}
	}
	if phases != maxQueued+10+1 {
		t.Errorf("%d phase events kept, want all %d", phases, maxQueued+10+1)
	}
}

func TestHeartbeat(t *testing.T) {
	rc := newReceiver(t)
	a := &Agent{Node: "n1", Callback: rc.callback()}
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.Heartbeat(ctx, 10*time.Millisecond, "https://10.0.0.5:9999")
	}()
	waitFor(t, "3 heartbeats", func() bool { return len(rc.got()) >= 3 })
	cancel()
	<-stopped
	for _, e := range rc.got() {
		if e.Type != "heartbeat" || e.State != StateIdle || e.AgentURL != "https://10.0.0.5:9999" || e.Node != "n1" {
			t.Errorf("heartbeat %+v", e)
		}
	}
	_ = a.Flush(t.Context())
	n := rc.attempts()
	time.Sleep(30 * time.Millisecond)
	if rc.attempts() != n {
		t.Errorf("heartbeats after ctx ended")
	}

	// The heartbeat reports the deploy's state.
	f := newFakeDeploy(engine.Event{Phase: engine.PhasePartition})
	a.Deploy = f.deploy
	if err := a.Start(t.Context(), loadSpec(t), nil); err != nil {
		t.Fatal(err)
	}
	<-f.started
	hctx, hcancel := context.WithCancel(t.Context())
	defer hcancel()
	go a.Heartbeat(hctx, time.Hour, "u") // the first one goes at once
	waitFor(t, "a deploying heartbeat", func() bool {
		evs := rc.got()
		last := evs[len(evs)-1]
		return last.Type == "heartbeat" && last.State == StateDeploying && last.Phase == engine.PhasePartition
	})
	f.release <- fakeResult{}

	(&Agent{}).Heartbeat(t.Context(), time.Millisecond, "") // no callback: returns at once
}
