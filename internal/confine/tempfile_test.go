package confine

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestTempFile: a temporary file replaces its target only at Commit, with its mode; Abort
// leaves the target and no temporary file; a symlink where the target belongs is refused,
// and a stray temporary file of an earlier cut write is removed.
func TestTempFile(t *testing.T) {
	top := t.TempDir()
	if err := os.WriteFile(filepath.Join(top, "f"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(top, ".f"+TempMarker+"cut")
	if err := os.WriteFile(stray, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tf, err := d.CreateTemp("f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stray temporary file kept: %v", err)
	}
	tf.WriteString("new, part")
	tf.Abort()
	if b, _ := os.ReadFile(filepath.Join(top, "f")); string(b) != "old" {
		t.Errorf("after Abort: %q", b)
	}
	if ents, _ := os.ReadDir(top); len(ents) != 1 {
		t.Errorf("after Abort the directory holds %d entries", len(ents))
	}
	tf, err = d.CreateTemp("f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	tf.WriteString("new")
	if b, _ := os.ReadFile(filepath.Join(top, "f")); string(b) != "old" {
		t.Errorf("before Commit: %q", b)
	}
	if err := tf.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := d.SyncDir("."); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(top, "f"))
	if b, _ := os.ReadFile(filepath.Join(top, "f")); err != nil || string(b) != "new" || fi.Mode().Perm() != 0o644 {
		t.Errorf("after Commit: %q, %v, %v", b, fi, err)
	}
	if err := tf.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(top, "l")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateTemp("l", 0o644); !errors.Is(err, ErrUnsafe) {
		t.Errorf("symlink target: err = %v, want ErrUnsafe", err)
	}
}
