package bootloader

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// tempMarker sits between the target's name and the random suffix of its temporary files,
// so that a later write can recognise (and remove) the ones a crash left behind.
const tempMarker = ".tmp-"

// WriteFileAtomic replaces path with data so that a crash at any moment leaves either the old
// or the new file, never a torn one: write a temporary file in the same directory, fsync it,
// rename over path, fsync the directory. hook, when non-nil, is called before each step with
// its name ("create", "write", "fsync", "rename", "fsync-dir"); a non-nil error from hook aborts
// there (tests use it to simulate a power cut) and leaves path untouched except for a stray
// temporary file, which the next WriteFileAtomic removes.
//
// The file gets exactly perm (the umask does not apply). Two concurrent writers of the same
// path are not supported: each removes the other's temporary file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode, hook func(step string) error) error {
	step := func(name string) error {
		if hook == nil {
			return nil
		}
		if err := hook(name); err != nil {
			return fmt.Errorf("writing %s: %s: %w", path, name, err)
		}
		return nil
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	prefix := "." + base + tempMarker
	removeStrayTemps(dir, prefix)

	if err := step("create"); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, prefix+"*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	// A real failure removes the temporary file; a hook abort stands for a power cut and
	// leaves it, exactly as a crash would.
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := step("write"); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	// CreateTemp makes the file 0600; set the mode before the rename so the new file never
	// appears with the wrong permissions.
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := step("fsync"); err != nil {
		f.Close()
		return err
	}
	// Without this fsync the rename can reach the disk before the data, and a power cut
	// then leaves an empty or partial file under the final name.
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := step("rename"); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := step("fsync-dir"); err != nil {
		return err
	}
	// The rename lives in the directory; until the directory is synced a power cut may
	// bring back the old name, and the caller would think the new content was durable.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// removeStrayTemps deletes temporary files an interrupted WriteFileAtomic left in dir.
// Failing to remove one is not worth failing the write for: it only wastes space.
func removeStrayTemps(dir, prefix string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
