package fleetlock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memLockServer is an in-memory FleetLock server for the client's tests, with the
// protocol's semantics: a counting semaphore per group, recursive lock, idempotent
// unlock, 500 failed_lock when full, 400 on a missing header, a bad body or group.
type memLockServer struct {
	mu      sync.Mutex
	slots   int
	holders map[string][]string // group -> ids
	calls   []string            // "pre-reboot id group" per request that reached the semaphore
}

func newMemLockServer(t *testing.T, slots int) (*memLockServer, *httptest.Server) {
	m := &memLockServer{slots: slots, holders: map[string][]string{}}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv
}

func (m *memLockServer) fail(w http.ResponseWriter, code int, kind, value string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(&Error{Kind: kind, Value: value})
}

func (m *memLockServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || (r.URL.Path != PreRebootPath && r.URL.Path != SteadyStatePath) {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get(HeaderName) != "true" {
		m.fail(w, 400, KindInvalidClientIdentity, "missing header "+HeaderName)
		return
	}
	var req Request
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.ClientParams.ID == "" || !ValidGroup(req.ClientParams.Group) {
		m.fail(w, 400, KindInvalidClientIdentity, fmt.Sprintf("bad body: %v", err))
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, id := req.ClientParams.Group, req.ClientParams.ID
	m.calls = append(m.calls, strings.TrimPrefix(r.URL.Path, "/v1/")+" "+id+" "+g)
	held := slices.Contains(m.holders[g], id)
	switch {
	case r.URL.Path == SteadyStatePath:
		m.holders[g] = slices.DeleteFunc(m.holders[g], func(h string) bool { return h == id })
	case held:
	case len(m.holders[g]) >= m.slots:
		m.fail(w, 500, KindFailedLock, fmt.Sprintf("all %d slots of %s are taken", m.slots, g))
		return
	default:
		m.holders[g] = append(m.holders[g], id)
	}
	w.WriteHeader(http.StatusOK)
}

func (m *memLockServer) holding(group string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.holders[group])
}

func TestLockUnlock(t *testing.T) {
	m, srv := newMemLockServer(t, 1)
	ctx := context.Background()
	for _, base := range []string{srv.URL, srv.URL + "/"} {
		c := &Client{BaseURL: base, ID: "node-a", Group: "workers"}
		if err := c.PreReboot(ctx); err != nil {
			t.Fatalf("%s: pre-reboot: %v", base, err)
		}
		if err := c.PreReboot(ctx); err != nil {
			t.Errorf("%s: pre-reboot again (recursive): %v", base, err)
		}
		if h := m.holding("workers"); !slices.Equal(h, []string{"node-a"}) {
			t.Errorf("%s: holders %v", base, h)
		}
		if err := c.SteadyState(ctx); err != nil {
			t.Errorf("%s: steady-state: %v", base, err)
		}
		if err := c.SteadyState(ctx); err != nil {
			t.Errorf("%s: steady-state again (idempotent): %v", base, err)
		}
		if h := m.holding("workers"); len(h) != 0 {
			t.Errorf("%s: holders after release %v", base, h)
		}
	}
	// The default group, and the calls exactly as sent.
	if err := (&Client{BaseURL: srv.URL, ID: "node-b"}).PreReboot(ctx); err != nil {
		t.Fatal(err)
	}
	if h := m.holding(DefaultGroup); !slices.Equal(h, []string{"node-b"}) {
		t.Errorf("default group holders %v", h)
	}
	if n := len(m.calls); n != 9 || m.calls[0] != "pre-reboot node-a workers" || m.calls[2] != "steady-state node-a workers" || m.calls[8] != "pre-reboot node-b default" {
		t.Errorf("calls %q", m.calls)
	}
}

// TestRequestShape checks the request against the protocol byte for byte.
func TestRequestShape(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		b.ReadFrom(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get(HeaderName)+" "+r.Header.Get("Content-Type")+" "+b.String())
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL + "/lock/", ID: "n1", Group: "rack-1.a"}
	if err := c.PreReboot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.SteadyState(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`POST /lock/v1/pre-reboot true application/json {"client_params":{"id":"n1","group":"rack-1.a"}}`,
		`POST /lock/v1/steady-state true application/json {"client_params":{"id":"n1","group":"rack-1.a"}}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("requests\n%q\nwant\n%q", got, want)
	}
}

func TestErrorDecoding(t *testing.T) {
	_, srv := newMemLockServer(t, 1)
	ctx := context.Background()
	(&Client{BaseURL: srv.URL, ID: "holder"}).PreReboot(ctx)
	err := (&Client{BaseURL: srv.URL, ID: "other"}).PreReboot(ctx)
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindFailedLock || e.Status != 500 || !strings.Contains(e.Value, "all 1 slots") {
		t.Errorf("full group: %v (%#v)", err, e)
	}
	if err := (&Client{BaseURL: srv.URL, ID: "x", Group: "a b"}).PreReboot(ctx); err == nil || !strings.Contains(err.Error(), `group "a b"`) {
		t.Errorf("bad group sent: %v", err)
	}
	if err := (&Client{BaseURL: srv.URL}).PreReboot(ctx); err == nil || !strings.Contains(err.Error(), "no node id") {
		t.Errorf("no id: %v", err)
	}
	// A server answering 400 with its kind, and one answering text.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == PreRebootPath {
			w.WriteHeader(400)
			w.Write([]byte(`{"kind":"unknown_group","value":"no group zzz"}`))
			return
		}
		http.Error(w, "gateway down", http.StatusBadGateway)
	}))
	defer bad.Close()
	c := &Client{BaseURL: bad.URL, ID: "n"}
	err = c.PreReboot(ctx)
	if !errors.As(err, &e) || e.Kind != KindUnknownGroup || e.Status != 400 || e.Value != "no group zzz" {
		t.Errorf("400: %v", err)
	}
	err = c.SteadyState(ctx)
	if errors.As(err, &e) || err == nil || !strings.Contains(err.Error(), `HTTP 502: "gateway down"`) || !strings.Contains(err.Error(), bad.URL+SteadyStatePath) {
		t.Errorf("502 text: %v", err)
	}
}

// TestLockWaitsForSlot: a full group makes Lock wait (logging each wait) until the
// holder releases, then it takes the slot.
func TestLockWaitsForSlot(t *testing.T) {
	m, srv := newMemLockServer(t, 1)
	ctx := context.Background()
	other := &Client{BaseURL: srv.URL, ID: "other", Group: "g"}
	if err := other.PreReboot(ctx); err != nil {
		t.Fatal(err)
	}
	var logs safeBuffer
	c := &Client{BaseURL: srv.URL, ID: "me", Group: "g", Log: slog.New(slog.NewTextHandler(&logs, nil)),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}
	go func() {
		time.Sleep(300 * time.Millisecond)
		other.SteadyState(ctx)
	}()
	start := time.Now()
	if err := c.Lock(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("Lock returned after %v; the slot was free after 300ms", d)
	}
	if h := m.holding("g"); !slices.Equal(h, []string{"me"}) {
		t.Errorf("holders %v", h)
	}
	waits := strings.Count(logs.String(), "could not take the reboot slot yet, waiting")
	if waits < 3 || !strings.Contains(logs.String(), "failed_lock") || !strings.Contains(logs.String(), "take: done") {
		t.Errorf("%d waits logged:\n%s", waits, logs.String())
	}
}

// TestLockTimeout: a group that stays full makes Lock fail after its timeout, with an
// error naming the group and the server, without taking a slot.
func TestLockTimeout(t *testing.T) {
	m, srv := newMemLockServer(t, 1)
	ctx := context.Background()
	(&Client{BaseURL: srv.URL, ID: "other", Group: "g"}).PreReboot(ctx)
	c := &Client{BaseURL: srv.URL, ID: "me", Group: "g", MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	start := time.Now()
	err := c.Lock(ctx, 400*time.Millisecond)
	d := time.Since(start)
	var te *LockTimeoutError
	var e *Error
	if !errors.Is(err, ErrLockTimeout) || !errors.As(err, &te) || !errors.As(err, &e) || e.Kind != KindFailedLock {
		t.Fatalf("err = %v", err)
	}
	if te.Tries < 3 || !strings.Contains(err.Error(), `group "g" at `+srv.URL) {
		t.Errorf("err = %v (%d tries)", err, te.Tries)
	}
	if d < 400*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want about 400ms", d)
	}
	if h := m.holding("g"); !slices.Equal(h, []string{"other"}) {
		t.Errorf("holders %v", h)
	}
	// A server that cannot be reached is retried the same way; timeout 0 tries once.
	srv.Close()
	err = c.Lock(ctx, 0)
	if !errors.Is(err, ErrLockTimeout) || !errors.As(err, &te) || te.Tries != 1 || !strings.Contains(err.Error(), "connect") {
		t.Errorf("closed server: %v", err)
	}
	if err := c.Unlock(ctx, 100*time.Millisecond); errors.Is(err, ErrLockTimeout) || !errors.As(err, &te) || !strings.Contains(err.Error(), "could not release the reboot slot in group") {
		t.Errorf("unlock, closed server: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := c.Lock(cctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled: %v", err)
	}
}

// safeBuffer is a bytes.Buffer for a logger written from another goroutine.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUnlockRetries: a release at boot that finds the server failing (or not yet
// reachable) is tried again until the server takes it.
func TestUnlockRetries(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			w.WriteHeader(500)
			w.Write([]byte(`{"kind":"failed_sem_init","value":"etcd unreachable"}`))
		}
	}))
	defer srv.Close()
	var logs safeBuffer
	c := &Client{BaseURL: srv.URL, ID: "n", Log: slog.New(slog.NewTextHandler(&logs, nil)), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	if err := c.Unlock(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if calls != 3 || strings.Count(logs.String(), "could not release the reboot slot yet") != 2 || !strings.Contains(logs.String(), "failed_sem_init") {
		t.Errorf("%d calls\n%s", calls, logs.String())
	}
}
