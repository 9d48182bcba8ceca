package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/engine"
)

const validReload = `{"image": "b", "url": "http://x/b.tar.zst", "checksum": "sha256:ab", "format": "tar.zst",
 "image_uuid": "u-1", "image_name": "b-2", "tries": 2}`

// fakeNode is a Node whose reloads, like fakeDeploy's deploys, emit a script of events
// and then block until the test releases them; Confirm and Boot answer at once, or
// block while confirmGate is set.
type fakeNode struct {
	deploy  *fakeDeploy // its script, started and release channels drive the reloads
	mu      sync.Mutex
	reqs    []ReloadRequest
	confirm int
	// confirmGate, when set, holds Confirm until closed (after entered receives).
	confirmGate chan struct{}
	entered     chan struct{}
	bootErr     error
}

func newFakeNode(script ...engine.Event) *fakeNode {
	return &fakeNode{deploy: newFakeDeploy(script...), entered: make(chan struct{}, 8)}
}

func (f *fakeNode) node() *Node {
	return &Node{Reload: f.reload, Confirm: f.confirmFunc, Boot: f.boot}
}

func (f *fakeNode) reload(ctx context.Context, req ReloadRequest, events func(engine.Event)) (*bootloader.BootInfo, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	res, err := f.deploy.deploy(ctx, nil, events)
	if res == nil {
		return nil, err
	}
	return res.BootInfo, err
}

func (f *fakeNode) confirmFunc(ctx context.Context) (any, error) {
	f.mu.Lock()
	f.confirm++
	gate := f.confirmGate
	f.mu.Unlock()
	f.entered <- struct{}{}
	if gate != nil {
		<-gate
	}
	return map[string]any{"confirmed": "b", "default": 1}, nil
}

func (f *fakeNode) boot(ctx context.Context) (any, error) {
	if f.bootErr != nil {
		return nil, f.bootErr
	}
	one := 1
	return engine.BootDocument{Source: "/dev/vda2 (multiboot)", Default: 1, Saved: 1, Booted: &one,
		Elements: testBootInfo().Elements}, nil
}

func (f *fakeNode) requests() []ReloadRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

var nodeEndpoints = []struct{ method, path, body, wrong string }{
	{"POST", "/v1/reload", validReload, "GET"},
	{"POST", "/v1/confirm", "", "GET"},
	{"GET", "/v1/boot", "", "POST"},
}

func TestNodeAuthRequired(t *testing.T) {
	fn := newFakeNode()
	ts := apiServer(t, &Server{Agent: &Agent{NodeAPI: fn.node()}})
	for _, ep := range nodeEndpoints {
		for _, tok := range []string{"", "wrong", testToken + "x"} {
			ans := call(t, ts, ep.method, ep.path, tok, ep.body)
			if ans.code != http.StatusUnauthorized || ans.json(t)["error"] == "" {
				t.Errorf("%s %s with token %q: %d %s, want 401", ep.method, ep.path, tok, ans.code, ans.body)
			}
		}
		ans := call(t, ts, ep.wrong, ep.path, testToken, "")
		if ans.code != http.StatusMethodNotAllowed || ans.header.Get("Allow") != ep.method {
			t.Errorf("%s %s: %d Allow %q, want 405 %s", ep.wrong, ep.path, ans.code, ans.header.Get("Allow"), ep.method)
		}
	}
	if len(fn.requests()) != 0 || fn.confirm != 0 {
		t.Errorf("unauthenticated requests ran something: %d reloads, %d confirms", len(fn.requests()), fn.confirm)
	}
}

func TestNodeEndpointsAbsentWithoutNode(t *testing.T) {
	f := newFakeDeploy()
	a := &Agent{Deploy: f.deploy}
	ts := apiServer(t, &Server{Agent: a})
	for _, ep := range nodeEndpoints {
		ans := call(t, ts, ep.method, ep.path, testToken, ep.body)
		if ans.code != http.StatusNotFound || !strings.Contains(ans.json(t)["error"].(string), "no such endpoint") {
			t.Errorf("%s %s without a Node: %d %s, want 404", ep.method, ep.path, ans.code, ans.body)
		}
	}
	// The deploy API is as before.
	if ans := call(t, ts, "POST", "/v1/deploy", testToken, validSpec); ans.code != http.StatusAccepted {
		t.Fatalf("deploy without a Node: %d %s", ans.code, ans.body)
	}
	<-f.started
	f.release <- fakeResult{}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })
	if st := a.Status(); st.Operation != OpDeploy {
		t.Errorf("operation %q, want deploy", st.Operation)
	}
	// And the Agent's own methods say why.
	if err := a.StartReload(t.Context(), ReloadRequest{Image: "b", URL: "u"}, nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("StartReload without a Node: %v", err)
	}
	if _, err := a.Confirm(t.Context()); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Confirm without a Node: %v", err)
	}
}

