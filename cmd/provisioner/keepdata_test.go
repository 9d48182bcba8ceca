package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keepNoPolicy keeps a data volume and names no partitions_policy, as Bareon's
// documents that keep data were written.
const keepNoPolicy = `{
  "images": [{"name": "a", "url": "http://x/a.tar", "target": "/"}],
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "2 GiB"},
    {"type": "partition", "mount": "/data", "file_system": "ext4", "size": "remaining", "keep_data": true}]}]
}`

// TestKeepDataWithoutPolicyValidatesAndPlans checks that validate and plan take such a
// document, saying on standard error that verify applies.
func TestKeepDataWithoutPolicyValidatesAndPlans(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "keep.json")
	if err := os.WriteFile(spec, []byte(keepNoPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	const warning = `warning: /partitions/0/volumes/1/keep_data: partitions_policy is absent and keep_data is set: Bareon's default, "verify", applies`
	for _, args := range [][]string{{"validate", spec}, {"plan", spec, "--device", "vda=8GiB", "--seed", "k"}} {
		r := runCLI(t, "", args...)
		if r.code != 0 || !strings.Contains(r.stderr, warning) {
			t.Errorf("%s: exit %d, stderr:\n%s", args[0], r.code, r.stderr)
		}
		if args[0] == "plan" && !strings.Contains(r.stdout, "verify") {
			t.Errorf("plan does not show the verify policy:\n%s", r.stdout)
		}
	}
}
