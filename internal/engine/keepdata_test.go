package engine

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// keepDataNoPolicyDoc is verifyDoc's document with keep_data on its data volume and no
// partitions_policy, as Bareon's documents that keep data were written.
func keepDataNoPolicyDoc(t *testing.T) string {
	t.Helper()
	doc := verifyDoc(schema.PolicyVerify, true, "remaining")
	out := strings.Replace(doc, `"partitions_policy": "verify",`, "", 1)
	if out == doc {
		t.Fatal("verifyDoc no longer names its policy as this test expects")
	}
	return out
}

// TestPartitionKeepDataWithoutPolicy partitions with a document that sets keep_data and
// names no policy: Bareon's default, verify, applies. On a disk holding the layout the
// kept volume's file survives; on a blank disk the run fails and writes nothing.
func TestPartitionKeepDataWithoutPolicy(t *testing.T) {
	needLoop(t, "mke2fs", "mkfs.vfat")
	spec := loadString(t, keepDataNoPolicyDoc(t))
	if spec.Policy() != schema.PolicyVerify {
		t.Fatalf("policy %q, want verify", spec.Policy())
	}

	t.Run("disk holding the layout", func(t *testing.T) {
		dir := t.TempDir()
		first, files, err := partitionFiles(t, loadString(t, verifyDoc(schema.PolicyClean, false, "remaining")), dir, "keep-first", io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		img := files["vda"]
		dataNum := len(first.Disks[0].Partitions)
		dataUUID := first.Disks[0].Partitions[dataNum-1].FS.UUID
		withPartition(t, img, first.Disks[0], dataNum, func(t *testing.T, mnt string) {
			if err := os.WriteFile(filepath.Join(mnt, "keep.txt"), []byte("precious\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		})
		l, _, err := partitionFiles(t, spec, dir, "keep-second", io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		noLoopFor(t, img)
		if got := blkidOf(t, img, l.Disks[0]); got[dataNum].UUID != dataUUID {
			t.Errorf("kept volume UUID %s, want the original %s", got[dataNum].UUID, dataUUID)
		}
		withPartition(t, img, l.Disks[0], dataNum, func(t *testing.T, mnt string) {
			b, err := os.ReadFile(filepath.Join(mnt, "keep.txt"))
			if err != nil || string(b) != "precious\n" {
				t.Errorf("kept file: %q, %v", b, err)
			}
		})
	})

	t.Run("blank disk", func(t *testing.T) {
		dir := t.TempDir()
		img := filepath.Join(dir, "vda.img")
		sparse(t, img, 4<<30)
		before := hashFile(t, img)
		_, _, err := partitionFiles(t, spec, dir, "keep-blank", io.Discard)
		if err == nil || !strings.Contains(err.Error(), `partitions_policy "verify"`) || !strings.Contains(err.Error(), "no GPT") {
			t.Fatalf("err = %v, want verify to find no GPT", err)
		}
		noLoopFor(t, img)
		if hashFile(t, img) != before {
			t.Error("a failed verify changed the blank disk")
		}
	})
}
