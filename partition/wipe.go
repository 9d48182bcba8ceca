package partition

import (
	"context"
	"errors"
	"fmt"
)

// WipeTables erases the partition tables the layout wrote (the protective MBR and the
// primary GPT before the first usable sector, the backup GPT after the last), so that a
// disk left by a failed deploy has no partitions and the machine falls back to network
// boot instead of booting a half-written OS. The data areas are left alone: this is a
// clean deploy's failure, nothing in them is worth keeping, and zeroing them would take
// as long as the deploy. Every disk is tried even when one fails.
func WipeTables(ctx context.Context, env Env, l *Layout, devs Devices) error {
	var errs []error
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
		// (an active md array or LV) stays listed, which a reboot clears.
		if err := env.Sys.RemovePartitions(ctx, dev); err != nil {
			errs = append(errs, fmt.Errorf("disk %s: tables wiped, but %w", d.ID, err))
		}
	}
	return errors.Join(errs...)
}
