package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteBlockSkipsZeroPieces: on a device that reads as zeros, writeBlock writes only
// the 4 KiB pieces that hold data (and a short last piece), so the device ends up equal to
// the block; without that promise it writes the whole block over old contents.
func TestWriteBlockSkipsZeroPieces(t *testing.T) {
	b := make([]byte, 3*rawSector+1000) // three whole pieces and a short one
	b[10] = 1                           // piece 0
	b[2*rawSector+rawSector-1] = 2      // piece 2
	b[len(b)-1] = 3                     // the short piece
	for _, tc := range []struct {
		name     string
		skipZero bool
		old      byte // what the device held before
		written  int64
	}{
		{"zeroed device", true, 0, int64(2*rawSector + 1000)},
		{"old contents", false, 0xee, int64(len(b))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dev")
			const off = 8192
			if err := os.WriteFile(path, bytes.Repeat([]byte{tc.old}, off+len(b)), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			var res RawResult
			err = writeBlock(f, b, off, tc.skipZero, &res)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if !bytes.Equal(got[off:], b) {
				t.Error("the device does not hold the block")
			}
			if res.Written != tc.written || res.Written+res.Skipped != int64(len(b)) {
				t.Errorf("written %d, skipped %d; want %d written of %d", res.Written, res.Skipped, tc.written, len(b))
			}
		})
	}
}
