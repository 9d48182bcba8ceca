package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

var endpoints = []struct{ method, path, body, wrong string }{
	{"GET", "/v1/status", "", "POST"},
	{"POST", "/v1/deploy", validSpec, "GET"},
	{"GET", "/v1/plan", "", "DELETE"},
	{"GET", "/v1/boot-info", "", "PUT"},
	{"POST", "/v1/power", `{"action": "reboot"}`, "GET"},
}

func TestAuthRequired(t *testing.T) {
	f := newFakeDeploy()
	var powered atomic.Int32
	a := &Agent{Deploy: f.deploy, Power: func(context.Context, string) error { powered.Add(1); return nil }}
	ts := apiServer(t, &Server{Agent: a})
	for _, ep := range endpoints {
		for _, tok := range []string{"", "wrong", testToken + "x", strings.ToUpper(testToken)} {
			ans := call(t, ts, ep.method, ep.path, tok, ep.body)
			if ans.code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d, want 401", ep.method, ep.path, tok, ans.code)
				continue
			}
			if got := ans.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("%s %s: WWW-Authenticate %q", ep.method, ep.path, got)
			}
			if ans.json(t)["error"] == "" {
				t.Errorf("%s %s: no error message", ep.method, ep.path)
			}
		}
	}
	// Another scheme with the right token is refused too.
	req, _ := http.NewRequest("GET", ts.URL+"/v1/status", nil)
	req.Header.Set("Authorization", "Basic "+testToken)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("Basic scheme: %d, want 401", resp.StatusCode)
	}
	if f.count() != 0 || powered.Load() != 0 {
		t.Errorf("unauthenticated requests ran something: %d deploys, %d power actions", f.count(), powered.Load())
	}
}

func TestNoTokenFailsClosed(t *testing.T) {
	// Without a token and without Insecure, every request is refused, even one whose
	// bearer token is the empty token.
	h := (&Server{Agent: &Agent{}}).Handler()
	for _, auth := range []string{"", "Bearer ", "Bearer"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/status", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("no token configured, Authorization %q: %d, want 401", auth, rec.Code)
		}
	}

	open := apiServer(t, &Server{Agent: &Agent{}, Insecure: true})
	if ans := call(t, open, "GET", "/v1/status", "", ""); ans.code != http.StatusOK {
		t.Errorf("Insecure without token: %d, want 200", ans.code)
	}
}

func TestMethodsAndPaths(t *testing.T) {
	ts := apiServer(t, &Server{Agent: &Agent{Deploy: newFakeDeploy().deploy}})
	for _, ep := range endpoints {
		ans := call(t, ts, ep.wrong, ep.path, testToken, "")
		if ans.code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d, want 405", ep.wrong, ep.path, ans.code)
		}
		if got := ans.header.Get("Allow"); got != ep.method {
			t.Errorf("%s %s: Allow %q, want %q", ep.wrong, ep.path, got, ep.method)
		}
		if ans.json(t)["error"] == "" {
			t.Errorf("%s %s: no error message", ep.wrong, ep.path)
		}
	}
	if ans := call(t, ts, "GET", "/v1/nope", testToken, ""); ans.code != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", ans.code)
	}
}

type problemsAnswer struct {
	Error    string           `json:"error"`
	Problems []schema.Problem `json:"problems"`
}

