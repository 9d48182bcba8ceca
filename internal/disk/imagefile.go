package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// loopBacking is one bound loop device and the identity of its backing file.
type loopBacking struct {
	Name     string // kernel name, "loop5"
	Dev, Ino uint64 // the backing file's device and inode numbers
	Known    bool   // false when neither LOOP_GET_STATUS64 nor sysfs could tell them
}

// LoopsBackedBy returns the /dev nodes of the loop devices bound to the file at path,
// ordered by loop number. A file is recognised by its device and inode numbers, not its
// name: another name (a hard link, a bind mount) finds the same loops, and a file renamed
// or replaced since it was attached is told apart.
func (s Sys) LoopsBackedBy(ctx context.Context, path string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("finding the loop devices of %s: %w", path, ErrNotFound)
		}
		return nil, fmt.Errorf("finding the loop devices of %s: %w", path, err)
	}
	loops, err := s.boundLoops()
	if err != nil {
		return nil, fmt.Errorf("finding the loop devices of %s: %w", path, err)
	}
	var out []string
	for _, name := range matchBacking(loops, uint64(st.Dev), st.Ino) {
		out = append(out, s.node(name))
	}
	return out, nil
}

// matchBacking returns the names of the loops whose backing file is (dev, ino).
func matchBacking(loops []loopBacking, dev, ino uint64) []string {
	var out []string
	for _, l := range loops {
		if l.Known && l.Dev == dev && l.Ino == ino {
			out = append(out, l.Name)
		}
	}
	return out
}

// boundLoops lists the loop devices bound to a file (sysfs gives a bound loop device a
// "loop" directory) with their backing file's identity: LOOP_GET_STATUS64 on the /dev
// node where there is a real one, else a stat of the name in sysfs loop/backing_file
// (enough for a fake tree; a real backing file may have been renamed since).
func (s Sys) boundLoops() ([]loopBacking, error) {
	ents, err := os.ReadDir(filepath.Join(s.sysRoot(), "block"))
	if err != nil {
		return nil, err
	}
	var out []loopBacking
	for _, e := range ents {
		name := e.Name()
		if _, err := strconv.Atoi(strings.TrimPrefix(name, "loop")); err != nil || !strings.HasPrefix(name, "loop") {
			continue
		}
		dir := filepath.Join(s.sysRoot(), "block", name, "loop")
		if _, err := os.Stat(dir); err != nil {
			continue // not bound
		}
		l := loopBacking{Name: name}
		if info, ok := loopStatus(s.node(name)); ok {
			l.Dev, l.Ino, l.Known = info.Device, info.Inode, true
		} else if bf, err := readTrim(filepath.Join(dir, "backing_file")); err == nil {
			var st unix.Stat_t
			if unix.Stat(bf, &st) == nil {
				l.Dev, l.Ino, l.Known = uint64(st.Dev), st.Ino, true
			}
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return loopNumber(out[i].Name) < loopNumber(out[j].Name) })
	return out, nil
}

func loopNumber(name string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(name, "loop"))
	return n
}

// loopStatus asks the loop device at node what it is bound to. ok is false when node is
// not a block device that answers (a fake tree, a device detached meanwhile). Opening a
// bound loop device read-only and closing it changes nothing on it.
func loopStatus(node string) (*unix.LoopInfo64, bool) {
	var st unix.Stat_t
	if err := unix.Stat(node, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, false
	}
	fd, err := unix.Open(node, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, false
	}
	defer unix.Close(fd)
	info, err := unix.IoctlLoopGetStatus64(fd)
	if err != nil {
		return nil, false
	}
	return info, true
}

// CheckFileNotBusy returns a *BusyError naming file when a loop device bound to it is
// busy as CheckNotBusy sees it (a mounted partition, active swap, holders, an exclusive
// user): writing the file through another loop device would change a filesystem under
// whoever uses it, and even reading it could see a filesystem mid-change. A loop device
// bound to the file that nobody uses is not a reason.
func (s Sys) CheckFileNotBusy(ctx context.Context, file string) error {
	loops, err := s.LoopsBackedBy(ctx, file)
	if err != nil {
		return fmt.Errorf("checking whether %s is busy: %w", file, err)
	}
	var reasons []string
	for _, l := range loops {
		err := s.CheckNotBusy(ctx, l)
		var be *BusyError
		switch {
		case errors.As(err, &be):
			reasons = append(reasons, fmt.Sprintf("it is attached to %s, and %s", l, strings.Join(be.Reasons, "; ")))
		case errors.Is(err, ErrNotFound):
			// Detached since it was listed.
		case err != nil:
			return fmt.Errorf("checking whether %s is busy: %w", file, err)
		}
	}
	if len(reasons) > 0 {
		return &BusyError{Dev: file, Reasons: reasons}
	}
	return nil
}

// ParentDisk returns the /dev node of the whole disk dev belongs to: dev's own node when
// it is a whole disk, its disk's when it is a partition (sysfs puts a partition's
// directory inside its disk's).
func (s Sys) ParentDisk(dev string) (string, error) {
	name, err := s.kernelName(dev)
	if err != nil {
		return "", err
	}
	if !s.isPartition(name) {
		return s.node(name), nil
	}
	dir, err := filepath.EvalSymlinks(s.classBlock(name))
	if err != nil {
		return "", fmt.Errorf("finding the disk of %s: %w", dev, err)
	}
	parent := filepath.Base(filepath.Dir(dir))
	if _, err := os.Stat(filepath.Join(s.classBlock(parent), "dev")); err != nil || s.isPartition(parent) {
		return "", fmt.Errorf("finding the disk of %s: %s is not inside a disk's directory in sysfs", dev, dir)
	}
	return s.node(parent), nil
}
