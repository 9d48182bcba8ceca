package confine

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// TempFile is a new file written beside name and renamed over it only once complete
// (Commit), so that name never holds a partial file: a large file streamed from the
// network and cut short leaves at most the temporary file, which Abort, or the next
// CreateTemp or WriteFileAtomic of name, removes. Its name carries TempMarker.
type TempFile struct {
	*os.File
	d         *Dir
	tmp, name string
	dir       string
	perm      fs.FileMode
	done      bool
}

// CreateTemp creates, exclusively and mode 0600, a temporary file for name in name's
// directory, which must be made of real directories; name itself must be missing or a
// regular file. Temporary files an interrupted write of name left behind are removed
// first. The caller writes the file, then calls Commit or Abort.
func (d *Dir) CreateTemp(name string, perm fs.FileMode) (*TempFile, error) {
	c, err := d.rel(name)
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", name, err)
	}
	if c == "." {
		return nil, fmt.Errorf("writing %s: not a file name", d.Path(name))
	}
	if err := d.CheckFile(c); err != nil {
		return nil, fmt.Errorf("writing %s: %w", d.Path(name), err)
	}
	dir, base := path.Split(c)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	prefix := "." + base + TempMarker
	d.removeStrayTemps(dir, prefix)
	tmp, f, err := d.createTemp(dir, prefix)
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", d.Path(name), err)
	}
	return &TempFile{File: f, d: d, tmp: tmp, name: c, dir: dir, perm: perm}, nil
}

// Commit gives the file its mode, syncs it to the disk and renames it over name. The
// directory is not synced: SyncDir does that once for several commits in one directory.
// After a failure the temporary file is removed.
func (t *TempFile) Commit() error {
	if t.done {
		return fmt.Errorf("writing %s: already committed or aborted", t.d.Path(t.name))
	}
	t.done = true
	fail := func(err error) error {
		t.File.Close()
		t.d.root.Remove(t.tmp)
		return fmt.Errorf("writing %s: %w", t.d.Path(t.name), err)
	}
	if err := t.File.Chmod(t.perm); err != nil {
		return fail(err)
	}
	// Without this fsync the rename can reach the disk before the data, and a power cut
	// then leaves an empty or partial file under the final name.
	if err := t.File.Sync(); err != nil {
		return fail(err)
	}
	if err := t.File.Close(); err != nil {
		t.d.root.Remove(t.tmp)
		return fmt.Errorf("writing %s: %w", t.d.Path(t.name), err)
	}
	if err := t.d.root.Rename(t.tmp, t.name); err != nil {
		t.d.root.Remove(t.tmp)
		return fmt.Errorf("writing %s: %w", t.d.Path(t.name), err)
	}
	return nil
}

// Abort closes and removes the temporary file; name is left as it was. It does nothing
// after Commit.
func (t *TempFile) Abort() {
	if t.done {
		return
	}
	t.done = true
	t.File.Close()
	t.d.root.Remove(t.tmp)
}

// SyncDir syncs the directory name, so that the renames done in it are durable.
func (d *Dir) SyncDir(name string) error {
	c, err := d.rel(name)
	if err != nil {
		return err
	}
	return d.syncDir(c)
}