func TestDeployRejectsBadSpecs(t *testing.T) {
	f := newFakeDeploy()
	ts := apiServer(t, &Server{Agent: &Agent{Deploy: f.deploy}, MaxBody: 1 << 10})
	for _, tc := range []struct {
		name, body string
		pointers   []string
	}{
		{"not JSON", `{"images": [`, []string{""}},
		{"empty body", ``, []string{""}},
		{"not an object", `[]`, []string{""}},
		{"schema and semantics", strings.Replace(strings.Replace(validSpec, `"http://x/a.tar"`, `5`, 1), `"mount": "/"`, `"mount": "/x"`, 1),
			[]string{"/images/0/target", "/images/0/url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ans := call(t, ts, "POST", "/v1/deploy", testToken, tc.body)
			if ans.code != http.StatusBadRequest {
				t.Fatalf("%d, want 400: %s", ans.code, ans.body)
			}
			var pa problemsAnswer
			if err := json.Unmarshal(ans.body, &pa); err != nil {
				t.Fatal(err)
			}
			if pa.Error != "invalid spec" {
				t.Errorf("error %q", pa.Error)
			}
			var got []string
			for _, p := range pa.Problems {
				if p.Message == "" {
					t.Errorf("problem at %q without message", p.Pointer)
				}
				got = append(got, p.Pointer)
			}
			if strings.Join(got, ",") != strings.Join(tc.pointers, ",") {
				t.Errorf("pointers %q, want %q (%s)", got, tc.pointers, ans.body)
			}
		})
	}
	big := `{"images": [], "x": "` + strings.Repeat("a", 2<<10) + `"}`
	if ans := call(t, ts, "POST", "/v1/deploy", testToken, big); ans.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", ans.code)
	}
	if n := f.count(); n != 0 {
		t.Errorf("a bad spec started %d deploys", n)
	}
}

// TestDeployRefusesHostileSpecs posts bodies of the largest size the agent takes, of
// shapes whose validation once took a minute and gigabytes, and a spec with a key given
// twice: each is answered 400 with its one problem, and no deploy starts.
func TestDeployRefusesHostileSpecs(t *testing.T) {
	f := newFakeDeploy()
	ts := apiServer(t, &Server{Agent: &Agent{Deploy: f.deploy}})
	const size = 4 << 20 // the default MaxBody, and what schema.Load reads
	fill := func(prefix, elem, suffix string) string {
		n := (size - len(prefix) - len(suffix) + 1) / (len(elem) + 1)
		return prefix + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + suffix
	}
	for _, tc := range []struct {
		name, body string
		want       schema.Problem
	}{
		{"empty images", fill(`{"images": [`, `{}`, `]}`),
			schema.Problem{Pointer: "/images", Message: "1398097 images; at most 64 are allowed"}},
		{"volumes", fill(`{"partitions": [{"type": "disk", "volumes": [`, `{}`, `]}]}`),
			schema.Problem{Pointer: "/partitions/0/volumes", Message: "1398085 volumes in this disk or volume group; at most 128 are allowed"}},
		{"nested arrays", strings.Repeat("[", size/2) + strings.Repeat("]", size/2),
			schema.Problem{Pointer: strings.Repeat("/0", 16), Message: "values nested more than 16 deep; a provision.json nests at most 6 deep"}},
		{"duplicate key", strings.Replace(validSpec, `"name": "a",`, `"name": "a", "name": "a",`, 1),
			schema.Problem{Pointer: "/images/0/name", Message: `duplicate key "name": first at line 1, again at line 1`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.body) > size {
				t.Fatalf("test body is %d bytes, more than %d", len(tc.body), size)
			}
			ans := call(t, ts, "POST", "/v1/deploy", testToken, tc.body)
			if ans.code != http.StatusBadRequest {
				t.Fatalf("%d, want 400: %.300s", ans.code, ans.body)
			}
			var pa problemsAnswer
			if err := json.Unmarshal(ans.body, &pa); err != nil {
				t.Fatal(err)
			}
			if len(pa.Problems) != 1 || pa.Problems[0] != tc.want {
				t.Errorf("problems %v, want only %v", pa.Problems, tc.want)
			}
		})
	}
	if n := f.count(); n != 0 {
		t.Errorf("a hostile spec started %d deploys", n)
	}
}

func status(t *testing.T, ans answer) Status {
	t.Helper()
	var s Status
	if err := json.Unmarshal(ans.body, &s); err != nil {
		t.Fatalf("status: %v: %s", err, ans.body)
	}
	return s
}

