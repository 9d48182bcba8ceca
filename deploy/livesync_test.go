package deploy

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// tree makes files under top: "path" -> content; a trailing "/" makes a directory,
// "->target" a symlink.
func tree(t *testing.T, top string, files map[string]string) {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(top, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		c := files[n]
		var err error
		switch {
		case strings.HasSuffix(n, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(c, "->"):
			err = os.Symlink(c[2:], p)
		default:
			err = os.WriteFile(p, []byte(c), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// classes maps each planned path to its class ("added", ...), for comparing plans.
func classes(p *SyncPlan) map[string]string {
	out := map[string]string{}
	for _, e := range p.Entries {
		out[e.Path] = e.Class.String()
	}
	return out
}

func wantClasses(t *testing.T, p *SyncPlan, want map[string]string) {
	t.Helper()
	got := classes(p)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s: %s", k, v)
		}
	}
}

// syncPair makes a root and a staged tree inside it, with the files given.
func syncPair(t *testing.T, rootFiles, stagedFiles map[string]string) (root, staged string) {
	t.Helper()
	root = t.TempDir()
	staged = filepath.Join(root, ".provisioner-stage")
	tree(t, root, rootFiles)
	if err := os.Mkdir(staged, 0o755); err != nil {
		t.Fatal(err)
	}
	tree(t, staged, stagedFiles)
	return root, staged
}

var syncOpts = SyncOptions{StageDir: "/.provisioner-stage"}

func TestPlanSyncClasses(t *testing.T) {
	root, staged := syncPair(t, map[string]string{
		"usr/bin/same": "same", "usr/bin/changed": "old", "usr/bin/gone": "gone",
		"usr/lib/old/": "", "usr/lib/old/a.so": "aaaa", "usr/lib/link": "->old",
		"etc/hostname": "node-7\n", "etc/machine-id": "abc\n", "etc/ssh/ssh_host_ed25519_key": "key",
		"etc/os-release": "1\n", "var/log/syslog": "log", "var/lib/app/state": "node state",
		"tmp/x": "x", "proc/": "", "lost+found/": "",
	}, map[string]string{
		"usr/bin/same": "same", "usr/bin/changed": "new", "usr/bin/new": "brand new",
		"usr/lib/new/": "", "usr/lib/new/b.so": "bbbbbb", "usr/lib/link": "->new",
		"etc/hostname": "image\n", "etc/machine-id": "", "etc/ssh/ssh_host_ed25519_key": "image key",
		"etc/os-release": "2\n", "var/lib/app/state": "image state", "var/cache/x": "xx",
		"tmp/y": "y",
	})
	p, err := PlanSync(root, staged, syncOpts)
	if err != nil {
		t.Fatal(err)
	}
	wantClasses(t, p, map[string]string{
		"/usr/bin/changed": "replaced", "/usr/bin/new": "added", "/usr/bin/gone": "removed",
		"/usr/lib/new": "added", "/usr/lib/old": "removed", "/usr/lib/link": "replaced",
		"/etc/hostname": "kept", "/etc/machine-id": "kept", "/etc/ssh/ssh_host_ed25519_key": "kept",
		// No manifest: a differing /etc file counts as changed on the node.
		"/etc/os-release": "merged",
		"/var":            "kept",
	})
	if !p.NoManifest {
		t.Error("NoManifest is false without a manifest")
	}
	if tot := p.Totals[SyncAdded]; tot.Count != 2 || tot.Bytes != int64(len("brand new")+len("bbbbbb")) {
		t.Errorf("added totals: %+v", tot)
	}
	if tot := p.Totals[SyncRemoved]; tot.Count != 2 || tot.Bytes != int64(len("gone")+len("aaaa")) {
		t.Errorf("removed totals: %+v", tot)
	}
	for _, e := range p.Entries {
		if e.Path == "/usr/lib/new" && !e.Tree {
			t.Error("a new directory is not handled whole")
		}
		if e.Path == "/etc/os-release" && e.NewPath != "/etc/os-release.provisioner-new" {
			t.Errorf("merged new path: %q", e.NewPath)
		}
	}
}

func TestPlanSyncIncludeVar(t *testing.T) {
	root, staged := syncPair(t, map[string]string{
		"var/lib/app/state": "old", "var/lib/app/stale": "x", "var/lib/other/db": "node",
	}, map[string]string{
		"var/lib/app/state": "new", "var/lib/other/db": "image",
	})
	o := syncOpts
	o.IncludeVar = []string{"/var/lib/app"}
	p, err := PlanSync(root, staged, o)
	if err != nil {
		t.Fatal(err)
	}
	wantClasses(t, p, map[string]string{
		"/var/lib/app/state": "replaced", "/var/lib/app/stale": "removed", "/var/lib/other": "kept",
	})
}

// TestPlanSyncEtcManifest: with a manifest, a file the node left as deployed is
// replaced, one it changed is merged, one it made is kept, one it removed is merged.
func TestPlanSyncEtcManifest(t *testing.T) {
	deployed := map[string]string{
		"etc/untouched.conf": "v1", "etc/edited.conf": "v1", "etc/dropped.conf": "v1",
		"etc/deleted-on-node.conf": "v1", "etc/same.conf": "s",
	}
	root, staged := syncPair(t, deployed, map[string]string{
		"etc/untouched.conf": "v2", "etc/edited.conf": "v2", "etc/deleted-on-node.conf": "v2",
		"etc/same.conf": "s", "etc/new.conf": "n",
	})
	m, err := ScanEtc(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteEtcManifest(root, m); err != nil {
		t.Fatal(err)
	}
	tree(t, root, map[string]string{"etc/mine.conf": "node's own"})
	os.WriteFile(filepath.Join(root, "etc/edited.conf"), []byte("v1 + node edit"), 0o644)
	os.Remove(filepath.Join(root, "etc/deleted-on-node.conf"))
	p, err := PlanSync(root, staged, syncOpts)
	if err != nil {
		t.Fatal(err)
	}
	wantClasses(t, p, map[string]string{
		"/etc/untouched.conf": "replaced", "/etc/edited.conf": "merged", "/etc/dropped.conf": "removed",
		"/etc/deleted-on-node.conf": "merged", "/etc/mine.conf": "kept", "/etc/new.conf": "added",
	})
	if p.NoManifest {
		t.Error("NoManifest with a manifest")
	}
}

func TestPlanSyncHardLinkGroup(t *testing.T) {
	root, staged := syncPair(t, map[string]string{"usr/bin/a": "same", "usr/bin/b": "same"}, map[string]string{"usr/bin/a": "same"})
	if err := os.Link(filepath.Join(staged, "usr/bin/a"), filepath.Join(staged, "usr/bin/b")); err != nil {
		t.Fatal(err)
	}
	// The root has two separate files of the same content: the image's link must be made.
	p, err := PlanSync(root, staged, syncOpts)
	if err != nil {
		t.Fatal(err)
	}
	wantClasses(t, p, map[string]string{"/usr/bin/a": "replaced", "/usr/bin/b": "replaced"})
	if err := ApplySync(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(filepath.Join(root, "usr/bin/a"))
	b, _ := os.Stat(filepath.Join(root, "usr/bin/b"))
	if !os.SameFile(a, b) {
		t.Error("the hard link is not kept")
	}
	if _, err := os.Stat(staged); !os.IsNotExist(err) {
		t.Errorf("the staged tree is still there: %v", err)
	}
	// Linked as in the image now: nothing left to do.
	tree(t, root, map[string]string{".provisioner-stage/usr/bin/a": "same"})
	os.Link(filepath.Join(staged, "usr/bin/a"), filepath.Join(staged, "usr/bin/b"))
	if p, err = PlanSync(root, staged, syncOpts); err != nil || len(p.Entries) != 0 {
		t.Errorf("second plan: %+v %v", p, err)
	}
}

func TestPlanSyncTypeChange(t *testing.T) {
	root, staged := syncPair(t, map[string]string{"opt/x/": "", "opt/x/f": "f", "opt/y": "y"},
		map[string]string{"opt/x": "now a file", "opt/y/": "", "opt/y/g": "g"})
	p, err := PlanSync(root, staged, syncOpts)
	if err != nil {
		t.Fatal(err)
	}
	wantClasses(t, p, map[string]string{"/opt/x": "replaced", "/opt/y": "replaced"})
	if err := ApplySync(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "opt/x")); string(b) != "now a file" {
		t.Errorf("opt/x: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "opt/y/g")); string(b) != "g" {
		t.Errorf("opt/y/g: %q %v", b, err)
	}
}

// TestPlanSyncMergedLink: a hard-linked pair of /etc files the node changed is merged,
// not also replaced as a link group (the node's versions stay).
func TestPlanSyncMergedLink(t *testing.T) {
	root, staged := syncPair(t, map[string]string{"etc/a": "node a", "etc/b": "node b"}, map[string]string{"etc/a": "image"})
	if err := os.Link(filepath.Join(staged, "etc/a"), filepath.Join(staged, "etc/b")); err != nil {
		t.Fatal(err)
	}
	p, err := PlanSync(root, staged, syncOpts)
	if err != nil {
		t.Fatal(err)
	}
	wantClasses(t, p, map[string]string{"/etc/a": "merged", "/etc/b": "merged"})
	if len(p.Entries) != 2 {
		t.Errorf("entries: %+v", p.Entries)
	}
	if err := ApplySync(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[string]string{"etc/a": "node a", "etc/b": "node b", "etc/a.provisioner-new": "image", "etc/b.provisioner-new": "image"} {
		if b, err := os.ReadFile(filepath.Join(root, n)); string(b) != want {
			t.Errorf("%s: %q %v", n, b, err)
		}
	}
}
