package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/provisioner/provisioner/internal/disk"
	"golang.org/x/sys/unix"
)

// ApplySync makes the running root match the staged tree as plan says. Nothing is
// written in place: a new or changed file, symlink or device node is renamed from the
// staged tree over the root's (rename(2) is atomic per path, and a running program keeps
// its old inode), a new directory is renamed whole, a directory present on both sides
// gets its owner, mode and xattrs set in place. Owners, modes, xattrs (file capabilities)
// and hard links are the staged tree's, which the deploy's extraction made. Then the
// merged files' new versions go beside the node's, the removed paths are unlinked deepest
// first, the manifest of /etc is rewritten, the root's filesystem is synced and the staged
// tree removed. The sync is not atomic across paths: an error or a power cut leaves some
// paths new and the others old (see the README). Errors name the path; they match ErrWrite
// when the root's filesystem failed or is full.
func ApplySync(ctx context.Context, plan *SyncPlan) error {
	a := &applier{plan: plan}
	var st unix.Stat_t
	if err := unix.Lstat(plan.Root, &st); err != nil {
		return fmt.Errorf("live sync: %w", err)
	}
	a.dev = st.Dev
	for _, step := range []func(context.Context) error{a.renames, a.merged, a.removals, a.dirMeta} {
		if err := step(ctx); err != nil {
			return classify(ctx, deviceFault, fmt.Errorf("live sync of %s: %w", plan.Root, err))
		}
	}
	if plan.Manifest != nil {
		if err := WriteEtcManifest(plan.Root, plan.Manifest); err != nil {
			return classify(ctx, deviceFault, fmt.Errorf("live sync of %s: %w", plan.Root, err))
		}
	}
	if err := disk.SyncFS(plan.Root); err != nil {
		return classify(ctx, deviceFault, fmt.Errorf("live sync of %s: %w", plan.Root, err))
	}
	if err := RemoveStage(plan.Staged, a.dev); err != nil {
		return fmt.Errorf("live sync of %s: %w", plan.Root, err)
	}
	return nil
}

// applier is one ApplySync.
type applier struct {
	plan  *SyncPlan
	dev   uint64
	aside int
}

func (a *applier) rootPath(p string) string   { return filepath.Join(a.plan.Root, p) }
func (a *applier) stagedPath(p string) string { return filepath.Join(a.plan.Staged, p) }

// renames puts the added and replaced paths in place, parents before children.
func (a *applier) renames(ctx context.Context) error {
	for _, e := range a.plan.Entries {
		if (e.Class != SyncAdded && e.Class != SyncReplaced) || e.MetaOnly {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.typeChange {
			// The old one goes into the staged tree, deleted with it.
			a.aside++
			old := filepath.Join(a.plan.Staged, ".provisioner-old-"+strconv.Itoa(a.aside))
			if err := os.Rename(a.rootPath(e.Path), old); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("moving the old %s aside: %w", e.Path, err)
			}
		}
		if err := os.Rename(a.stagedPath(e.Path), a.rootPath(e.Path)); err != nil {
			return fmt.Errorf("%s %s: %w", e.Class, e.Path, err)
		}
	}
	return nil
}

// merged writes the image's versions of the merged files beside the node's.
func (a *applier) merged(ctx context.Context) error {
	for _, e := range a.plan.Entries {
		if e.Class != SyncMerged {
			continue
		}
		if err := os.Rename(a.stagedPath(e.Path), a.rootPath(e.NewPath)); err != nil {
			return fmt.Errorf("writing %s beside %s: %w", e.NewPath, e.Path, err)
		}
	}
	return ctx.Err()
}

// removals unlinks the removed paths, deepest first.
func (a *applier) removals(ctx context.Context) error {
	var rm []SyncEntry
	for _, e := range a.plan.Entries {
		if e.Class == SyncRemoved {
			rm = append(rm, e)
		}
	}
	sort.SliceStable(rm, func(i, j int) bool {
		return strings.Count(rm[i].Path, "/") > strings.Count(rm[j].Path, "/")
	})
	for _, e := range rm {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if e.Tree {
			err = RemoveStage(a.rootPath(e.Path), a.dev)
		} else {
			err = os.Remove(a.rootPath(e.Path))
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", e.Path, err)
		}
	}
	return nil
}

// dirMeta gives the directories present on both sides the image's owner, mode and xattrs.
func (a *applier) dirMeta(ctx context.Context) error {
	for _, e := range a.plan.Entries {
		if !e.MetaOnly {
			continue
		}
		if err := copyMeta(a.stagedPath(e.Path), a.rootPath(e.Path)); err != nil {
			return fmt.Errorf("directory %s: %w", e.Path, err)
		}
	}
	return ctx.Err()
}

// copyMeta gives the directory dst the owner, mode and xattrs of src.
func copyMeta(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
		return err
	}
	want, err := xattrs(src)
	if err != nil {
		return err
	}
	have, err := xattrs(dst)
	if err != nil {
		return err
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			if err := unix.Lremovexattr(dst, k); err != nil {
				return fmt.Errorf("removing xattr %s: %w", k, err)
			}
		}
	}
	for k, v := range want {
		if err := unix.Lsetxattr(dst, k, v, 0); err != nil {
			return fmt.Errorf("setting xattr %s: %w", k, err)
		}
	}
	return nil
}

// RemoveStage removes the tree dir, deepest first, without ever leaving the filesystem
// dev: a directory of another filesystem found inside (a mount point) stops it with an
// error, its content untouched. A missing dir is no error. A live reload removes its
// staging directory with it, also one an earlier run left behind.
func RemoveStage(dir string, dev uint64) error {
	var st unix.Stat_t
	err := unix.Lstat(dir, &st)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	if st.Dev != dev {
		return fmt.Errorf("removing %s: another filesystem is mounted there: left as it is", dir)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return os.Remove(dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	for _, n := range names {
		if err := RemoveStage(filepath.Join(dir, n), dev); err != nil {
			return err
		}
	}
	if err := os.Remove(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}
