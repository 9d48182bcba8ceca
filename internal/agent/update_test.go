package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// updateBody wraps validSpec in an update request with the given options (JSON members
// without braces, "" for none).
func updateBody(opts string) string {
	if opts != "" {
		opts = ", " + opts
	}
	return `{"spec": ` + validSpec + opts + `}`
}

// testBreakdown is a break-down of an update that changes image a.
func testBreakdown() *partition.Breakdown {
	return &partition.Breakdown{
		Policy: "keep", Summary: "1 image updated (a)",
		Disks: []partition.DiskPicture{{Disk: "vda", SizeBytes: 10 << 30, Before: "[a]", After: "[a*]"}},
		Volumes: []partition.VolumeChange{{Kind: partition.KindPartition, Name: "vda#1", Disk: "vda", Number: 1,
			Mount: "/", FSType: "ext4", Images: []string{"a"}, Action: partition.ActionKept}},
		Images: []partition.ImageChange{{Name: "a", Action: partition.ImageUpdated,
			From: &partition.ImageVersion{ImageName: "a-1"}, To: &partition.ImageVersion{ImageName: "a-2", URL: "http://x/a.tar"}}},
		Bootloader: partition.BootChange{Changed: []string{"a"}, DefaultBefore: "a", DefaultAfter: "a"},
	}
}

// refusedBreakdown is a break-down refused for a keep_data volume, with its error.
func refusedBreakdown() (*partition.Breakdown, error) {
	b := testBreakdown()
	b.Refusals = []partition.Refusal{{Volume: "vda#2", Reason: "keep_data volume would be moved (start 2048 -> 4096)"}}
	return b, &partition.RefusedError{Problems: b.Refusals}
}

// fakeUpdate is a node's Update and PlanAgainst: its updates emit a script of events and
// block until the test releases them; its plans answer plan and planErr at once.
type fakeUpdate struct {
	script  []engine.Event
	started chan struct{}
	release chan updateResult
	plan    *partition.Breakdown
	planErr error

	mu    sync.Mutex
	calls []updateCall
	plans []planCall
}

type planCall struct {
	spec *schema.Spec
	opts UpdateOptions
}

type updateCall struct {
	spec *schema.Spec
	opts UpdateOptions
}

type updateResult struct {
	res    *engine.UpdateResult
	err    error
	events []engine.Event
}

func newFakeUpdate(script ...engine.Event) *fakeUpdate {
	return &fakeUpdate{script: script, started: make(chan struct{}, 8), release: make(chan updateResult)}
}

func (f *fakeUpdate) update(ctx context.Context, spec *schema.Spec, o UpdateOptions, events func(engine.Event)) (*engine.UpdateResult, error) {
	f.mu.Lock()
	f.calls = append(f.calls, updateCall{spec, o})
	f.mu.Unlock()
	for _, e := range f.script {
		events(e)
	}
	f.started <- struct{}{}
	select {
	case r := <-f.release:
		for _, e := range r.events {
			events(e)
		}
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeUpdate) planAgainst(ctx context.Context, spec *schema.Spec, o UpdateOptions) (*partition.Breakdown, error) {
	f.mu.Lock()
	f.plans = append(f.plans, planCall{spec, o})
	f.mu.Unlock()
	return f.plan, f.planErr
}

func (f *fakeUpdate) counts() (updates, plans int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls), len(f.plans)
}

// nodeWithUpdate is fn's Node with fu's Update and PlanAgainst.
func nodeWithUpdate(fn *fakeNode, fu *fakeUpdate) *Node {
	n := fn.node()
	n.Update, n.PlanAgainst = fu.update, fu.planAgainst
	return n
}

