package deploy

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// etc plans a path of /etc that is not a directory on both sides: a file the node
// changed since the last deploy or reload (it differs from the manifest, or there is no
// manifest) keeps the node's version, and the image's is written beside it.
func (pl *planner) etc(p string, r, s node) error {
	if r.isDir() || s.isDir() {
		if !s.ok {
			pl.add(SyncEntry{Path: p, Class: SyncKept, Kind: "dir", Reason: "a directory of /etc the image no longer has: /etc keeps it"})
			return nil
		}
		return pl.compare(p, r, s)
	}
	deployed, inManifest := pl.manifest[p]
	switch {
	case !r.ok && inManifest:
		pl.add(SyncEntry{Path: p, Class: SyncMerged, Kind: s.kind(), Bytes: size(s), NewPath: p + MergedSuffix, Reason: "removed on the node since the last deploy or reload"})
		return nil
	case !r.ok:
		return pl.added(p, s)
	}
	changed, why, err := pl.nodeChanged(p, deployed, inManifest)
	if err != nil {
		return err
	}
	if !s.ok {
		switch {
		case strings.HasSuffix(p, MergedSuffix):
			pl.add(SyncEntry{Path: p, Class: SyncKept, Kind: r.kind(), Bytes: size(r), Reason: "a new version an earlier reload wrote beside the node's"})
		case changed:
			pl.add(SyncEntry{Path: p, Class: SyncKept, Kind: r.kind(), Bytes: size(r), Reason: "not in the image, " + why})
		default:
			pl.add(SyncEntry{Path: p, Class: SyncRemoved, Kind: r.kind(), Bytes: size(r)})
		}
		return nil
	}
	diff, err := pl.differs(p, r, s)
	if err != nil || diff == "" {
		pl.group(p, s, false)
		return err
	}
	if !changed {
		return pl.replaced(p, r, s, diff)
	}
	pl.add(SyncEntry{Path: p, Class: SyncMerged, Kind: s.kind(), Bytes: size(s), NewPath: p + MergedSuffix, Reason: why})
	return nil
}

// nodeChanged says whether the root's file p differs from the manifest's record of it.
func (pl *planner) nodeChanged(p string, deployed EtcFile, inManifest bool) (bool, string, error) {
	switch {
	case pl.manifest == nil:
		return true, "no manifest of /etc as deployed: counted as changed on the node", nil
	case !inManifest:
		return true, "made on the node (not in the manifest of /etc)", nil
	}
	cur, ok, err := etcFileAt(filepath.Join(pl.root, p), p)
	if err != nil {
		return false, "", err
	}
	if !ok || cur != deployed {
		return true, "changed on the node since the last deploy or reload", nil
	}
	return false, "", nil
}

// group notes a staged regular file's hard-link group; decided says it is added or
// replaced.
func (pl *planner) group(p string, s node, decided bool) {
	if !s.ok || s.st.Mode&unix.S_IFMT != unix.S_IFREG || s.st.Nlink < 2 {
		return
	}
	if _, seen := pl.decided[p]; !seen {
		pl.groups[s.st.Ino] = append(pl.groups[s.st.Ino], p)
	}
	pl.decided[p] = pl.decided[p] || decided
}

// linkGroups replaces a hard-link group of the image as a whole: when one of its paths is
// added or replaced, or the root's paths of the group are not one inode, the others are
// replaced too, so that the links are the image's after the sync (but for a merged /etc
// file, whose node version stays).
func (pl *planner) linkGroups() error {
	for _, paths := range pl.groups {
		if len(paths) < 2 {
			continue
		}
		any := false
		inodes := map[uint64]bool{}
		for _, p := range paths {
			any = any || pl.decided[p]
			r, err := pl.lstat(pl.root, p)
			if err != nil {
				return err
			}
			inodes[r.st.Ino] = true
		}
		if !any && len(inodes) == 1 {
			continue
		}
		for _, p := range paths {
			if pl.decided[p] || pl.planned[p] {
				// Added or replaced already, or merged: a merged file keeps the node's
				// version, so its link to the group is the one thing not kept.
				continue
			}
			s, err := pl.lstat(pl.staged, p)
			if err != nil {
				return err
			}
			pl.add(SyncEntry{Path: p, Class: SyncReplaced, Kind: "file", Bytes: size(s), Reason: fmt.Sprintf("hard link group of %d paths", len(paths))})
			pl.decided[p] = true
		}
	}
	return nil
}