func TestReloadLifecycle(t *testing.T) {
	rc := newReceiver(t)
	fn := newFakeNode(
		engine.Event{Phase: engine.PhasePlan, Message: "finding b"},
		engine.Event{Phase: engine.PhaseImages, Image: "b", Done: 10, Total: 100},
	)
	a := &Agent{Node: "node-1", NodeAPI: fn.node(), Callback: rc.callback()}
	fn.deploy.settle = func() { _ = a.Flush(t.Context()) }
	ts := apiServer(t, &Server{Agent: a})

	ans := call(t, ts, "POST", "/v1/reload", testToken, validReload)
	if m := ans.json(t); ans.code != http.StatusAccepted || m["state"] != StateReloading || m["image"] != "b" {
		t.Fatalf("reload: %d %s", ans.code, ans.body)
	}
	<-fn.deploy.started
	want := ReloadRequest{Image: "b", URL: "http://x/b.tar.zst", Checksum: "sha256:ab", Format: "tar.zst", ImageUUID: "u-1", ImageName: "b-2", Tries: 2}
	if got := fn.requests(); len(got) != 1 || got[0] != want {
		t.Errorf("Reload got %+v, want %+v", got, want)
	}
	st := status(t, call(t, ts, "GET", "/v1/status", testToken, ""))
	if st.State != StateReloading || st.Operation != OpReload || st.Phase != engine.PhaseImages || st.Images["b"] != (ImageProgress{10, 100}) {
		t.Errorf("status while reloading: %+v", st)
	}

	fn.deploy.release <- fakeResult{res: &engine.DeployResult{BootInfo: testBootInfo()},
		events: []engine.Event{{Phase: engine.PhaseBootloader, Message: "committing"}}}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })
	st = status(t, call(t, ts, "GET", "/v1/status", testToken, ""))
	if st.Operation != OpReload || st.Error != "" || st.FinishedAt.IsZero() || st.Phase != engine.PhaseBootloader {
		t.Errorf("status after the reload: %+v", st)
	}
	if ans := call(t, ts, "GET", "/v1/boot-info", testToken, ""); ans.code != http.StatusOK {
		t.Errorf("boot-info after a reload: %d, want 200", ans.code)
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rc.got()
	if wantT := []string{"started", "phase", "phase", "progress", "phase", "succeeded"}; !slices.Equal(types(got), wantT) {
		t.Fatalf("events %v, want %v", types(got), wantT)
	}
	if got[0].Operation != OpReload || got[0].Image != "b" || got[5].Operation != OpReload || got[5].BootInfo == nil {
		t.Errorf("started %+v, succeeded %+v", got[0], got[5])
	}

	// A failing reload reports its step, as a failing deploy does.
	if ans := call(t, ts, "POST", "/v1/reload", testToken, `{"image": "b", "url": "http://x/gone", "no_trial": true}`); ans.code != http.StatusAccepted {
		t.Fatalf("second reload: %d %s", ans.code, ans.body)
	}
	<-fn.deploy.started
	if ans := call(t, ts, "GET", "/v1/boot-info", testToken, ""); ans.code != http.StatusNotFound {
		t.Errorf("boot-info during a reload: %d, want 404", ans.code)
	}
	fn.deploy.release <- fakeResult{err: errors.New("fetching http://x/gone: 404 Not Found")}
	waitFor(t, "failed", func() bool { return a.Status().State == StateFailed })
	st = status(t, call(t, ts, "GET", "/v1/status", testToken, ""))
	if st.Operation != OpReload || st.FailedStep != engine.PhaseImages || !strings.Contains(st.Error, "404") {
		t.Errorf("status after a failed reload: %+v", st)
	}
	if r := fn.requests(); len(r) != 2 || !r[1].NoTrial || r[1].Tries != 0 {
		t.Errorf("second request %+v", r)
	}
}

