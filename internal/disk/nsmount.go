package disk

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The mounts below reshape what a process sees rather than mount a device: a process in
// a mount namespace of its own uses them to hide or replace parts of the machine's tree
// (sysfs directories, procfs files) for the programs it runs. None of them waits on a
// device, so they take no context.

// MakeTreePrivate makes the mount at dir and every mount below it private, so that
// nothing mounted there afterwards propagates to other mount namespaces, and nothing
// mounted in them appears here. A new mount namespace still shares propagation with
// the one it was copied from until this is done.
func MakeTreePrivate(dir string) error {
	if err := unix.Mount("", dir, "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the mounts at and below %s private: %w", dir, err)
	}
	return nil
}

// MountTmpfs mounts a tmpfs named source (the name the mount table shows) over dir,
// with tmpfs's option string data ("mode=0755,size=1m"). Set-user-ID bits and device
// nodes on it are ignored; noExec also refuses to execute its files.
func MountTmpfs(source, dir, data string, noExec bool) error {
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if noExec {
		flags |= unix.MS_NOEXEC
	}
	if err := unix.Mount(source, dir, "tmpfs", flags, data); err != nil {
		return fmt.Errorf("mounting a tmpfs over %s: %w", dir, err)
	}
	return nil
}

// BindMount mounts the file or directory src over dst, which must be of the same kind,
// so that dst shows src's content.
func BindMount(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting %s over %s: %w", src, dst, err)
	}
	return nil
}

// DetachMount detaches the mount at dir at once and lets the kernel finish unmounting
// it once nothing uses it any more. Unlike Unmount it cannot fail on a busy mount,
// which suits a mount in a namespace about to end that a leftover process (a FUSE
// daemon) would otherwise keep alive; it must not be used where a failure to unmount
// matters.
func DetachMount(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the mount at %s: %w", dir, err)
	}
	return nil
}
