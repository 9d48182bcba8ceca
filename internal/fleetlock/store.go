package fleetlock

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store keeps the groups' counting semaphores for a Server. The server depends on this
// interface only, so that the package (and every binary built without the server's
// commands) does not link a database client: the etcd implementation lives in
// internal/fleetlock/etcdstore.
type Store interface {
	// Lock takes a slot of group for id; locking again while holding succeeds. A full
	// group fails with an error matching ErrGroupFull, an unconfigured one with
	// ErrUnknownGroup, an unreadable semaphore with ErrSemaphoreRead.
	Lock(ctx context.Context, group, id string) (Semaphore, error)
	// Unlock releases id's slot of group; releasing a slot not held succeeds.
	Unlock(ctx context.Context, group, id string) (Semaphore, error)
	// Sync creates missing semaphores, writes changed slot counts and applies the holder TTL.
	Sync(ctx context.Context) error
	// Healthy reports whether the store answers reads.
	Healthy(ctx context.Context) error
	// Status lists every group stored or configured, sorted by name.
	Status(ctx context.Context) ([]GroupStatus, error)
	// Configured returns a group's configured slot count and whether it is configured.
	Configured(group string) (uint64, bool)
	// Conflicts counts concurrent-write conflicts retried.
	Conflicts() int64
	// Expired counts holders released because they outlived the holder TTL.
	Expired() int64
}

// Errors callers branch on.
var (
	// ErrGroupFull reports a lock refused because every slot of the group is taken.
	ErrGroupFull = errors.New("all semaphore slots currently locked")
	// ErrConflict reports that every compare-and-swap attempt lost against concurrent writers.
	ErrConflict = errors.New("semaphore kept changing under concurrent writers")
	// ErrSemaphoreRead reports that a group's semaphore could not be read or decoded.
	ErrSemaphoreRead = errors.New("reading the semaphore")
	// ErrUnknownGroup reports a group that has no configured slot count.
	ErrUnknownGroup = errors.New("unknown group")
)

// FullError is a lock refused because every slot of the group is taken; it matches
// ErrGroupFull, and its message is the reference server's.
type FullError struct {
	Group string // the group refused
	Slots uint64 // its stored slot count, all taken
}

func (e *FullError) Error() string {
	return fmt.Sprintf("all %d semaphore slots currently locked", e.Slots)
}

// Is makes errors.Is(err, ErrGroupFull) hold.
func (e *FullError) Is(target error) bool { return target == ErrGroupFull }

// Semaphore is a group's value in etcd, byte for byte the reference server's JSON: the
// slot count and the sorted ids holding a slot.
type Semaphore struct {
	TotalSlots uint64   `json:"total_slots"`
	Holders    []string `json:"holders"`
}

// Holder is one slot holder as the status reports it.
type Holder struct {
	ID string `json:"id"`
	// Since is when it took its slot (zero when no metadata was ever written for it).
	Since time.Time `json:"since,omitzero"`
	// Observed says Since is when a server first saw the holder, not when it locked.
	Observed bool `json:"observed,omitempty"`
}

// GroupStatus is one group's state: what etcd holds and what the server is configured for.
type GroupStatus struct {
	Name string `json:"name"`
	// Stored reports whether the semaphore exists in etcd yet.
	Stored bool `json:"stored"`
	// Slots is the stored slot count.
	Slots uint64 `json:"slots"`
	// ConfiguredSlots is the configured count (0 for a group the server is not configured for).
	ConfiguredSlots uint64   `json:"configured_slots,omitempty"`
	Holders         []Holder `json:"holders"`
}