func TestUpdateDryRun(t *testing.T) {
	fu := newFakeUpdate()
	fu.plan = testBreakdown()
	a := &Agent{NodeAPI: nodeWithUpdate(newFakeNode(), fu)}
	ts := apiServer(t, &Server{Agent: a})

	ans := call(t, ts, "POST", "/v1/update", testToken, updateBody(`"dry_run": true, "remove_data": true`))
	if ans.code != http.StatusOK {
		t.Fatalf("dry run: %d %s", ans.code, ans.body)
	}
	// The answer is the break-down's own JSON, as plan --against --json prints it.
	var want bytes.Buffer
	if err := fu.plan.WriteJSON(&want); err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, ans.body, want.Bytes()) {
		t.Errorf("dry run answered\n%s\nwant\n%s", ans.body, want.Bytes())
	}
	if n, p := fu.counts(); n != 0 || p != 1 || fu.plans[0].spec.Images[0].URL != "http://x/a.tar" || fu.plans[0].opts != (UpdateOptions{RemoveData: true}) {
		t.Errorf("%d updates, %d plans (%+v), want the spec planned once and nothing run", n, p, fu.plans)
	}
	if st := a.Status(); st.State != StateIdle || st.Update != nil {
		t.Errorf("status after a dry run: %+v", st)
	}

	// A refused spec is still a break-down: 200, its refusals listed.
	fu.plan, fu.planErr = refusedBreakdown()
	ans = call(t, ts, "POST", "/v1/update", testToken, updateBody(`"dry_run": true`))
	var got partition.Breakdown
	if err := json.Unmarshal(ans.body, &got); ans.code != http.StatusOK || err != nil || len(got.Refusals) != 1 || got.Refusals[0].Volume != "vda#2" {
		t.Errorf("refused dry run: %d %s", ans.code, ans.body)
	}

	// A node that cannot be read answers as the other node operations do.
	fu.plan, fu.planErr = nil, engine.Environmentf("opening the boot files: %w", &disk.LockedError{Path: "/boot"})
	ans = call(t, ts, "POST", "/v1/update", testToken, updateBody(`"dry_run": true`))
	if ans.code != http.StatusConflict || ans.json(t)["exit_code"] != float64(engine.ExitEnvironment) {
		t.Errorf("dry run with the boot files locked: %d %s, want 409 with exit code 3", ans.code, ans.body)
	}
	fu.planErr = engine.Environmentf("no boot-info.json in /boot")
	ans = call(t, ts, "POST", "/v1/update", testToken, updateBody(`"dry_run": true`))
	if ans.code != http.StatusInternalServerError || !strings.Contains(ans.json(t)["error"].(string), "no boot-info.json") {
		t.Errorf("dry run failing: %d %s, want 500 with the error", ans.code, ans.body)
	}

	// Without the functions the endpoint answers 501, as reload does.
	partial := apiServer(t, &Server{Agent: &Agent{NodeAPI: newFakeNode().node()}})
	for _, opts := range []string{`"dry_run": true`, ""} {
		if ans := call(t, partial, "POST", "/v1/update", testToken, updateBody(opts)); ans.code != http.StatusNotImplemented {
			t.Errorf("update {%s} without its function: %d %s, want 501", opts, ans.code, ans.body)
		}
	}
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func TestUpdateRejectsBadBodies(t *testing.T) {
	fu := newFakeUpdate()
	fu.plan = testBreakdown()
	ts := apiServer(t, &Server{Agent: &Agent{NodeAPI: nodeWithUpdate(newFakeNode(), fu)}, MaxBody: 8 << 10})
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{``, 400, "empty body"},
		{`not json`, 400, "invalid character"},
		{`{"force": true}`, 400, `"spec" is required`},
		{`{"spec": null}`, 400, `"spec" is required`},
		{`{"spec": "provision.json"}`, 400, "invalid spec"},
		{updateBody(`"tries": -1`), 400, `"tries" -1`},
		{updateBody(`"tries": 100`), 400, `"tries" 100`},
		{updateBody(`"tries": 2, "no_trial": true`), 400, `"tries" and "no_trial"`},
		{updateBody(`"dryrun": true`), 400, `unknown field "dryrun"`},
		{updateBody("") + ` {}`, 400, "data after the JSON object"},
		{`{"spec": {"images": [{"name": "` + strings.Repeat("x", 8<<10) + `"}]}}`, 413, "larger than"},
	} {
		ans := call(t, ts, "POST", "/v1/update", testToken, tc.body)
		msg, _ := ans.json(t)["error"].(string)
		if ans.code != tc.code || !strings.Contains(msg, tc.want) {
			name := tc.body
			if len(name) > 80 {
				name = name[:80] + "..."
			}
			t.Errorf("update %s: %d %q, want %d with %q", name, ans.code, msg, tc.code, tc.want)
		}
	}

	// An invalid spec answers its problems, as POST /v1/deploy does, with pointers into
	// the request body; a dry run is no exception.
	bad := `{"spec": {"images": [{"name": "a", "url": "http://x/a.tar", "target": "/", "boot": true, "bogus": 1}], "partitions": []}, "dry_run": true}`
	ans := call(t, ts, "POST", "/v1/update", testToken, bad)
	var se struct {
		Error    string           `json:"error"`
		Problems []schema.Problem `json:"problems"`
	}
	if err := json.Unmarshal(ans.body, &se); ans.code != http.StatusBadRequest || err != nil || se.Error != "invalid spec" || len(se.Problems) == 0 {
		t.Fatalf("invalid spec: %d %s", ans.code, ans.body)
	}
	for _, p := range se.Problems {
		if !strings.HasPrefix(p.Pointer, "/spec") || p.Message == "" {
			t.Errorf("problem %+v: want a pointer under /spec and a message", p)
		}
	}
	if !slices.ContainsFunc(se.Problems, func(p schema.Problem) bool { return p.Pointer == "/spec/images/0/bogus" }) {
		t.Errorf("problems %+v: none points at the image with the unknown field", se.Problems)
	}
	if n, p := fu.counts(); n != 0 || p != 0 {
		t.Errorf("bad bodies ran %d updates and %d plans", n, p)
	}
}

