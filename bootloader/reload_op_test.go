package bootloader

import (
	"context"
	"testing"
)

// TestBeginReloadNamesTheOperation moves the default away from the image an update
// rewrites: the history record of the move bears the update, not a reload nobody ran,
// and says the image is updated; "" still records a reload.
func TestBeginReloadNamesTheOperation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ op, wantOp, wantDetail string }{
		{"update", "update", "default moved from centos to ubuntu while centos is updated"},
		{"", "reload", "default moved from centos to ubuntu while centos is reloaded"},
	} {
		dir := writeBootDir(t, switchBootInfo(), defaultEnv())
		moveTo := 1
		moved, err := BeginReload(ctx, dir, 0, &moveTo, tc.op)
		if err != nil {
			t.Fatal(err)
		}
		if moved == nil || moved.OSID != "ubuntu" {
			t.Fatalf("op %q: moved = %+v, want ubuntu", tc.op, moved)
		}
		h, err := ReadHistory(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Entries) != 1 {
			t.Fatalf("op %q: history %+v, want one record", tc.op, h.Entries)
		}
		if e := h.Entries[0]; e.Operation != tc.wantOp || e.Detail != tc.wantDetail || e.From != "centos" || e.To != "ubuntu" {
			t.Errorf("op %q: history record %+v, want operation %q, detail %q", tc.op, e, tc.wantOp, tc.wantDetail)
		}
	}
}
