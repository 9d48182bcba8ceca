package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/provisioner/provisioner/internal/fleetlock"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// groupState is one group's semaphore and holder metadata as read at one etcd revision,
// changed in memory, then written back if nothing changed in between.
type groupState struct {
	group   string
	sem     *fleetlock.Semaphore // nil when the key does not exist
	modRev  int64                // the semaphore key's mod revision (0 when missing)
	meta    map[string]holderMeta
	events  []event // logged once the change is committed
	expired int     // holders released by the TTL, counted once committed
}

// event is a log line held back until its change is committed.
type event struct {
	msg  string
	args []any
}

// remove drops id from the holders and reports whether it held a slot.
func (st *groupState) remove(id, why string) bool {
	i, found := slices.BinarySearch(st.sem.Holders, id)
	if !found {
		i = slices.Index(st.sem.Holders, id) // a holder list some other writer left unsorted
	}
	if i < 0 || i >= len(st.sem.Holders) || st.sem.Holders[i] != id {
		return false
	}
	st.sem.Holders = slices.Delete(st.sem.Holders, i, i+1)
	delete(st.meta, id)
	st.events = append(st.events, event{why, []any{"group", st.group, "id", id}})
	return true
}

// read fetches the semaphore and its holder keys in one transaction (one revision).
func (s *Store) read(ctx context.Context, group string) (*groupState, error) {
	key := SemaphoreKey(group)
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(key),
		clientv3.OpGet(holderPrefix(group), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", fleetlock.ErrSemaphoreRead, key, err)
	}
	st := &groupState{group: group, meta: map[string]holderMeta{}}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		st.sem = &fleetlock.Semaphore{}
		if err := json.Unmarshal(kvs[0].Value, st.sem); err != nil {
			return nil, fmt.Errorf("%w %s: decoding %q: %w", fleetlock.ErrSemaphoreRead, key, kvs[0].Value, err)
		}
		if st.sem.Holders == nil {
			st.sem.Holders = []string{}
		}
		st.modRev = kvs[0].ModRevision
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		id, err := url.QueryUnescape(strings.TrimPrefix(string(kv.Key), holderPrefix(group)))
		var m holderMeta
		if err != nil || json.Unmarshal(kv.Value, &m) != nil {
			continue // rewritten or deleted by the next change
		}
		st.meta[id] = m
	}
	return st, nil
}

// change reads group, reconciles it with the configuration (creation when create is
// set, slot count, holder TTL, holder metadata), applies fn, and writes the result in one
// transaction compared on the semaphore's mod revision; a lost compare is retried with a
// jittered backoff, up to MaxAttempts. Nothing is written when nothing changed.
func (s *Store) change(ctx context.Context, group string, create bool, fn func(*groupState, time.Time) error) (*groupState, error) {
	backoff := time.Millisecond
	for range s.opt.MaxAttempts {
		st, err := s.read(ctx, group)
		if err != nil {
			return nil, err
		}
		if st.sem == nil && !create {
			st.sem = &fleetlock.Semaphore{Holders: []string{}}
			return st, nil // nothing stored: nothing to change
		}
		before := st.snapshot()
		now := s.opt.Now()
		s.reconcile(st, now)
		if err := fn(st, now); err != nil {
			return nil, err
		}
		ops, err := st.ops(before)
		if err != nil {
			return nil, err
		}
		if len(ops) == 0 {
			return st, nil
		}
		key := SemaphoreKey(group)
		cmp := clientv3.Compare(clientv3.ModRevision(key), "=", st.modRev)
		if st.modRev == 0 {
			cmp = clientv3.Compare(clientv3.Version(key), "=", 0)
		}
		resp, err := s.cli.Txn(ctx).If(cmp).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("writing %s: %w", key, err)
		}
		if resp.Succeeded {
			s.expired.Add(int64(st.expired))
			for _, e := range st.events {
				s.opt.Logger.Info(e.msg, e.args...)
			}
			return st, nil
		}
		s.conflicts.Add(1)
		sleep := backoff/2 + rand.N(backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("retrying a lost compare-and-swap on %s: %w", key, ctx.Err())
		case <-time.After(sleep):
		}
		backoff = min(2*backoff, 64*time.Millisecond)
	}
	return nil, fmt.Errorf("%d attempts: %w", s.opt.MaxAttempts, fleetlock.ErrConflict)
}

// stateSnapshot is what a change compares against to decide what to write.
type stateSnapshot struct {
	sem  string // the semaphore's JSON ("" when missing)
	meta map[string]holderMeta
}

func (st *groupState) snapshot() stateSnapshot {
	snap := stateSnapshot{meta: maps.Clone(st.meta)}
	if st.sem != nil {
		b, _ := json.Marshal(st.sem)
		snap.sem = string(b)
		st.sem.Holders = slices.Clone(st.sem.Holders)
	}
	return snap
}

// ops lists the puts and deletes that turn before into st.
func (st *groupState) ops(before stateSnapshot) ([]clientv3.Op, error) {
	var ops []clientv3.Op
	b, err := json.Marshal(st.sem)
	if err != nil {
		return nil, fmt.Errorf("encoding the semaphore of group %q: %w", st.group, err)
	}
	if string(b) != before.sem {
		ops = append(ops, clientv3.OpPut(SemaphoreKey(st.group), string(b)))
	}
	for id := range before.meta {
		if _, ok := st.meta[id]; !ok {
			ops = append(ops, clientv3.OpDelete(HolderKey(st.group, id)))
		}
	}
	for id, m := range st.meta {
		if old, ok := before.meta[id]; ok && old == m {
			continue
		}
		v, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encoding holder %q of group %q: %w", id, st.group, err)
		}
		ops = append(ops, clientv3.OpPut(HolderKey(st.group, id), string(v)))
	}
	if len(ops) > 0 && string(b) == before.sem {
		// Metadata alone changes: still bump the semaphore's revision, so that a
		// concurrent change compared on it cannot interleave with this one.
		ops = append(ops, clientv3.OpPut(SemaphoreKey(st.group), string(b)))
	}
	return ops, nil
}

// reconcile applies the configuration to a read state: creates a missing semaphore,
// writes a changed slot count, releases holders past the TTL, and keeps one metadata key
// per holder.
func (s *Store) reconcile(st *groupState, now time.Time) {
	slots, configured := s.opt.Groups[st.group]
	if st.sem == nil {
		st.sem = &fleetlock.Semaphore{TotalSlots: slots, Holders: []string{}}
		st.events = append(st.events, event{"semaphore created", []any{"group", st.group, "slots", slots}})
	} else if configured && st.sem.TotalSlots != slots {
		st.events = append(st.events, event{"slot count changed", []any{"group", st.group, "from", st.sem.TotalSlots, "to", slots}})
		st.sem.TotalSlots = slots
	}
	for id := range st.meta {
		if !slices.Contains(st.sem.Holders, id) {
			delete(st.meta, id)
		}
	}
	for _, id := range slices.Clone(st.sem.Holders) {
		m, ok := st.meta[id]
		if !ok {
			st.meta[id] = holderMeta{Since: now, Observed: true}
			continue
		}
		if s.opt.HolderTTL > 0 && now.Sub(m.Since) > s.opt.HolderTTL {
			if st.remove(id, "holder TTL expired, slot released") {
				st.expired++
				st.events[len(st.events)-1].args = append(st.events[len(st.events)-1].args,
					"since", m.Since, "ttl", s.opt.HolderTTL.String())
			}
		}
	}
}