func TestReloadPanicFails(t *testing.T) {
	a := &Agent{NodeAPI: &Node{Reload: func(context.Context, ReloadRequest, func(engine.Event)) (*bootloader.BootInfo, error) {
		panic("boom")
	}}}
	done := make(chan error, 1)
	if err := a.StartReload(t.Context(), ReloadRequest{Image: "b", URL: "u"}, func(_ *bootloader.BootInfo, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "reload panicked: boom") {
		t.Errorf("err %v", err)
	}
	if st := a.Status(); st.State != StateFailed {
		t.Errorf("state %s, want failed", st.State)
	}
}

func TestNodeBusy(t *testing.T) {
	fn := newFakeNode()
	a := &Agent{NodeAPI: fn.node(), Deploy: newFakeDeploy().deploy, Power: newPowerRecorder().power}
	ts := apiServer(t, &Server{Agent: a})

	// A deploy on a node is refused whatever the agent does, before the spec is read.
	for _, body := range []string{validSpec, `not json`} {
		ans := call(t, ts, "POST", "/v1/deploy", testToken, body)
		if ans.code != http.StatusConflict || !strings.Contains(ans.json(t)["error"].(string), "deployed node") {
			t.Errorf("deploy on a node: %d %s, want 409", ans.code, ans.body)
		}
	}
	if err := a.Start(t.Context(), loadSpec(t), nil); !errors.Is(err, ErrDeployedNode) {
		t.Errorf("Start on a node: %v", err)
	}

	if ans := call(t, ts, "POST", "/v1/reload", testToken, validReload); ans.code != http.StatusAccepted {
		t.Fatalf("reload: %d %s", ans.code, ans.body)
	}
	<-fn.deploy.started
	for _, ep := range []struct{ method, path, body string }{
		{"POST", "/v1/reload", validReload},
		{"POST", "/v1/confirm", ""},
		{"GET", "/v1/boot", ""},
		{"POST", "/v1/power", `{"action": "reboot"}`},
	} {
		ans := call(t, ts, ep.method, ep.path, testToken, ep.body)
		if ans.code != http.StatusConflict || !strings.Contains(ans.json(t)["error"].(string), "reload") {
			t.Errorf("%s %s during a reload: %d %s, want 409 naming the reload", ep.method, ep.path, ans.code, ans.body)
		}
	}
	if len(fn.requests()) != 1 || fn.confirm != 0 {
		t.Errorf("ran while busy: %d reloads, %d confirms", len(fn.requests()), fn.confirm)
	}
	fn.deploy.release <- fakeResult{}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })

	// A confirm holds the node too: no reload starts in its middle.
	fn.mu.Lock()
	fn.confirmGate = make(chan struct{})
	fn.mu.Unlock()
	confirmed := make(chan answer, 1)
	go func() { confirmed <- call(t, ts, "POST", "/v1/confirm", testToken, "") }()
	<-fn.entered
	for _, ep := range []struct{ path, body string }{{"/v1/reload", validReload}, {"/v1/confirm", ""}} {
		ans := call(t, ts, "POST", ep.path, testToken, ep.body)
		if ans.code != http.StatusConflict || !strings.Contains(ans.json(t)["error"].(string), "confirm") {
			t.Errorf("%s during a confirm: %d %s, want 409", ep.path, ans.code, ans.body)
		}
	}
	close(fn.confirmGate)
	if ans := <-confirmed; ans.code != http.StatusOK {
		t.Errorf("confirm: %d %s", ans.code, ans.body)
	}
}