func TestDeployLifecycle(t *testing.T) {
	f := newFakeDeploy(
		engine.Event{Phase: engine.PhasePlan, Message: "planning"},
		engine.Event{Phase: engine.PhasePartition, Message: "writing tables"},
		engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 10, Total: 100},
	)
	var planCalls atomic.Int32
	a := &Agent{Deploy: f.deploy, Plan: func(context.Context, *schema.Spec) (*partition.Layout, error) {
		planCalls.Add(1)
		return testLayout("planned"), nil
	}}
	ts := apiServer(t, &Server{Agent: a})

	st := status(t, call(t, ts, "GET", "/v1/status", testToken, ""))
	if st.State != StateIdle || !st.StartedAt.IsZero() {
		t.Errorf("fresh status %+v", st)
	}
	if ans := call(t, ts, "GET", "/v1/boot-info", testToken, ""); ans.code != http.StatusNotFound {
		t.Errorf("boot-info before a deploy: %d, want 404", ans.code)
	}

	ans := call(t, ts, "POST", "/v1/deploy", testToken, validSpec)
	if ans.code != http.StatusAccepted || ans.json(t)["state"] != StateDeploying {
		t.Fatalf("deploy: %d %s", ans.code, ans.body)
	}
	<-f.started // the request is over; the deploy still runs
	st = status(t, call(t, ts, "GET", "/v1/status", testToken, ""))
	if st.State != StateDeploying || st.Phase != engine.PhaseImages || st.Images["a"] != (ImageProgress{10, 100}) || st.StartedAt.IsZero() {
		t.Errorf("status while deploying: %+v", st)
	}
	if ans := call(t, ts, "POST", "/v1/deploy", testToken, validSpec); ans.code != http.StatusConflict {
		t.Errorf("second deploy: %d, want 409", ans.code)
	}
	if ans := call(t, ts, "GET", "/v1/plan", testToken, ""); ans.code != http.StatusConflict {
		t.Errorf("plan while deploying: %d, want 409", ans.code)
	}

	f.release <- fakeResult{res: &engine.DeployResult{Layout: testLayout("deployed"), BootInfo: testBootInfo()},
		events: []engine.Event{{Phase: engine.PhaseImages, Image: "a", Done: 100, Total: 100}, {Phase: engine.PhaseBootloader}}}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })
	st = status(t, call(t, ts, "GET", "/v1/status", testToken, ""))
	if st.Error != "" || st.FailedStep != "" || st.FinishedAt.IsZero() || st.Phase != engine.PhaseBootloader || st.Images["a"].Done != 100 {
		t.Errorf("status after success: %+v", st)
	}

	ans = call(t, ts, "GET", "/v1/boot-info", testToken, "")
	want, _ := testBootInfo().Encode()
	if ans.code != http.StatusOK || !bytes.Equal(ans.body, want) {
		t.Errorf("boot-info: %d %s, want %s", ans.code, ans.body, want)
	}
	// After a deploy, the plan is what was deployed, not a new probe.
	ans = call(t, ts, "GET", "/v1/plan", testToken, "")
	var l partition.Layout
	if err := json.Unmarshal(ans.body, &l); ans.code != http.StatusOK || err != nil || l.Seed != "deployed" {
		t.Errorf("plan after deploy: %d %s", ans.code, ans.body)
	}
	if planCalls.Load() != 0 {
		t.Errorf("PlanFunc called %d times", planCalls.Load())
	}

	// A new deploy forgets the old boot info: its disks are being rewritten.
	if ans := call(t, ts, "POST", "/v1/deploy", testToken, validSpec); ans.code != http.StatusAccepted {
		t.Fatalf("redeploy: %d", ans.code)
	}
	<-f.started
	if ans := call(t, ts, "GET", "/v1/boot-info", testToken, ""); ans.code != http.StatusNotFound {
		t.Errorf("boot-info during a new deploy: %d, want 404", ans.code)
	}
	f.release <- fakeResult{err: errors.New("boom")}
	waitFor(t, "failed", func() bool { return a.Status().State == StateFailed })
}

