package disk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Mount mounts the filesystem on dev at dir. options is the filesystem's data string
// ("" for defaults). It is a plain mount(2): no helper programs, no fstab lookups, so the
// result does not depend on what the deploy environment happens to ship.
func Mount(ctx context.Context, dev, dir, fsType, options string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := unix.Mount(dev, dir, fsType, unix.MS_NOATIME, options); err != nil {
		return fmt.Errorf("mounting %s (%s) at %s: %w", dev, fsType, dir, err)
	}
	return nil
}

// Unmount unmounts dir. A busy mount (a process still inside it) is retried for a few
// seconds before giving up, because the extraction's own files may still be closing; it
// never detaches lazily, which would hide the failure and leave the disk held.
func Unmount(ctx context.Context, dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Unmount(dir, 0)
		if err == nil || errors.Is(err, unix.EINVAL) && !isMountpoint(dir) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("unmounting %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("unmounting %s: %w", dir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// isMountpoint reports whether dir is the root of a mount (its device differs from its
// parent's, or it is "/").
func isMountpoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(dir+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev || st.Ino == parent.Ino
}

// SyncFS flushes the filesystem mounted at dir, so a following unmount or power loss
// finds everything written.
func SyncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// MountPrivate mounts dev at dir, read-only unless writable, and makes the mount
// private, so that it never propagates into other mount namespaces (a container or
// a user's shell) while the provisioner briefly holds it.
func MountPrivate(ctx context.Context, dev, dir, fsType string, writable bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	flags := uintptr(unix.MS_NOATIME)
	if !writable {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, dir, fsType, flags, ""); err != nil {
		return fmt.Errorf("mounting %s (%s) at %s: %w", dev, fsType, dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		unix.Unmount(dir, 0)
		return fmt.Errorf("making the mount at %s private: %w", dir, err)
	}
	return nil
}

// MountForReading mounts the ext2/3/4 or xfs filesystem on dev at dir so that nothing
// can be written through the mount and nothing is written by mounting it: read-only,
// without set-uid bits, devices or execution, and for xfs without log recovery (a
// read-only xfs mount still replays a dirty log). An ext3/ext4 journal that needs
// replaying is refused with ErrNeedsRecovery, since the kernel replays it even for a
// read-only mount. fsType is "ext4" (for ext2 and ext3 too) or "xfs", as SniffFS names
// them.
func MountForReading(ctx context.Context, dev, dir, fsType string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	options := ""
	switch fsType {
	case "ext4":
		if NeedsJournalRecovery(dev) {
			return fmt.Errorf("mounting %s read-only: %w", dev, ErrNeedsRecovery)
		}
	case "xfs":
		options = "norecovery"
	default:
		return fmt.Errorf("mounting %s read-only: filesystem type %q is neither ext4 nor xfs", dev, fsType)
	}
	flags := uintptr(unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME)
	if err := unix.Mount(dev, dir, fsType, flags, options); err != nil {
		return fmt.Errorf("mounting %s (%s) read-only at %s: %w", dev, fsType, dir, err)
	}
	return nil
}

// ErrNeedsRecovery is MountForReading's refusal of a journal that a mount would replay.
var ErrNeedsRecovery = errors.New("its journal needs recovery, which would write to it")
