package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Part is one partition as the kernel must see it, in bytes (not sectors, so that callers
// need not care about the disk's logical sector size here).
type Part struct {
	Number      int    // 1-based, as in the partition table and the node name
	Start, Size uint64 // bytes from the start of the disk; multiples of the logical sector size
}

// Polling bounds for waiting on the kernel's view: partition changes are synchronous on the
// kernels we know, so the wait normally ends at the first look; the cap only keeps a stuck
// device from hanging a run.
const (
	pollEvery = 5 * time.Millisecond
	pollMax   = 10 * time.Second
)

// PartitionPath returns the node of partition n of the whole disk dev: /dev/vda3,
// /dev/nvme0n1p3, /dev/loop4p3, /dev/mmcblk0p1. The kernel inserts a "p" when the disk name
// ends in a digit, and devtmpfs names nodes after the kernel's names.
func PartitionPath(dev string, n int) string {
	if dev != "" && dev[len(dev)-1] >= '0' && dev[len(dev)-1] <= '9' {
		return dev + "p" + strconv.Itoa(n)
	}
	return dev + strconv.Itoa(n)
}

// Reread makes the kernel's view of dev's partitions equal parts after a partition-table
// write. It first issues BLKRRPART, which is enough on a kernel with partition-table parsers;
// EBUSY (a partition is in use) and EINVAL (partition scanning is off, as on loop devices
// without LO_FLAGS_PARTSCAN) are not fatal. It then compares
// SysRoot/class/block/<disk>/<part>/{start,size} (512-byte units in sysfs, whatever the
// logical sector size) with parts and, where the kernel could not parse the table (a kernel
// without parsers, such as our CI host's) or kept stale entries, deletes partitions that
// should not exist and adds or resizes the rest one by one with the BLKPG ioctl, as
// `partx -u` does. Finally it polls every few milliseconds, bounded by ctx and at most 10 s,
// until every partition's sysfs entry and /dev node exist with the right start and size and
// no other partition is left. It never waits for udev, which the ramdisk does not run:
// devtmpfs creates and removes the nodes itself. Errors name the device and the partition.
func (s Sys) Reread(ctx context.Context, dev string, parts []Part) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	disk, f, err := s.openDisk(dev)
	if err != nil {
		return fmt.Errorf("rereading partitions of %s: %w", dev, err)
	}
	defer f.Close()
	fd := int(f.Fd())
	lss, err := unix.IoctlGetInt(fd, unix.BLKSSZGET)
	if err != nil {
		return fmt.Errorf("rereading partitions of %s: logical sector size: %w", dev, err)
	}
	want, err := checkParts(parts, uint64(lss))
	if err != nil {
		return fmt.Errorf("rereading partitions of %s: %w", dev, err)
	}
	if err := unix.IoctlSetInt(fd, unix.BLKRRPART, 0); err != nil &&
		!errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("rereading partitions of %s: BLKRRPART: %w", dev, err)
	}
	if err := s.reconcile(fd, disk, want); err != nil {
		return fmt.Errorf("rereading partitions of %s: %w", dev, err)
	}
	if err := s.waitFor(ctx, disk, want); err != nil {
		return fmt.Errorf("rereading partitions of %s: %w", dev, err)
	}
	return nil
}

// RemovePartitions deletes every partition the kernel knows on dev with BLKPG and waits until
// sysfs shows none. Loop devices need it before detaching: without partition scanning, the
// kernel keeps BLKPG-added partitions after LOOP_CLR_FD and the next user of that loop
// number would inherit them.
func (s Sys) RemovePartitions(ctx context.Context, dev string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	disk, f, err := s.openDisk(dev)
	if err != nil {
		return fmt.Errorf("removing partitions of %s: %w", dev, err)
	}
	defer f.Close()
	if err := s.reconcileBusy(ctx, int(f.Fd()), disk, nil); err != nil {
		return fmt.Errorf("removing partitions of %s: %w", dev, err)
	}
	if err := s.waitFor(ctx, disk, nil); err != nil {
		return fmt.Errorf("removing partitions of %s: %w", dev, err)
	}
	return nil
}

// busyWait bounds how long a partition that is busy is retried before its EBUSY is the
// answer: a process that scans every block device (blkid, lsblk, a udev rule) holds each
// partition open for milliseconds, a mount or a holder for good.
const busyWait = 2 * time.Second