func TestDeployFailureReportsStep(t *testing.T) {
	f := newFakeDeploy(
		engine.Event{Phase: engine.PhasePlan},
		engine.Event{Phase: engine.PhasePartition},
		engine.Event{Phase: engine.PhaseImages, Image: "a", Done: 5, Total: -1},
	)
	a := &Agent{Deploy: f.deploy}
	ts := apiServer(t, &Server{Agent: a})
	if ans := call(t, ts, "POST", "/v1/deploy", testToken, validSpec); ans.code != http.StatusAccepted {
		t.Fatalf("deploy: %d", ans.code)
	}
	<-f.started
	f.release <- fakeResult{err: errors.New("fetching a: 404 Not Found")}
	waitFor(t, "failed", func() bool { return a.Status().State == StateFailed })
	st := status(t, call(t, ts, "GET", "/v1/status", testToken, ""))
	if st.Error != "fetching a: 404 Not Found" || st.FailedStep != engine.PhaseImages || st.Images["a"] != (ImageProgress{5, -1}) {
		t.Errorf("status after failure: %+v", st)
	}
	if ans := call(t, ts, "GET", "/v1/boot-info", testToken, ""); ans.code != http.StatusNotFound {
		t.Errorf("boot-info after a failure: %d, want 404", ans.code)
	}
	// Failed, not busy: another deploy may start.
	if ans := call(t, ts, "POST", "/v1/deploy", testToken, validSpec); ans.code != http.StatusAccepted {
		t.Errorf("deploy after failure: %d, want 202", ans.code)
	}
	<-f.started
	f.release <- fakeResult{}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })
}

func TestPlanEndpoint(t *testing.T) {
	var planCalls atomic.Int32
	var planErr error
	var mu sync.Mutex
	f := newFakeDeploy()
	a := &Agent{Deploy: f.deploy, Plan: func(ctx context.Context, spec *schema.Spec) (*partition.Layout, error) {
		planCalls.Add(1)
		if spec == nil || len(spec.Images) != 1 {
			t.Errorf("PlanFunc got spec %+v", spec)
		}
		mu.Lock()
		defer mu.Unlock()
		if planErr != nil {
			return nil, planErr
		}
		return testLayout("probe"), nil
	}}
	ts := apiServer(t, &Server{Agent: a})
	if ans := call(t, ts, "GET", "/v1/plan", testToken, ""); ans.code != http.StatusNotFound {
		t.Errorf("plan before any spec: %d, want 404", ans.code)
	}
	call(t, ts, "POST", "/v1/deploy", testToken, validSpec)
	<-f.started
	f.release <- fakeResult{err: errors.New("disk vda busy")} // failed, so nothing deployed to read the plan from

	waitFor(t, "failed", func() bool { return a.Status().State == StateFailed })
	mu.Lock()
	planErr = &partition.LayoutError{Problems: []schema.Problem{{Pointer: "/partitions/0/size", Message: "10 GiB does not fit vda (8 GiB)"}}}
	mu.Unlock()
	ans := call(t, ts, "GET", "/v1/plan", testToken, "")
	var pa problemsAnswer
	if err := json.Unmarshal(ans.body, &pa); ans.code != http.StatusUnprocessableEntity || err != nil ||
		len(pa.Problems) != 1 || pa.Problems[0].Pointer != "/partitions/0/size" {
		t.Errorf("plan that does not fit: %d %s", ans.code, ans.body)
	}
	mu.Lock()
	planErr = nil
	mu.Unlock()
	for range 2 {
		ans := call(t, ts, "GET", "/v1/plan", testToken, "")
		var l partition.Layout
		if err := json.Unmarshal(ans.body, &l); ans.code != http.StatusOK || err != nil || l.Seed != "probe" {
			t.Errorf("plan: %d %s", ans.code, ans.body)
		}
	}
	if n := planCalls.Load(); n != 2 {
		t.Errorf("PlanFunc called %d times, want 2 (one failure, then one kept)", n)
	}

	noPlan := apiServer(t, &Server{Agent: &Agent{Deploy: f.deploy}})
	call(t, noPlan, "POST", "/v1/deploy", testToken, validSpec)
	<-f.started
	f.release <- fakeResult{err: errors.New("x")}
	waitFor(t, "failed", func() bool {
		return call(t, noPlan, "GET", "/v1/status", testToken, "").json(t)["state"] == StateFailed
	})
	if ans := call(t, noPlan, "GET", "/v1/plan", testToken, ""); ans.code != http.StatusNotImplemented {
		t.Errorf("plan without PlanFunc: %d, want 501", ans.code)
	}
}

