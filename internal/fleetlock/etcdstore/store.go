// Package etcdstore keeps FleetLock's counting semaphores in etcd, under the reference
// server's keys and JSON, for fleetlock.Server. It is the only package that links etcd's
// client (and gRPC with it), so that binaries built without the server's commands (the
// deploy ramdisk's, the node tools) stay small.
package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/provisioner/provisioner/internal/fleetlock"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// KeyPrefix is where the reference server, and this one, keep every group's state in etcd.
const KeyPrefix = "com.coreos.airlock/groups/"

// SemaphoreKey is the etcd key of a group's counting semaphore, the reference server's
// layout, so that either server can run on the same etcd.
func SemaphoreKey(group string) string { return KeyPrefix + url.QueryEscape(group) + "/v1/semaphore" }

// HolderKey is the etcd key of one holder's metadata (when it took its slot), kept beside
// the semaphore so that the semaphore's value stays exactly the reference format.
func HolderKey(group, id string) string { return holderPrefix(group) + url.QueryEscape(id) }

func holderPrefix(group string) string { return KeyPrefix + url.QueryEscape(group) + "/v1/holders/" }

// holderMeta is a holder key's value. Observed marks a time at which a server first saw
// a holder it did not grant itself (one granted by another server), not when it locked.
type holderMeta struct {
	Since    time.Time `json:"since"`
	Observed bool      `json:"observed,omitempty"`
}