func TestUpdateLifecycle(t *testing.T) {
	rc := newReceiver(t)
	fu := newFakeUpdate(engine.Event{Phase: engine.PhasePlan, Message: "breaking the change down"},
		engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 10, Total: 100})
	a := &Agent{Node: "node-1", NodeAPI: nodeWithUpdate(newFakeNode(), fu), Callback: rc.callback()}
	ts := apiServer(t, &Server{Agent: a})

	ans := call(t, ts, "POST", "/v1/update", testToken, updateBody(`"force": true, "tries": 2, "remove_data": true`))
	if m := ans.json(t); ans.code != http.StatusAccepted || m["state"] != StateUpdating {
		t.Fatalf("update: %d %s", ans.code, ans.body)
	}
	<-fu.started
	if fu.calls[0].opts != (UpdateOptions{Force: true, Tries: 2, RemoveData: true}) || fu.calls[0].spec.Images[0].Name != "a" {
		t.Errorf("Update got %+v", fu.calls[0])
	}
	st := status(t, call(t, ts, "GET", "/v1/status", testToken, ""))
	if st.State != StateUpdating || st.Operation != OpUpdate || st.Phase != engine.PhaseImages || st.Images["a"] != (ImageProgress{10, 100}) || st.Update != nil {
		t.Errorf("status while updating: %+v", st)
	}
	fu.release <- updateResult{res: &engine.UpdateResult{Breakdown: testBreakdown(), Applied: true, Trial: "a", Tries: 2, BootInfo: testBootInfo()},
		events: []engine.Event{{Phase: engine.PhaseBootloader, Message: "committing"}}}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })
	st = status(t, call(t, ts, "GET", "/v1/status", testToken, ""))
	if u := st.Update; st.Operation != OpUpdate || st.Error != "" || u == nil || u.Result != UpdateApplied ||
		u.Trial != "a" || u.Tries != 2 || u.Summary != "1 image updated (a)" || u.Breakdown == nil || u.ExitCode != 0 {
		t.Errorf("status after the update: %+v (update %+v)", st, st.Update)
	}
	if ans := call(t, ts, "GET", "/v1/boot-info", testToken, ""); ans.code != http.StatusOK {
		t.Errorf("boot-info after an update: %d, want 200", ans.code)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rc.got()
	last := got[len(got)-1]
	if got[0].Type != EventStarted || got[0].Operation != OpUpdate || last.Type != EventSucceeded ||
		last.Operation != OpUpdate || last.BootInfo == nil || last.Update == nil || last.Update.Result != UpdateApplied {
		t.Errorf("events %v: started %+v, last %+v", types(got), got[0], last)
	}

	// The same spec again: nothing to do, a success that says so.
	if ans := call(t, ts, "POST", "/v1/update", testToken, updateBody("")); ans.code != http.StatusAccepted {
		t.Fatalf("second update: %d %s", ans.code, ans.body)
	}
	<-fu.started
	nothing := testBreakdown()
	nothing.NothingToDo, nothing.Summary = true, "nothing to do"
	fu.release <- updateResult{res: &engine.UpdateResult{Breakdown: nothing}}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })
	if u := a.Status().Update; u == nil || u.Result != UpdateNothing || u.Summary != "nothing to do" {
		t.Errorf("outcome of a spec already applied: %+v", u)
	}

	// A failing update reports its step and the exit code update would give.
	if ans := call(t, ts, "POST", "/v1/update", testToken, updateBody(`"no_trial": true`)); ans.code != http.StatusAccepted {
		t.Fatalf("third update: %d %s", ans.code, ans.body)
	}
	<-fu.started
	fu.release <- updateResult{res: &engine.UpdateResult{Breakdown: testBreakdown()}, err: engine.Environmentf("fetching http://x/a.tar: 404 Not Found")}
	waitFor(t, "failed", func() bool { return a.Status().State == StateFailed })
	st = a.Status()
	if u := st.Update; st.FailedStep != engine.PhaseImages || !strings.Contains(st.Error, "404") || u == nil ||
		u.Result != UpdateFailed || u.ExitCode != engine.ExitEnvironment || u.Summary == "" {
		t.Errorf("status after a failed update: %+v (update %+v)", st, st.Update)
	}
	if fu.calls[2].opts != (UpdateOptions{NoTrial: true}) {
		t.Errorf("third request %+v", fu.calls[2].opts)
	}
}