func TestConfirmAndBoot(t *testing.T) {
	fn := newFakeNode()
	ts := apiServer(t, &Server{Agent: &Agent{NodeAPI: fn.node()}})

	for _, body := range []string{"", "{}", " \n"} {
		ans := call(t, ts, "POST", "/v1/confirm", testToken, body)
		if m := ans.json(t); ans.code != http.StatusOK || m["confirmed"] != "b" || m["default"] != 1.0 {
			t.Errorf("confirm with body %q: %d %s", body, ans.code, ans.body)
		}
		<-fn.entered
	}
	for _, body := range []string{`{"force": true}`, `[]`, `{} {}`} {
		if ans := call(t, ts, "POST", "/v1/confirm", testToken, body); ans.code != http.StatusBadRequest {
			t.Errorf("confirm with body %q: %d %s, want 400", body, ans.code, ans.body)
		}
	}

	ans := call(t, ts, "GET", "/v1/boot", testToken, "")
	var bl engine.BootDocument
	if err := json.Unmarshal(ans.body, &bl); ans.code != http.StatusOK || err != nil ||
		bl.Source != "/dev/vda2 (multiboot)" || bl.Booted == nil || *bl.Booted != 1 || len(bl.Elements) != 1 || bl.Elements[0].RootUUID != "1234" {
		t.Errorf("boot: %d %s", ans.code, ans.body)
	}
	// The document is list --json's: its keys, not Go's field names.
	if m := ans.json(t); m["pending_once"] != nil || m["booted"] != 1.0 || m["elements"] == nil {
		t.Errorf("boot keys: %s", ans.body)
	}

	fn.bootErr = engine.Environmentf("opening the boot files: %w", &disk.LockedError{Path: "/boot"})
	ans = call(t, ts, "GET", "/v1/boot", testToken, "")
	if ans.code != http.StatusConflict || ans.json(t)["exit_code"] != float64(engine.ExitEnvironment) {
		t.Errorf("boot with the boot files locked: %d %s, want 409 with exit code 3", ans.code, ans.body)
	}
	fn.bootErr = errors.New("no boot-info.json in /boot")
	if ans := call(t, ts, "GET", "/v1/boot", testToken, ""); ans.code != http.StatusInternalServerError || !strings.Contains(ans.json(t)["error"].(string), "no boot-info.json") {
		t.Errorf("boot failing: %d %s, want 500 with the error", ans.code, ans.body)
	}

	fn.bootErr = nil

	// A Node without a function answers 501 for it, as a missing PowerFunc does.
	partial := apiServer(t, &Server{Agent: &Agent{NodeAPI: &Node{Boot: fn.boot}}})
	for _, ep := range []struct{ path, body string }{{"/v1/reload", validReload}, {"/v1/confirm", ""}} {
		if ans := call(t, partial, "POST", ep.path, testToken, ep.body); ans.code != http.StatusNotImplemented {
			t.Errorf("%s without its function: %d %s, want 501", ep.path, ans.code, ans.body)
		}
	}
	if ans := call(t, partial, "GET", "/v1/boot", testToken, ""); ans.code != http.StatusOK {
		t.Errorf("boot on a partial node: %d", ans.code)
	}
}

func TestReloadRejectsBadBodies(t *testing.T) {
	fn := newFakeNode()
	ts := apiServer(t, &Server{Agent: &Agent{NodeAPI: fn.node()}})
	for _, tc := range []struct{ body, want string }{
		{``, "empty body"},
		{`not json`, "invalid character"},
		{`{"url": "http://x/b.tar"}`, `"image" is required`},
		{`{"image": "b"}`, `"url" is required`},
		{`{"image": "b", "url": "http://x/b.tar", "tries": -1}`, `"tries" -1`},
		{`{"image": "b", "url": "http://x/b.tar", "tries": 2, "no_trial": true}`, `"tries" and "no_trial"`},
		{`{"image": "b", "url": "http://x/b.tar", "tires": 2}`, `unknown field "tires"`},
		{`{"image": "b", "url": "http://x/b.tar", "tries": "2"}`, `tries`},
		{`{"image": "b", "url": "http://x/b.tar"} {"image": "c"}`, "data after the JSON object"},
		{`{"image": "` + strings.Repeat("x", maxNodeBody) + `"}`, "too large"},
	} {
		ans := call(t, ts, "POST", "/v1/reload", testToken, tc.body)
		msg, _ := ans.json(t)["error"].(string)
		if ans.code != http.StatusBadRequest || !strings.Contains(msg, tc.want) {
			name := tc.body
			if len(name) > 80 {
				name = name[:80] + "..."
			}
			t.Errorf("reload %s: %d %q, want 400 with %q", name, ans.code, msg, tc.want)
		}
	}
	if n := len(fn.requests()); n != 0 {
		t.Errorf("%d reloads ran on bad bodies", n)
	}
	if st := status(t, call(t, ts, "GET", "/v1/status", testToken, "")); st.State != StateIdle {
		t.Errorf("state after bad bodies: %+v", st)
	}
}

// TestNodeRefusesKexec: on a node, kexec would boot a kernel without grub, so a pending
// trial would go uncounted; reboot and poweroff stay available.
func TestNodeRefusesKexec(t *testing.T) {
	fn := newFakeNode()
	powered := make(chan string, 1)
	ts := apiServer(t, &Server{Agent: &Agent{NodeAPI: fn.node(), Power: func(_ context.Context, action string) error { powered <- action; return nil }}})
	ans := call(t, ts, "POST", "/v1/power", testToken, `{"action": "kexec"}`)
	if ans.code != http.StatusBadRequest || !strings.Contains(ans.json(t)["error"].(string), "use reboot") {
		t.Errorf("kexec on a node: %d %s", ans.code, ans.body)
	}
	select {
	case a := <-powered:
		t.Errorf("power action %q ran", a)
	default:
	}
}
