package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

const testToken = "s3cret-token"

const validSpec = `{"images": [{"name": "a", "url": "http://x/a.tar", "target": "/", "boot": true}],
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "10 GiB",
  "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`

func loadSpec(t *testing.T) *schema.Spec {
	t.Helper()
	spec, _, err := schema.Load(strings.NewReader(validSpec))
	if err != nil {
		t.Fatalf("test spec: %v", err)
	}
	return spec
}

// waitFor polls cond for up to 10 s: a generous bound, only hit when something is broken.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeDeploy is a DeployFunc whose deploys emit a script of events and then block until
// the test releases them with a result.
type fakeDeploy struct {
	script  []engine.Event
	release chan fakeResult
	started chan struct{} // receives once per deploy, after the script
	// settle, when set, runs after each event: tests that count progress events make
	// it wait for the callback (Agent.Flush), so the queue never coalesces them.
	settle func()
	mu     sync.Mutex
	calls  int
}

type fakeResult struct {
	res *engine.DeployResult
	err error
	// events are emitted after the release, before returning.
	events []engine.Event
}

func newFakeDeploy(script ...engine.Event) *fakeDeploy {
	return &fakeDeploy{script: script, release: make(chan fakeResult), started: make(chan struct{}, 8)}
}

func (f *fakeDeploy) deploy(ctx context.Context, spec *schema.Spec, events func(engine.Event)) (*engine.DeployResult, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	for _, e := range f.script {
		events(e)
		f.wait()
	}
	f.started <- struct{}{}
	select {
	case r := <-f.release:
		for _, e := range r.events {
			events(e)
			f.wait()
		}
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeDeploy) wait() {
	if f.settle != nil {
		f.settle()
	}
}

func (f *fakeDeploy) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func testBootInfo() *bootloader.BootInfo {
	return &bootloader.BootInfo{
		Elements:       []bootloader.Element{{GrubID: 0, ImageName: "a", OSID: "a", RootUUID: "1234", BootName: "a"}},
		CurrentElement: 0, GrubDir: "grub",
	}
}

func testLayout(seed string) *partition.Layout {
	return &partition.Layout{Seed: seed, BootMode: "both", BootImage: "a"}
}

// receiver is a fake conductor: it records the events POSTed to it.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	events  []Event
	auth    []string
	seqs    []int64 // of every attempt
	answers []int   // status codes to answer in turn; then 204
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	t.Helper()
	rc := &receiver{answers: answers}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e Event
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		code := http.StatusNoContent
		if len(rc.answers) > 0 {
			code, rc.answers = rc.answers[0], rc.answers[1:]
		}
		rc.auth = append(rc.auth, r.Header.Get("Authorization"))
		rc.seqs = append(rc.seqs, e.Seq)
		if code < 300 {
			rc.events = append(rc.events, e)
		}
		rc.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Event(nil), rc.events...)
}

func (rc *receiver) attempts() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.auth)
}

func (rc *receiver) callback() *Callback {
	return &Callback{URL: rc.URL, Token: "cb-token", Backoff: func(int) time.Duration { return time.Millisecond }}
}

func types(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// apiServer serves s over httptest and closes it at the end.
func apiServer(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	if s.Token == "" && !s.Insecure {
		s.Token = testToken
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", a.code, err, a.body)
	}
	return m
}

// call makes one request with the bearer token tok ("": no Authorization header).
func call(t *testing.T, ts *httptest.Server, method, path, tok, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" && len(bytes.TrimSpace(data)) > 0 {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return answer{resp.StatusCode, resp.Header, data}
}