// Options configure a Store.
type Options struct {
	// Groups are the configured groups and their slot counts: a missing semaphore is
	// created with them, and a stored count that differs is rewritten.
	Groups map[string]uint64
	// HolderTTL, when positive, releases holders that have held a slot longer.
	HolderTTL time.Duration
	// Logger receives a line per grant, release, resize and expiry (discarded when nil).
	Logger *slog.Logger
	// MaxAttempts bounds the compare-and-swap attempts of one change (default 64).
	MaxAttempts int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Store keeps the groups' semaphores in etcd. It holds no state of its own, so any number
// of servers can share one etcd; every change is one transaction compared on the
// semaphore key's mod revision, retried when another writer got there first.
type Store struct {
	cli       *clientv3.Client
	opt       Options
	conflicts atomic.Int64
	expired   atomic.Int64
}

// Store implements fleetlock.Store.
var _ fleetlock.Store = (*Store)(nil)

// New returns a Store on an etcd client the caller keeps and closes.
func New(cli *clientv3.Client, opt Options) *Store {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = 64
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Store{cli: cli, opt: opt}
}

// Conflicts counts compare-and-swap attempts lost to another writer and retried.
func (s *Store) Conflicts() int64 { return s.conflicts.Load() }

// Expired counts holders released because they outlived the holder TTL.
func (s *Store) Expired() int64 { return s.expired.Load() }

// Configured returns a group's configured slot count.
func (s *Store) Configured(group string) (uint64, bool) {
	n, ok := s.opt.Groups[group]
	return n, ok
}

// Lock takes a slot of group for id. It is recursive: a holder locking again succeeds
// without a change. A full group fails with an error matching ErrGroupFull.
func (s *Store) Lock(ctx context.Context, group, id string) (fleetlock.Semaphore, error) {
	if _, ok := s.opt.Groups[group]; !ok {
		return fleetlock.Semaphore{}, fmt.Errorf("locking group %q: %w", group, fleetlock.ErrUnknownGroup)
	}
	st, err := s.change(ctx, group, true, func(st *groupState, now time.Time) error {
		if slices.Contains(st.sem.Holders, id) {
			return nil
		}
		if uint64(len(st.sem.Holders)) >= st.sem.TotalSlots {
			return &fleetlock.FullError{Group: group, Slots: st.sem.TotalSlots}
		}
		i, _ := slices.BinarySearch(st.sem.Holders, id)
		st.sem.Holders = slices.Insert(st.sem.Holders, i, id)
		st.meta[id] = holderMeta{Since: now}
		st.events = append(st.events, event{"slot granted", []any{"group", group, "id", id}})
		return nil
	})
	if err != nil {
		return fleetlock.Semaphore{}, fmt.Errorf("locking group %q for %q: %w", group, id, err)
	}
	return *st.sem, nil
}

// Unlock releases id's slot of group. It is idempotent: releasing a slot one does not
// hold succeeds.
func (s *Store) Unlock(ctx context.Context, group, id string) (fleetlock.Semaphore, error) {
	if _, ok := s.opt.Groups[group]; !ok {
		return fleetlock.Semaphore{}, fmt.Errorf("unlocking group %q: %w", group, fleetlock.ErrUnknownGroup)
	}
	st, err := s.change(ctx, group, true, func(st *groupState, _ time.Time) error {
		st.remove(id, "slot released")
		return nil
	})
	if err != nil {
		return fleetlock.Semaphore{}, fmt.Errorf("unlocking group %q for %q: %w", group, id, err)
	}
	return *st.sem, nil
}

// Release is the operator's unlock: it works on any stored group, configured or not, and
// reports whether id held a slot.
func (s *Store) Release(ctx context.Context, group, id string) (bool, error) {
	held := false
	_, err := s.change(ctx, group, false, func(st *groupState, _ time.Time) error {
		held = st.remove(id, "slot released by an operator")
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("releasing %q of group %q: %w", id, group, err)
	}
	return held, nil
}

// Sync brings every configured group up to date: creates missing semaphores, writes
// changed slot counts, releases holders past the TTL. Servers run it at start and then
// periodically; requests do the same for their own group.
func (s *Store) Sync(ctx context.Context) error {
	var errs []error
	for _, g := range slices.Sorted(maps.Keys(s.opt.Groups)) {
		if _, err := s.change(ctx, g, true, func(*groupState, time.Time) error { return nil }); err != nil {
			errs = append(errs, fmt.Errorf("syncing group %q: %w", g, err))
		}
	}
	return errors.Join(errs...)
}

// Healthy reports whether etcd answers a linearizable read (which needs its quorum).
func (s *Store) Healthy(ctx context.Context) error {
	if _, err := s.cli.Get(ctx, KeyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("reading %s from etcd: %w", KeyPrefix, err)
	}
	return nil
}

// Status lists every group stored in etcd or configured, sorted by name.
func (s *Store) Status(ctx context.Context) ([]fleetlock.GroupStatus, error) {
	resp, err := s.cli.Get(ctx, KeyPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("reading %s from etcd: %w", KeyPrefix, err)
	}
	groups := map[string]*fleetlock.GroupStatus{}
	get := func(name string) *fleetlock.GroupStatus {
		if groups[name] == nil {
			groups[name] = &fleetlock.GroupStatus{Name: name, Holders: []fleetlock.Holder{}}
		}
		return groups[name]
	}
	meta := map[string]map[string]holderMeta{}
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), KeyPrefix)
		esc, tail, ok := strings.Cut(rest, "/v1/")
		name, err := url.QueryUnescape(esc)
		if !ok || err != nil {
			continue
		}
		switch {
		case tail == "semaphore":
			var sem fleetlock.Semaphore
			if err := json.Unmarshal(kv.Value, &sem); err != nil {
				return nil, fmt.Errorf("decoding %s: %w: %w", kv.Key, fleetlock.ErrSemaphoreRead, err)
			}
			g := get(name)
			g.Stored, g.Slots = true, sem.TotalSlots
			for _, h := range sem.Holders {
				g.Holders = append(g.Holders, fleetlock.Holder{ID: h})
			}
		case strings.HasPrefix(tail, "holders/"):
			id, err := url.QueryUnescape(strings.TrimPrefix(tail, "holders/"))
			var m holderMeta
			if err == nil && json.Unmarshal(kv.Value, &m) == nil {
				if meta[name] == nil {
					meta[name] = map[string]holderMeta{}
				}
				meta[name][id] = m
			}
		}
	}
	for name, n := range s.opt.Groups {
		get(name).ConfiguredSlots = n
	}
	out := make([]fleetlock.GroupStatus, 0, len(groups))
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		g := groups[name]
		for i := range g.Holders {
			if m, ok := meta[name][g.Holders[i].ID]; ok {
				g.Holders[i].Since, g.Holders[i].Observed = m.Since, m.Observed
			}
		}
		out = append(out, *g)
	}
	return out, nil
}
