package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is matched by errors.Is when a lock is held by another run (every *LockedError).
var ErrLocked = errors.New("locked by another run")

// LockMode says whether a lock excludes everyone (writers) or only writers (readers).
type LockMode int

const (
	// Exclusive is a writer's lock: no other lock of either mode is held at the same time.
	Exclusive LockMode = iota
	// Shared is a reader's lock: any number of readers, but no writer.
	Shared
)

func (m LockMode) String() string {
	if m == Shared {
		return "shared"
	}
	return "exclusive"
}

// lockPoll is how often a bounded wait tries the lock again. flock has no timed wait, and
// a blocking flock could not be interrupted by a cancelled context.
const lockPoll = 50 * time.Millisecond

// LockedError says that a path is locked by another run, who holds it when /proc/locks
// tells, and how long this run waited.
type LockedError struct {
	Path    string
	Mode    LockMode
	Waited  time.Duration // 0: the lock was tried once
	Holders []string      // "pid 1234: provisioner switch-default 1 --device disk.img"
}

// Error returns "<path> is locked by another run (pid N: command) (waited 30s)".
func (e *LockedError) Error() string {
	s := e.Path + " is locked by another run"
	if len(e.Holders) > 0 {
		s += " (" + strings.Join(e.Holders, "; ") + ")"
	}
	if e.Waited > 0 {
		s += fmt.Sprintf(" (waited %v)", e.Waited)
	}
	return s
}

// Is makes errors.Is(err, ErrLocked) true for every *LockedError.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a flock on a block device, a disk-image file or a directory, held for a whole
// run so that two provisioner runs (or a run and a udev-aware tool, which honours BSD
// locks on whole disks) never write the same disk, file or boot directory at once.
type Lock struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// LockDevice takes an exclusive, non-blocking flock on dev. A second Lock on the same device,
// from this or another process, fails at once (errors.Is(err, ErrLocked)) with an error
// naming the device: waiting would only hide a second run aimed at the same disk.
func LockDevice(ctx context.Context, dev string) (*Lock, error) {
	return LockPath(ctx, dev, Exclusive, 0)
}

// LockPath takes a flock of the given mode on path: a block device, a regular file or a
// directory. When another open file description holds a conflicting lock (another
// process, or another open in this one) it tries again every lockPoll until wait has
// passed or ctx ends; wait 0 tries once. The failure is a *LockedError (matching
// ErrLocked) naming path, the holders /proc/locks shows and the wait; a missing path
// matches ErrNotFound.
//
// flock locks belong to the inode: every process opening the same image file, and every
// mount of the same filesystem (one block device, one superblock) opening the same
// directory, meets the same lock. The path is opened read-only and without blocking (a
// FIFO put where a directory was expected cannot hang the run): flock needs no write
// access, and closing a read-only descriptor raises no change event for udev to re-probe.
func LockPath(ctx context.Context, p string, mode LockMode, wait time.Duration) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("locking %s: %w", p, ErrNotFound)
		}
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFDIR, unix.S_IFBLK:
	default:
		f.Close()
		return nil, fmt.Errorf("locking %s: not a block device, regular file or directory", p)
	}
	how := unix.LOCK_EX
	if mode == Shared {
		how = unix.LOCK_SH
	}
	deadline := time.Now().Add(wait)
	for {
		err = flockNB(int(f.Fd()), how)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			f.Close()
			return nil, &LockedError{Path: p, Mode: mode, Waited: wait, Holders: lockHolders("/proc", st)}
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock on %s: %w", p, ctx.Err())
		case <-time.After(min(left, lockPoll)):
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", p, err)
	}
	return &Lock{path: p, f: f}, nil
}

// flockNB is a non-blocking flock, retried when a signal interrupts it.
func flockNB(fd, how int) error {
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Release drops the lock. It is safe to call more than once (a cleanup stack may); later
// calls do nothing.
func (l *Lock) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	// Closing the only descriptor of the open file description releases the flock.
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("unlocking %s: %w", l.path, err)
	}
	return nil
}
