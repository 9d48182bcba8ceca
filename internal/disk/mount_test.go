package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestMountForReadingRefuses: a journal that needs replaying and a filesystem other than
// ext4 or xfs are refused before any mount is tried, since a read-only ext4 mount still
// replays the journal (a write).
func TestMountForReadingRefuses(t *testing.T) {
	dir := t.TempDir()
	sb := make([]byte, 4096)
	sb[1080], sb[1081] = 0x53, 0xEF // ext2/3/4 magic
	img := filepath.Join(dir, "clean.img")
	if err := os.WriteFile(img, sb, 0o644); err != nil {
		t.Fatal(err)
	}
	if NeedsJournalRecovery(img) || SniffFS(img) != "ext4" {
		t.Fatalf("clean superblock: recovery %v, type %q", NeedsJournalRecovery(img), SniffFS(img))
	}
	binary.LittleEndian.PutUint32(sb[1024+0x60:], 0x0004) // incompat RECOVER
	dirty := filepath.Join(dir, "dirty.img")
	if err := os.WriteFile(dirty, sb, 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if err := MountForReading(context.Background(), dirty, mnt, "ext4"); !errors.Is(err, ErrNeedsRecovery) {
		t.Errorf("dirty ext4: err = %v, want ErrNeedsRecovery", err)
	}
	if err := MountForReading(context.Background(), img, mnt, "vfat"); err == nil || errors.Is(err, ErrNeedsRecovery) {
		t.Errorf("vfat: err = %v, want a refusal of the type", err)
	}
	if err := MountForReading(context.Background(), img, mnt, ""); err == nil {
		t.Error("an unknown filesystem was mounted")
	}
}
