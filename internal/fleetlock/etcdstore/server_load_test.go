package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/provisioner/provisioner/internal/fleetlock/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// loadStats are one load run's counts.
type loadStats struct {
	grants, full, otherFailures, transportErrors atomic.Int64
	clientMax, inHold                            atomic.Int64
}

// loadClient is one node: it locks, holds briefly and unlocks, iterations times, trying
// the next server when one does not answer, and retrying whatever is not a 200.
func loadClient(ctx context.Context, n int, urls []string, iterations int, s *loadStats) error {
	id := fmt.Sprintf("node-%02d", n)
	hc := &http.Client{Timeout: 5 * time.Second}
	call := func(path string) (int, string) {
		for attempt := 0; ; attempt++ {
			if ctx.Err() != nil {
				return 0, ""
			}
			u := urls[(attempt+n)%len(urls)]
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u+path, strings.NewReader(reqBody(id, "load")))
			req.Header.Set(fleetlock.HeaderName, "true")
			resp, err := hc.Do(req)
			if err != nil {
				s.transportErrors.Add(1)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			var e fleetlock.Error
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			return resp.StatusCode, e.Value
		}
	}
	for range iterations {
		for {
			status, value := call(fleetlock.PreRebootPath)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if status == http.StatusOK {
				break
			}
			if strings.Contains(value, "slots currently locked") {
				s.full.Add(1)
			} else {
				s.otherFailures.Add(1)
			}
			time.Sleep(time.Duration(2+rand.IntN(8)) * time.Millisecond)
		}
		s.grants.Add(1)
		n := s.inHold.Add(1)
		for m := s.clientMax.Load(); n > m && !s.clientMax.CompareAndSwap(m, n); m = s.clientMax.Load() {
		}
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		s.inHold.Add(-1)
		for {
			status, _ := call(fleetlock.SteadyStatePath)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if status == http.StatusOK {
				break
			}
			s.otherFailures.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// watchHolders follows every revision of the group's semaphore from rev on and records
// the most holders it ever had; it stops when ctx ends and reports what it saw.
func watchHolders(ctx context.Context, cli *clientv3.Client, group string, rev int64) (max *atomic.Int64, events *atomic.Int64, done chan error) {
	max, events, done = &atomic.Int64{}, &atomic.Int64{}, make(chan error, 1)
	wc := cli.Watch(clientv3.WithRequireLeader(ctx), SemaphoreKey(group), clientv3.WithRev(rev))
	go func() {
		for resp := range wc {
			if err := resp.Err(); err != nil && ctx.Err() == nil {
				done <- fmt.Errorf("watch: %w", err)
				return
			}
			for _, ev := range resp.Events {
				var sem fleetlock.Semaphore
				if err := json.Unmarshal(ev.Kv.Value, &sem); err != nil {
					done <- fmt.Errorf("revision %d: %q: %w", ev.Kv.ModRevision, ev.Kv.Value, err)
					return
				}
				events.Add(1)
				if n := int64(len(sem.Holders)); n > max.Load() {
					max.Store(n)
				}
				if uint64(len(sem.Holders)) > sem.TotalSlots {
					done <- fmt.Errorf("revision %d: %d holders on %d slots: %s", ev.Kv.ModRevision, len(sem.Holders), sem.TotalSlots, ev.Kv.Value)
					return
				}
			}
		}
		done <- nil
	}()
	return max, events, done
}

// startReplicas starts n servers, each with its own etcd client, on c.
func startReplicas(t *testing.T, c *etcdtest.Cluster, n int, groups map[string]uint64) ([]*httptest.Server, []*Store, []string) {
	var servers []*httptest.Server
	var stores []*Store
	var urls []string
	for range n {
		st := New(c.Client(t), Options{Groups: groups})
		srv := httptest.NewServer(fleetlock.NewServer(st, fleetlock.ServerOptions{Timeout: 5 * time.Second}).Handler())
		t.Cleanup(srv.Close)
		servers, stores, urls = append(servers, srv), append(stores, st), append(urls, srv.URL)
	}
	return servers, stores, urls
}

// loadCluster starts the load tests' 3-member cluster, except in -short mode.
func loadCluster(t *testing.T) *etcdtest.Cluster {
	if testing.Short() {
		t.Skip("the load runs take seconds each: not in -short mode")
	}
	return etcdtest.Start(t, 3)
}

// runLoad runs 20 clients on group "load" of 2 slots against servers on c, calling
// midRun once a third of the grants are done, and checks that nothing is over-granted
// and nothing is lost.
func runLoad(t *testing.T, c *etcdtest.Cluster, replicas int, midRun func(servers []*httptest.Server)) *loadStats {
	const clients, iterations, slots = 20, 6, 2
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	servers, stores, urls := startReplicas(t, c, replicas, map[string]uint64{"load": slots})
	if err := stores[0].Sync(ctx); err != nil {
		t.Fatal(err)
	}
	watchCli := c.Client(t)
	resp, err := watchCli.Get(ctx, SemaphoreKey("load"))
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	maxHolders, events, watchDone := watchHolders(wctx, watchCli, "load", resp.Header.Revision)

	var s loadStats
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for i := range clients {
		wg.Go(func() {
			if err := loadClient(ctx, i, urls, iterations, &s); err != nil {
				errs <- err
			}
		})
	}
	if midRun != nil {
		for s.grants.Load() < clients*iterations/3 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		midRun(servers)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Errorf("client: %v", err)
	}
	// Let the watcher catch up with the last revision, then stop it.
	final, err := watchCli.Get(ctx, SemaphoreKey("load"))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); events.Load() < final.Kvs[0].Version && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	wcancel()
	if err := <-watchDone; err != nil {
		t.Error(err)
	}
	var conflicts int64
	for _, st := range stores {
		conflicts += st.Conflicts()
	}
	t.Logf("%d clients × %d on %d slots, %d server(s), %v: grants %d, group-full answers retried %d, compare-and-swap conflicts retried %d, other failures retried %d, transport errors %d, max holders %d (watcher, %d revisions seen of %d) / %d (clients)",
		clients, iterations, slots, replicas, elapsed.Round(time.Millisecond), s.grants.Load(), s.full.Load(), conflicts,
		s.otherFailures.Load(), s.transportErrors.Load(), maxHolders.Load(), events.Load(), final.Kvs[0].Version, s.clientMax.Load())
	if s.grants.Load() != clients*iterations {
		t.Errorf("grants %d, want %d", s.grants.Load(), clients*iterations)
	}
	if maxHolders.Load() > slots || s.clientMax.Load() > slots {
		t.Errorf("over-granted: max holders %d (etcd) %d (clients) on %d slots", maxHolders.Load(), s.clientMax.Load(), slots)
	}
	if maxHolders.Load() < slots {
		t.Errorf("the watcher never saw %d holders (max %d): the load did not contend", slots, maxHolders.Load())
	}
	if events.Load() != final.Kvs[0].Version || events.Load() < 2*clients*iterations {
		t.Errorf("the watcher saw %d revisions of %d, want every one, at least %d (a grant and a release each)",
			events.Load(), final.Kvs[0].Version, 2*clients*iterations)
	}
	if got := string(final.Kvs[0].Value); got != `{"total_slots":2,"holders":[]}` {
		t.Errorf("final semaphore %s: a slot is lost", got)
	}
	return &s
}

func TestLoadSafety(t *testing.T) {
	c := loadCluster(t)
	runLoad(t, c, 1, nil)
}

func TestLoadSafetyEtcdMemberKilled(t *testing.T) {
	c := loadCluster(t)
	runLoad(t, c, 1, func([]*httptest.Server) {
		m := c.Leader(t)
		m.Kill()
		t.Logf("killed etcd member %s (the leader) mid-run", m.Name)
	})
}

func TestLoadSafetyReplicaStopped(t *testing.T) {
	c := loadCluster(t)
	s := runLoad(t, c, 2, func(servers []*httptest.Server) {
		servers[0].CloseClientConnections()
		servers[0].Close()
		t.Logf("stopped server replica %s mid-run", servers[0].URL)
	})
	if s.transportErrors.Load() == 0 {
		t.Error("no client noticed the stopped replica")
	}
}

// TestWatcherCatchesOverGrant: the load tests' watcher reports a revision with more
// holders than slots.
func TestWatcherCatchesOverGrant(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, SemaphoreKey("load"), `{"total_slots":2,"holders":["a","b"]}`)
	if err != nil {
		t.Fatal(err)
	}
	_, _, done := watchHolders(ctx, cli, "load", resp.Header.Revision)
	if _, err := cli.Put(ctx, SemaphoreKey("load"), `{"total_slots":2,"holders":["a","b","c"]}`); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "3 holders on 2 slots") {
		t.Errorf("watcher: %v", err)
	}
}
