package bootloader

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/provisioner/provisioner/internal/confine"
)

// tempMarker sits between the target's name and the random suffix of its temporary files,
// so that a later write can recognise (and remove) the ones a crash left behind.
const tempMarker = confine.TempMarker

// WriteFileAtomic replaces path with data so that a crash at any moment leaves either the old
// or the new file, never a torn one: write a temporary file in the same directory, fsync it,
// rename over path, fsync the directory. hook, when non-nil, is called before each step with
// its name ("create", "write", "fsync", "rename", "fsync-dir"); a non-nil error from hook aborts
// there (tests use it to simulate a power cut) and leaves path untouched except for a stray
// temporary file, which the next WriteFileAtomic removes.
//
// The directory holding path is trusted; inside it nothing is followed: the temporary file
// is created exclusively (a device node or FIFO planted at some name is never opened) and the
// rename replaces whatever path was, symlink included. The file gets exactly perm (the umask
// does not apply). Two concurrent writers of the same path are not supported: each removes
// the other's temporary file (callers hold the boot directory's lock).
func WriteFileAtomic(path string, data []byte, perm os.FileMode, hook func(step string) error) error {
	d, err := confine.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer d.Close()
	return d.WriteFileAtomic(filepath.Base(path), data, perm, hook)
}