func TestUpdateRefused(t *testing.T) {
	rc := newReceiver(t)
	fu := newFakeUpdate()
	a := &Agent{NodeAPI: nodeWithUpdate(newFakeNode(), fu), Callback: rc.callback()}
	ts := apiServer(t, &Server{Agent: a})

	// A change the disks cannot take: refused with the break-down's reasons.
	if ans := call(t, ts, "POST", "/v1/update", testToken, updateBody("")); ans.code != http.StatusAccepted {
		t.Fatalf("update: %d %s", ans.code, ans.body)
	}
	<-fu.started
	b, err := refusedBreakdown()
	fu.release <- updateResult{res: &engine.UpdateResult{Breakdown: b}, err: err}
	waitFor(t, "failed", func() bool { return a.Status().State == StateFailed })
	st := a.Status()
	if u := st.Update; st.FailedStep != engine.PhasePlan || !strings.Contains(st.Error, "update refused") || u == nil ||
		u.Result != UpdateRefused || len(u.Refusals) != 1 || u.Refusals[0].Volume != "vda#2" || u.ExitCode != engine.ExitEnvironment || u.Breakdown == nil {
		t.Errorf("status after a refusal: %+v (update %+v)", st, st.Update)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rc.got()
	if last := got[len(got)-1]; last.Type != EventFailed || last.Operation != OpUpdate || last.Update == nil || len(last.Update.Refusals) != 1 {
		t.Errorf("final event %+v", last)
	}

	// Images already deployed or older than the deployed ones: refused without force,
	// one reason per image.
	if ans := call(t, ts, "POST", "/v1/update", testToken, updateBody("")); ans.code != http.StatusAccepted {
		t.Fatalf("update: %d %s", ans.code, ans.body)
	}
	<-fu.started
	fu.release <- updateResult{res: &engine.UpdateResult{Breakdown: testBreakdown()},
		err: engine.Environmentf("%w", &partition.ForceError{NoOps: []string{"a"}, Downgrades: []string{"b (b-3 -> b-2)"}})}
	waitFor(t, "failed", func() bool { return a.Status().State == StateFailed })
	u := a.Status().Update
	if u == nil || u.Result != UpdateRefused || len(u.Refusals) != 2 || u.ExitCode != engine.ExitEnvironment ||
		!strings.Contains(u.Refusals[0].Reason, "image a is already deployed") || !strings.Contains(u.Refusals[1].Reason, "image b (b-3 -> b-2) is a downgrade") {
		t.Errorf("outcome without force: %+v", u)
	}
}

func TestUpdateBusy(t *testing.T) {
	fn, fu := newFakeNode(), newFakeUpdate()
	fu.plan = testBreakdown()
	a := &Agent{NodeAPI: nodeWithUpdate(fn, fu), Power: newPowerRecorder().power}
	ts := apiServer(t, &Server{Agent: a})

	if ans := call(t, ts, "POST", "/v1/update", testToken, updateBody("")); ans.code != http.StatusAccepted {
		t.Fatalf("update: %d %s", ans.code, ans.body)
	}
	<-fu.started
	for _, ep := range []struct{ method, path, body string }{
		{"POST", "/v1/update", updateBody("")},
		{"POST", "/v1/update", updateBody(`"dry_run": true`)},
		{"POST", "/v1/reload", validReload},
		{"POST", "/v1/confirm", ""},
		{"GET", "/v1/boot", ""},
		{"POST", "/v1/power", `{"action": "reboot"}`},
	} {
		ans := call(t, ts, ep.method, ep.path, testToken, ep.body)
		if ans.code != http.StatusConflict || !strings.Contains(ans.json(t)["error"].(string), "update") {
			t.Errorf("%s %s during an update: %d %s, want 409 naming the update", ep.method, ep.path, ans.code, ans.body)
		}
	}
	if n, p := fu.counts(); n != 1 || p != 0 || len(fn.requests()) != 0 || fn.confirm != 0 {
		t.Errorf("ran while updating: %d updates, %d plans, %d reloads, %d confirms", n, p, len(fn.requests()), fn.confirm)
	}
	fu.release <- updateResult{res: &engine.UpdateResult{Breakdown: testBreakdown(), Applied: true, BootInfo: testBootInfo()}}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })

	// A reload holds the node against updates and their dry runs too.
	if ans := call(t, ts, "POST", "/v1/reload", testToken, validReload); ans.code != http.StatusAccepted {
		t.Fatalf("reload: %d %s", ans.code, ans.body)
	}
	<-fn.deploy.started
	for _, opts := range []string{"", `"dry_run": true`} {
		ans := call(t, ts, "POST", "/v1/update", testToken, updateBody(opts))
		if ans.code != http.StatusConflict || !strings.Contains(ans.json(t)["error"].(string), "reload") {
			t.Errorf("update {%s} during a reload: %d %s, want 409 naming the reload", opts, ans.code, ans.body)
		}
	}
	fn.deploy.release <- fakeResult{}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })
	if st := a.Status(); st.Operation != OpReload || st.Update != nil {
		t.Errorf("status after the reload: %+v, want no update outcome", st)
	}
	if n, p := fu.counts(); n != 1 || p != 0 {
		t.Errorf("ran during the reload: %d updates, %d plans", n, p)
	}
}

func TestUpdatePanicFails(t *testing.T) {
	a := &Agent{NodeAPI: &Node{Update: func(context.Context, *schema.Spec, UpdateOptions, func(engine.Event)) (*engine.UpdateResult, error) {
		panic("boom")
	}}}
	done := make(chan error, 1)
	if err := a.StartUpdate(t.Context(), loadSpec(t), UpdateOptions{}, func(_ *engine.UpdateResult, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "update panicked: boom") {
		t.Errorf("err %v", err)
	}
	if st := a.Status(); st.State != StateFailed || st.Update == nil || st.Update.Result != UpdateFailed {
		t.Errorf("status %+v", st)
	}
	// Without a Node, or with a bad option, nothing starts.
	if err := (&Agent{}).StartUpdate(t.Context(), loadSpec(t), UpdateOptions{}, nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("StartUpdate without a Node: %v", err)
	}
	if err := a.StartUpdate(t.Context(), loadSpec(t), UpdateOptions{Tries: 2, NoTrial: true}, nil); err == nil || !strings.Contains(err.Error(), "exclude") {
		t.Errorf("StartUpdate with tries and no_trial: %v", err)
	}
}
