package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// SyncClass says what a live sync does with one path of the running root.
type SyncClass int

// The classes of a SyncEntry.
const (
	// SyncAdded is in the new image only: it is renamed into the root.
	SyncAdded SyncClass = iota
	// SyncReplaced differs in content, type, link target, owner, mode, xattrs or hard
	// links: the new one is renamed over it (a directory gets its metadata in place).
	SyncReplaced
	// SyncRemoved is in the root only and not excluded: it is unlinked.
	SyncRemoved
	// SyncKept is never synced (identity, /var, another filesystem, a file the node
	// changed that the image dropped) while the image has something else there.
	SyncKept
	// SyncMerged is a file of /etc the node changed that the image changes too: the
	// node's version stays, the image's is written beside it (NewPath).
	SyncMerged
)

// syncClassNames are the classes as the dry-run shows them.
var syncClassNames = [...]string{"added", "replaced", "removed", "kept", "merged"}

// String names the class as the dry run shows it: "added", "replaced", ...
func (c SyncClass) String() string {
	if int(c) < len(syncClassNames) {
		return syncClassNames[c]
	}
	return fmt.Sprintf("SyncClass(%d)", int(c))
}

// SyncClasses lists the classes in the order a summary shows them.
var SyncClasses = []SyncClass{SyncAdded, SyncReplaced, SyncRemoved, SyncKept, SyncMerged}

// MergedSuffix is added to the name of the image's version of an /etc file the node
// changed: the node's stays in place.
const MergedSuffix = ".provisioner-new"

// SyncOptions tune PlanSync.
type SyncOptions struct {
	// StageDir is the staged tree's path in the root ("/.provisioner-stage"): never synced.
	StageDir string
	// IncludeVar lists paths under /var ("/var/lib/app") that are synced as the rest;
	// the rest of /var is never touched.
	IncludeVar []string
}

// SyncEntry is one path the sync changes, or keeps although the image differs there.
type SyncEntry struct {
	// Path is the path in the root, "/usr/bin/x".
	Path  string
	Class SyncClass
	// Kind is "file", "dir", "symlink", "device", "fifo" or "socket": the new one's,
	// or the root's for a removed or kept path.
	Kind string
	// Bytes is the data of the regular files concerned (a whole tree's for Tree).
	Bytes int64
	// Tree is a directory handled whole: added by one rename, removed with its content.
	Tree bool
	// MetaOnly is a directory present on both sides whose owner, mode or xattrs change.
	MetaOnly bool
	// Reason says why a path is replaced or kept.
	Reason string
	// NewPath is where a merged file's new version is written.
	NewPath string

	// typeChange is a replacement where either side is a directory: the old one is moved
	// into the staging directory first, since rename(2) cannot replace across types.
	typeChange bool
}

// SyncTotal is the count and bytes of one class.
type SyncTotal struct {
	Count int
	Bytes int64
}

// SyncPlan is what a live sync of Root from Staged does, decided before anything is
// written; ApplySync carries it out.
type SyncPlan struct {
	Root, Staged string
	Entries      []SyncEntry
	Totals       map[SyncClass]SyncTotal
	// NoManifest says the root had no manifest of /etc as deployed: every /etc file that
	// differs from the image counted as changed on the node.
	NoManifest bool
	// Manifest is the image's /etc, written into the root once the sync is done.
	Manifest *EtcManifest
}

// Changed lists the paths whose files the sync replaces, adds or removes (not kept or
// merged ones): services using them may need a restart.
func (p *SyncPlan) Changed() []string {
	var out []string
	for _, e := range p.Entries {
		if (e.Class == SyncAdded || e.Class == SyncReplaced || e.Class == SyncRemoved) && !e.MetaOnly {
			out = append(out, e.Path)
		}
	}
	return out
}

// neverSynced are the trees a live sync never touches: the kernel's and the runtime's
// filesystems (mounted elsewhere anyway), the node's temporary files, and lost+found.
var neverSynced = []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/lost+found"}

// reasonNeverSynced is why a path under neverSynced is not synced.
const reasonNeverSynced = "never synced"

// identityFiles are the node's identity: its filesystems, name, machine id and network
// configuration, which the image must not overwrite.
var identityFiles = []string{
	"/etc/fstab", "/etc/hostname", "/etc/machine-id", "/etc/resolv.conf", "/etc/hosts",
	"/etc/network/interfaces", "/etc/network/interfaces.d", "/etc/netplan",
	"/etc/systemd/network", "/etc/NetworkManager/system-connections",
}

