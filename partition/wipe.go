package partition

import (
	"context"
	"errors"
	"fmt"

	"github.com/provisioner/provisioner/internal/run"
)

// WipeTables erases the partition tables the layout wrote (the protective MBR and the
// primary GPT before the first usable sector, the backup GPT after the last), so that a
// disk left by a failed deploy has no partitions and the machine falls back to network
// boot instead of booting a half-written OS. The data areas are left alone: this is a
// clean deploy's failure, nothing in them is worth keeping, and zeroing them would take
// as long as the deploy. Every disk is tried even when one fails.
//
// The layout's own volume groups are deactivated and its md arrays stopped first: while
// they hold its partitions the kernel keeps listing them, and a retried deploy (the
// ramdisk's agent stays up after a failure) would find the disks busy. Those steps fail
// harmlessly when the deploy failed before creating them, so their errors are reported
// only when a partition is still listed afterwards.
func WipeTables(ctx context.Context, env Env, l *Layout, devs Devices) error {
	var errs []error
	released := releaseStacks(ctx, env.Run, l)
	for _, d := range l.Disks {
		dev := devs[d.ID.Value]
		if dev == "" {
			continue
		}
		ss := d.SectorSize
		if err := zeroRange(dev, 0, d.FirstUsable*ss); err != nil {
			errs = append(errs, fmt.Errorf("disk %s: %w", d.ID, err))
			continue
		}
		if err := zeroRange(dev, (d.LastUsable+1)*ss, (d.Sectors-d.LastUsable-1)*ss); err != nil {
			errs = append(errs, fmt.Errorf("disk %s: %w", d.ID, err))
			continue
		}
		// The kernel still lists the old partitions until told; a partition still held
		// stays listed, which a reboot clears.
		if err := env.Sys.RemovePartitions(ctx, dev); err != nil {
			errs = append(errs, fmt.Errorf("disk %s: tables wiped, but %w", d.ID, err))
		}
	}
	if len(errs) > 0 {
		errs = append(errs, released...)
	}
	return errors.Join(errs...)
}

// releaseStacks deactivates the layout's volume groups, then stops its md arrays (a
// physical volume may sit on an array), and returns what failed.
func releaseStacks(ctx context.Context, r run.Runner, l *Layout) []error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, vg := range l.VGs {
		if _, err := r.Run(ctx, run.Cmd{Argv: []string{"lvm", "vgchange", "-an", vg.Name}}); err != nil {
			errs = append(errs, fmt.Errorf("deactivating volume group %s: %w", vg.Name, err))
		}
	}
	for _, raid := range l.RAIDs {
		if _, err := r.Run(ctx, run.Cmd{Argv: []string{"mdadm", "--stop", raid.Device()}}); err != nil {
			errs = append(errs, fmt.Errorf("stopping %s: %w", raid.Device(), err))
		}
	}
	return errs
}
