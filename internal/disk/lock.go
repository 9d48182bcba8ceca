package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrLocked is matched by errors.Is when LockDevice finds the device already locked.
var ErrLocked = errors.New("device is locked by another run")

// Lock is an exclusive flock on a block device, held for a whole run so that two
// provisioner runs (or a run and a udev-aware tool, which honours BSD locks on whole disks)
// never write the same disk at once.
type Lock struct {
	dev string
	mu  sync.Mutex
	f   *os.File
}

// LockDevice takes an exclusive, non-blocking flock on dev. A second Lock on the same device,
// from this or another process, fails at once (errors.Is(err, ErrLocked)) with an error
// naming the device: waiting would only hide a second run aimed at the same disk.
//
// The device is opened read-only: flock does not need write access, and closing a
// read-only descriptor raises no change event for udev to re-probe.
func LockDevice(ctx context.Context, dev string) (*Lock, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("locking %s: %w", dev, ErrNotFound)
		}
		return nil, fmt.Errorf("locking %s: %w", dev, err)
	}
	// flock locks belong to the open file description, so even a second LockDevice in
	// this process (a new open) conflicts with the first.
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking %s: %w", dev, ErrLocked)
		}
		return nil, fmt.Errorf("locking %s: %w", dev, err)
	}
	return &Lock{dev: dev, f: f}, nil
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
		return fmt.Errorf("unlocking %s: %w", l.dev, err)
	}
	return nil
}