// under reports whether p is dir or below it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// excluded says why the sync never touches p ("" when it may), and whether a directory
// there is still walked because a path included under it (--include-var) lies below.
func (o SyncOptions) excluded(p string) (reason string, descend bool) {
	for _, d := range neverSynced {
		if under(p, d) {
			return reasonNeverSynced, false
		}
	}
	if o.StageDir != "" && under(p, o.StageDir) {
		return "the staging directory", false
	}
	for _, f := range identityFiles {
		if under(p, f) {
			return "the node's identity", false
		}
	}
	if strings.HasPrefix(p, "/etc/ssh/ssh_host_") {
		return "the node's identity (SSH host key)", false
	}
	if under(p, EtcManifestPath) {
		return "the manifest of /etc", false
	}
	if under(p, "/var") {
		for _, inc := range o.IncludeVar {
			inc = path.Clean("/" + inc)
			if under(p, inc) {
				return "", false
			}
			if under(inc, p) {
				descend = true
			}
		}
		return "/var is not synced (--include-var adds a path)", descend
	}
	return "", false
}

// PlanSync compares the running root with the staged tree of the new image and says
// what a live sync would do, writing nothing. Only root's own filesystem is considered:
// a directory or file on another filesystem (a mount point) is never entered or changed.
// The staged tree must be on root's filesystem, since the sync renames from it. /etc is
// merged against the manifest of /etc as deployed (EtcManifestPath): a file the node
// changed keeps the node's version.
func PlanSync(root, staged string, o SyncOptions) (*SyncPlan, error) {
	pl := &planner{root: root, staged: staged, o: o, groups: map[uint64][]string{}, decided: map[string]bool{}, planned: map[string]bool{}}
	var rst, sst unix.Stat_t
	if err := unix.Lstat(root, &rst); err != nil {
		return nil, fmt.Errorf("live sync: the root %s: %w", root, err)
	}
	if err := unix.Lstat(staged, &sst); err != nil {
		return nil, fmt.Errorf("live sync: the staged tree %s: %w", staged, err)
	}
	if rst.Dev != sst.Dev {
		return nil, fmt.Errorf("live sync: the staged tree %s is not on the filesystem of the root %s: files cannot be renamed into it", staged, root)
	}
	pl.dev = rst.Dev
	m, err := ReadEtcManifest(root)
	if err != nil {
		return nil, fmt.Errorf("live sync: %w", err)
	}
	pl.manifest = m.byPath()
	pl.plan = &SyncPlan{Root: root, Staged: staged, NoManifest: m == nil, Totals: map[SyncClass]SyncTotal{}}
	if err := pl.dir("/"); err != nil {
		return nil, fmt.Errorf("live sync: %w", err)
	}
	if err := pl.linkGroups(); err != nil {
		return nil, fmt.Errorf("live sync: %w", err)
	}
	if pl.plan.Manifest, err = ScanEtc(staged); err != nil {
		return nil, fmt.Errorf("live sync: %w", err)
	}
	sort.Slice(pl.plan.Entries, func(i, j int) bool { return pl.plan.Entries[i].Path < pl.plan.Entries[j].Path })
	for _, e := range pl.plan.Entries {
		t := pl.plan.Totals[e.Class]
		t.Count++
		t.Bytes += e.Bytes
		pl.plan.Totals[e.Class] = t
	}
	return pl.plan, nil
}

// planner is one PlanSync.
type planner struct {
	root, staged string
	o            SyncOptions
	dev          uint64
	manifest     map[string]EtcFile
	plan         *SyncPlan
	// groups holds the staged tree's hard-link groups (inode -> paths); decided the
	// staged paths already added or replaced.
	groups  map[uint64][]string
	decided map[string]bool
	// planned holds every path with an entry.
	planned map[string]bool
}

// node is one side's view of a path; ok is false when it does not exist.
type node struct {
	ok bool
	st unix.Stat_t
}

func (pl *planner) lstat(top, p string) (node, error) {
	var n node
	err := unix.Lstat(filepath.Join(top, p), &n.st)
	if errors.Is(err, unix.ENOENT) {
		return node{}, nil
	}
	if err != nil {
		return node{}, fmt.Errorf("%s: %w", filepath.Join(top, p), err)
	}
	n.ok = true
	return n, nil
}

