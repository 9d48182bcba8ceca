package bootflow

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/provisioner/provisioner/internal/disk"
)

// Prepare makes the ramdisk ready for the tools the deploy runs, beyond what u-root's
// init mounted (/proc, /sys, /dev, /tmp): a tmpfs /run (lvm and mdadm keep their locks
// and maps there), efivarfs on a UEFI machine, and the directories lvm and os-prober
// expect.
func Prepare(ctx context.Context) error {
	var errs []error
	if err := os.MkdirAll("/run", 0o755); err != nil {
		errs = append(errs, err)
	} else if !mounted("/run") {
		if err := disk.Mount(ctx, "tmpfs", "/run", "tmpfs", "mode=0755"); err != nil {
			errs = append(errs, err)
		}
	}
	// u-root's init mounts efivarfs before it loads modules, so on a UEFI machine the
	// mount failed then; efibootmgr needs it for the NVRAM entry.
	const efivars = "/sys/firmware/efi/efivars"
	if _, err := os.Stat("/sys/firmware/efi"); err == nil && !mounted(efivars) {
		if err := disk.Mount(ctx, "efivarfs", efivars, "efivarfs", ""); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range []string{"/run/lvm", "/run/mdadm", "/var/lib/os-prober", "/var/tmp", "/etc/lvm"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("creating %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// mounted reports whether dir is the root of a mount.
func mounted(dir string) bool {
	mounts, err := disk.Sys{}.Mounts()
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if m.Point == dir {
			return true
		}
	}
	return false
}