// powerRecorder is a PowerFunc that records its calls.
type powerRecorder struct {
	mu      sync.Mutex
	actions []string
	err     error
	called  chan string
}

func newPowerRecorder() *powerRecorder { return &powerRecorder{called: make(chan string, 8)} }

func (p *powerRecorder) power(ctx context.Context, action string) error {
	p.mu.Lock()
	p.actions = append(p.actions, action)
	err := p.err
	p.mu.Unlock()
	p.called <- action
	return err
}

func (p *powerRecorder) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.actions)
}

func TestPower(t *testing.T) {
	for _, action := range []string{ActionReboot, ActionPoweroff, ActionKexec} {
		t.Run(action, func(t *testing.T) {
			p := newPowerRecorder()
			a := &Agent{Deploy: newFakeDeploy().deploy, Power: p.power}
			// The delay is long enough that the answer is read before the action runs
			// even on a loaded machine, and short enough to keep the test quick.
			ts := apiServer(t, &Server{Agent: a, PowerDelay: 200 * time.Millisecond})
			ans := call(t, ts, "POST", "/v1/power", testToken, `{"action": "`+action+`"}`)
			if ans.code != http.StatusAccepted {
				t.Fatalf("%d %s", ans.code, ans.body)
			}
			if n := p.count(); n != 0 {
				t.Errorf("power action ran before the answer was read")
			}
			if got := <-p.called; got != action {
				t.Errorf("PowerFunc got %q", got)
			}
			// While the machine is going down, nothing else may start.
			if ans := call(t, ts, "POST", "/v1/power", testToken, `{"action": "reboot"}`); ans.code != http.StatusConflict {
				t.Errorf("second power action: %d, want 409", ans.code)
			}
			if ans := call(t, ts, "POST", "/v1/deploy", testToken, validSpec); ans.code != http.StatusConflict {
				t.Errorf("deploy after a power action: %d, want 409", ans.code)
			}
		})
	}
}

func TestPowerRejects(t *testing.T) {
	p := newPowerRecorder()
	f := newFakeDeploy()
	a := &Agent{Deploy: f.deploy, Power: p.power}
	ts := apiServer(t, &Server{Agent: a, PowerDelay: time.Millisecond})
	for _, body := range []string{`{"action": "halt"}`, `{"action": ""}`, `{}`, `{"action": "reboot", "force": true}`, `not json`, ``} {
		ans := call(t, ts, "POST", "/v1/power", testToken, body)
		if ans.code != http.StatusBadRequest || ans.json(t)["error"] == "" {
			t.Errorf("power %q: %d %s, want 400", body, ans.code, ans.body)
		}
	}
	call(t, ts, "POST", "/v1/deploy", testToken, validSpec)
	<-f.started
	if ans := call(t, ts, "POST", "/v1/power", testToken, `{"action": "reboot"}`); ans.code != http.StatusConflict {
		t.Errorf("power while deploying: %d, want 409", ans.code)
	}
	f.release <- fakeResult{}
	waitFor(t, "succeeded", func() bool { return a.Status().State == StateSucceeded })

	// A failed action leaves the agent usable.
	p.mu.Lock()
	p.err = errors.New("kexec: no kernel loaded")
	p.mu.Unlock()
	if ans := call(t, ts, "POST", "/v1/power", testToken, `{"action": "kexec"}`); ans.code != http.StatusAccepted {
		t.Fatalf("power: %d", ans.code)
	}
	<-p.called
	waitFor(t, "power reservation released", func() bool {
		return call(t, ts, "POST", "/v1/power", testToken, `{"action": "reboot"}`).code == http.StatusAccepted
	})
	<-p.called
	if p.count() != 2 || len(p.called) != 0 {
		t.Errorf("power actions %v", p.actions)
	}

	noPower := apiServer(t, &Server{Agent: &Agent{}})
	if ans := call(t, noPower, "POST", "/v1/power", testToken, `{"action": "reboot"}`); ans.code != http.StatusNotImplemented {
		t.Errorf("power without PowerFunc: %d, want 501", ans.code)
	}
}