func (n node) isDir() bool { return n.ok && n.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// kind names the type of n.
func (n node) kind() string {
	switch n.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFREG:
		return "file"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "device"
}

// names lists the names in the directory p on both sides, sorted, without duplicates.
func (pl *planner) names(p string) ([]string, error) {
	seen := map[string]bool{}
	for _, top := range []string{pl.root, pl.staged} {
		f, err := os.Open(filepath.Join(top, p))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ns, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(top, p), err)
		}
		for _, n := range ns {
			seen[n] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// dir plans every entry of the directory p, present on both sides.
func (pl *planner) dir(p string) error {
	names, err := pl.names(p)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := pl.entry(path.Join(p, n)); err != nil {
			return err
		}
	}
	return nil
}

// add records an entry.
func (pl *planner) add(e SyncEntry) {
	pl.plan.Entries = append(pl.plan.Entries, e)
	pl.planned[e.Path] = true
}

// entry plans the path p.
func (pl *planner) entry(p string) error {
	if why, _ := pl.o.excluded(p); why == reasonNeverSynced {
		return nil // the kernel's and the runtime's filesystems: not even reported
	}
	r, err := pl.lstat(pl.root, p)
	if err != nil {
		return err
	}
	s, err := pl.lstat(pl.staged, p)
	if err != nil {
		return err
	}
	if r.ok && r.st.Dev != pl.dev {
		if s.ok {
			pl.add(SyncEntry{Path: p, Class: SyncKept, Kind: r.kind(), Reason: "another filesystem is mounted here"})
		}
		return nil
	}
	if why, descend := pl.o.excluded(p); why != "" {
		if descend && r.isDir() && s.isDir() {
			return pl.dir(p)
		}
		return pl.keep(p, r, s, why)
	}
	if under(p, "/etc") && !(r.isDir() && s.isDir()) && !(s.isDir() && !r.ok) {
		return pl.etc(p, r, s)
	}
	return pl.compare(p, r, s)
}

// compare plans a path outside the /etc merge.
func (pl *planner) compare(p string, r, s node) error {
	switch {
	case !r.ok:
		return pl.added(p, s)
	case !s.ok:
		return pl.removed(p, r)
	case r.isDir() && s.isDir():
		why, err := pl.metaDiffers(p, r, s)
		if err != nil {
			return err
		}
		if why != "" {
			pl.add(SyncEntry{Path: p, Class: SyncReplaced, Kind: "dir", MetaOnly: true, Reason: why})
		}
		return pl.dir(p)
	}
	why, err := pl.differs(p, r, s)
	if err != nil || why == "" {
		pl.group(p, s, false)
		return err
	}
	return pl.replaced(p, r, s, why)
}

// added plans a path only the image has: a directory goes whole.
func (pl *planner) added(p string, s node) error {
	e := SyncEntry{Path: p, Class: SyncAdded, Kind: s.kind(), Bytes: size(s)}
	if s.isDir() {
		n, err := pl.stagedTree(p)
		if err != nil {
			return err
		}
		e.Tree, e.Bytes = true, n
	}
	pl.add(e)
	pl.group(p, s, true)
	return nil
}

// removed plans a path only the root has; a directory goes with its content, unless
// another filesystem is mounted inside it.
func (pl *planner) removed(p string, r node) error {
	e := SyncEntry{Path: p, Class: SyncRemoved, Kind: r.kind(), Bytes: size(r)}
	if r.isDir() {
		n, mount, err := rootTree(filepath.Join(pl.root, p), pl.dev)
		if err != nil {
			return err
		}
		if mount != "" {
			pl.add(SyncEntry{Path: p, Class: SyncKept, Kind: "dir", Reason: "not in the image, but holds the mount point " + mount})
			return nil
		}
		e.Tree, e.Bytes = true, n
	}
	pl.add(e)
	return nil
}

// replaced plans a path both sides have, that differs (not two directories).
func (pl *planner) replaced(p string, r, s node, why string) error {
	if r.isDir() {
		_, mount, err := rootTree(filepath.Join(pl.root, p), pl.dev)
		if err != nil {
			return err
		}
		if mount != "" {
			pl.add(SyncEntry{Path: p, Class: SyncKept, Kind: "dir", Reason: "the image has a " + s.kind() + " here, but the directory holds the mount point " + mount})
			return nil
		}
	}
	e := SyncEntry{Path: p, Class: SyncReplaced, Kind: s.kind(), Bytes: size(s), Reason: why, typeChange: r.isDir() || s.isDir()}
	if s.isDir() {
		n, err := pl.stagedTree(p)
		if err != nil {
			return err
		}
		e.Tree, e.Bytes = true, n
	}
	pl.add(e)
	pl.group(p, s, true)
	return nil
}

// keep plans an excluded path: reported as kept when the image has something different
// there (a directory tree of the image's, such as /var, is reported whole).
func (pl *planner) keep(p string, r, s node, why string) error {
	if !s.ok || why == reasonNeverSynced {
		return nil
	}
	e := SyncEntry{Path: p, Class: SyncKept, Kind: s.kind(), Bytes: size(s), Reason: why}
	if s.isDir() {
		n, err := treeBytes(filepath.Join(pl.staged, p))
		if err != nil {
			return err
		}
		e.Tree, e.Bytes = true, n
		pl.add(e)
		return nil
	}
	if r.ok {
		diff, err := pl.differs(p, r, s)
		if err != nil || diff == "" {
			return err
		}
	}
	pl.add(e)
	return nil
}