// reconcileBusy is reconcile, retried while the kernel answers EBUSY, for at most
// busyWait.
func (s Sys) reconcileBusy(ctx context.Context, fd int, disk string, want map[int]Part) error {
	deadline := time.Now().Add(busyWait)
	for {
		err := s.reconcile(fd, disk, want)
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// openDisk finds dev's kernel name, refuses partitions, and opens it read-only: BLKRRPART and
// BLKPG need CAP_SYS_ADMIN, not write access.
func (s Sys) openDisk(dev string) (string, *os.File, error) {
	disk, err := s.kernelName(dev)
	if err != nil {
		return "", nil, err
	}
	if s.isPartition(disk) {
		return "", nil, fmt.Errorf("%s is a partition, not a whole disk", dev)
	}
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	return disk, f, nil
}

// checkParts validates parts and indexes them by number. Alignment to the logical sector
// size is what BLKPG demands; overlaps are refused here because the kernel would only say
// EBUSY.
func checkParts(parts []Part, lss uint64) (map[int]Part, error) {
	want := make(map[int]Part, len(parts))
	for _, p := range parts {
		switch {
		case p.Number < 1:
			return nil, fmt.Errorf("partition number %d: must be 1 or more", p.Number)
		case p.Size == 0:
			return nil, fmt.Errorf("partition %d: size 0", p.Number)
		case p.Start%lss != 0 || p.Size%lss != 0:
			return nil, fmt.Errorf("partition %d: start %d or size %d is not a multiple of the %d-byte logical sector", p.Number, p.Start, p.Size, lss)
		case p.Start+p.Size < p.Start || p.Start+p.Size > 1<<63-1:
			return nil, fmt.Errorf("partition %d: start %d + size %d overflows", p.Number, p.Start, p.Size)
		}
		if _, dup := want[p.Number]; dup {
			return nil, fmt.Errorf("partition %d given twice", p.Number)
		}
		want[p.Number] = p
	}
	sorted := append([]Part(nil), parts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })
	for i := 1; i < len(sorted); i++ {
		if a, b := sorted[i-1], sorted[i]; a.Start+a.Size > b.Start {
			return nil, fmt.Errorf("partitions %d and %d overlap", a.Number, b.Number)
		}
	}
	return want, nil
}

// reconcile changes the kernel's partitions of disk into want with BLKPG. The order avoids
// transient overlaps, which the kernel refuses with EBUSY: first delete what must go (and
// what moved: BLKPG cannot move a start), then shrink, then grow, then add.
func (s Sys) reconcile(fd int, disk string, want map[int]Part) error {
	cur, err := s.partitions(disk)
	if err != nil {
		return err
	}
	have := map[int]sysPart{}
	var shrink, grow []Part
	for _, c := range cur {
		w, ok := want[c.Number]
		if !ok || w.Start != c.Start*512 {
			if err := blkpg(fd, blkpgDelPartition, c.Number, 0, 0); err != nil {
				return fmt.Errorf("deleting partition %d (%s): %w%s", c.Number, s.node(c.Name), err, busyHint(err))
			}
			continue
		}
		have[c.Number] = c
		switch {
		case w.Size < c.Size*512:
			shrink = append(shrink, w)
		case w.Size > c.Size*512:
			grow = append(grow, w)
		}
	}
	for _, w := range append(shrink, grow...) {
		if err := blkpg(fd, blkpgResizePartition, w.Number, w.Start, w.Size); err != nil {
			return fmt.Errorf("resizing partition %d (%s) to %d bytes: %w%s", w.Number, s.node(have[w.Number].Name), w.Size, err, busyHint(err))
		}
	}
	var add []int
	for n := range want {
		if _, ok := have[n]; !ok {
			add = append(add, n)
		}
	}
	sort.Ints(add)
	for _, n := range add {
		w := want[n]
		if err := blkpg(fd, blkpgAddPartition, n, w.Start, w.Size); err != nil {
			return fmt.Errorf("adding partition %d (%s, start %d, %d bytes): %w%s", n, PartitionPath(s.node(disk), n), w.Start, w.Size, err, busyHint(err))
		}
	}
	return nil
}

func busyHint(err error) string {
	if errors.Is(err, unix.EBUSY) {
		return " (the partition is in use, or overlaps one that is)"
	}
	return ""
}

// waitFor polls until the kernel's partitions of disk are exactly want and every node exists
// as the block device sysfs names, or ctx or pollMax ends the wait.
func (s Sys) waitFor(ctx context.Context, disk string, want map[int]Part) error {
	ctx, cancel := context.WithTimeout(ctx, pollMax)
	defer cancel()
	start := time.Now()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		problem, err := s.mismatch(disk, want)
		if err != nil {
			return err
		}
		if problem == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s after waiting %v: %w", problem, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-t.C:
		}
	}
}

// mismatch describes the first difference between the kernel's view and want, "" when none.
func (s Sys) mismatch(disk string, want map[int]Part) (string, error) {
	cur, err := s.partitions(disk)
	if err != nil {
		return "", err
	}
	var problems []string
	seen := map[int]bool{}
	for _, c := range cur {
		seen[c.Number] = true
		node := s.node(c.Name)
		w, ok := want[c.Number]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("partition %d (%s) should not exist but the kernel still has it", c.Number, node))
		case c.Start*512 != w.Start || c.Size*512 != w.Size:
			problems = append(problems, fmt.Sprintf("partition %d (%s): the kernel has start %d size %d bytes, want start %d size %d",
				c.Number, node, c.Start*512, c.Size*512, w.Start, w.Size))
		case c.Dev == "" || devNumber(node) != c.Dev:
			problems = append(problems, fmt.Sprintf("partition %d: %s is not (yet) the block device %s", c.Number, node, c.Dev))
		}
	}
	var missing []int
	for n := range want {
		if !seen[n] {
			missing = append(missing, n)
		}
	}
	sort.Ints(missing)
	for _, n := range missing {
		problems = append(problems, fmt.Sprintf("partition %d (%s) is missing from %s", n, PartitionPath(s.node(disk), n), s.classBlock(disk)))
	}
	return strings.Join(problems, "; "), nil
}
