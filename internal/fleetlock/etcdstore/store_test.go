package etcdstore

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/provisioner/provisioner/internal/fleetlock/etcdtest"
)

// rawGet reads one key's value straight from etcd ("" when missing).
func rawGet(t *testing.T, c *etcdtest.Cluster, key string) string {
	t.Helper()
	resp, err := c.Client(t).Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func TestStoreLayoutResizeReleaseTTL(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := context.Background()
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := func() time.Time { return clock }
	s := New(c.Client(t), Options{Groups: map[string]uint64{"default": 2, "workers": 1}, Now: now})

	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rawGet(t, c, "com.coreos.airlock/groups/default/v1/semaphore"); got != `{"total_slots":2,"holders":[]}` {
		t.Errorf("created semaphore %s", got)
	}
	for _, id := range []string{"b", "a", "a"} {
		if _, err := s.Lock(ctx, "default", id); err != nil {
			t.Fatalf("lock %s: %v", id, err)
		}
	}
	if _, err := s.Lock(ctx, "default", "c"); !errors.Is(err, fleetlock.ErrGroupFull) {
		t.Errorf("third lock on 2 slots: %v", err)
	}
	if got := rawGet(t, c, SemaphoreKey("default")); got != `{"total_slots":2,"holders":["a","b"]}` {
		t.Errorf("reference layout %s", got)
	}
	if got := rawGet(t, c, "com.coreos.airlock/groups/default/v1/holders/a"); got != `{"since":"2026-01-02T03:04:05Z"}` {
		t.Errorf("holder key %s", got)
	}
	if _, err := s.Unlock(ctx, "default", "nobody"); err != nil {
		t.Errorf("unlocking what one does not hold: %v", err)
	}
	if _, err := s.Lock(ctx, "nope", "a"); !errors.Is(err, fleetlock.ErrUnknownGroup) {
		t.Errorf("unknown group: %v", err)
	}

	// Resize: a new store (a restarted server) with 3 slots rewrites the count.
	s3 := New(c.Client(t), Options{Groups: map[string]uint64{"default": 3}, Now: now})
	if _, err := s3.Lock(ctx, "default", "c"); err != nil {
		t.Fatalf("lock after resize to 3: %v", err)
	}
	if got := rawGet(t, c, SemaphoreKey("default")); got != `{"total_slots":3,"holders":["a","b","c"]}` {
		t.Errorf("after resize %s", got)
	}

	// Operator release, on a group it does not even need configured.
	op := New(c.Client(t), Options{})
	if held, err := op.Release(ctx, "default", "b"); err != nil || !held {
		t.Errorf("release b: %v %v", held, err)
	}
	if held, err := op.Release(ctx, "default", "b"); err != nil || held {
		t.Errorf("release b again: %v %v", held, err)
	}
	if got := rawGet(t, c, HolderKey("default", "b")); got != "" {
		t.Errorf("holder key of b left: %s", got)
	}

	// TTL: a holder older than it is released on the next request or sync.
	clock = clock.Add(time.Hour)
	ttl := New(c.Client(t), Options{Groups: map[string]uint64{"default": 3}, HolderTTL: 30 * time.Minute, Now: now})
	if _, err := ttl.Lock(ctx, "default", "d"); err != nil {
		t.Fatal(err)
	}
	if got := rawGet(t, c, SemaphoreKey("default")); got != `{"total_slots":3,"holders":["d"]}` {
		t.Errorf("after TTL %s", got)
	}
	if ttl.Expired() != 2 {
		t.Errorf("expired %d, want 2", ttl.Expired())
	}
	st, err := ttl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].Name != "default" || st[0].Slots != 3 || len(st[0].Holders) != 1 ||
		!st[0].Holders[0].Since.Equal(clock) || st[1].Name != "workers" || st[1].ConfiguredSlots != 0 {
		t.Errorf("status %+v", st)
	}
}

// TestStoreForeignHolders: holders written by another server (the reference one, which
// writes no holder keys) get an observed time, and its JSON is read as is.
func TestStoreForeignHolders(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	cli := c.Client(t)
	if _, err := cli.Put(ctx, SemaphoreKey("default"), `{"total_slots":1,"holders":["ghost"]}`); err != nil {
		t.Fatal(err)
	}
	s := New(cli, Options{Groups: map[string]uint64{"default": 1}})
	if _, err := s.Lock(ctx, "default", "n1"); !errors.Is(err, fleetlock.ErrGroupFull) {
		t.Fatalf("lock with a foreign holder: %v", err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Status(ctx)
	if len(st) != 1 || len(st[0].Holders) != 1 || !st[0].Holders[0].Observed || st[0].Holders[0].Since.IsZero() {
		t.Errorf("status %+v", st)
	}
}

// TestServerRunExpiresHolders: the periodic sync releases a holder past the TTL with no
// request coming in, and logs it.
func TestServerRunExpiresHolders(t *testing.T) {
	c := etcdtest.Start(t, 1)
	var log syncLog
	st := New(c.Client(t), Options{Groups: map[string]uint64{"default": 1}, HolderTTL: 300 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&log, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := st.Lock(ctx, "default", "ghost"); err != nil {
		t.Fatal(err)
	}
	go fleetlock.NewServer(st, fleetlock.ServerOptions{SyncEvery: 100 * time.Millisecond}).Run(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for rawGet(t, c, SemaphoreKey("default")) != `{"total_slots":1,"holders":[]}` {
		if time.Now().After(deadline) {
			t.Fatalf("ghost not released: %s", rawGet(t, c, SemaphoreKey("default")))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Expired() != 1 || !strings.Contains(log.String(), `"msg":"holder TTL expired, slot released","group":"default","id":"ghost"`) {
		t.Errorf("expired %d, log:\n%s", st.Expired(), log.String())
	}
}

// syncLog is a log destination safe for concurrent writers and readers.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
