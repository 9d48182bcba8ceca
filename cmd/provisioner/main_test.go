package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
)

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

const example = "../../examples/multiboot-two-images.json"

// badSpec has three independent faults.
const badSpec = `{
  "images": [{"name": "a", "url": "http://x/a.tar", "target": "/", "boot": true, "bogus": 1}],
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "10GiB",
    "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "101%"},
                {"type": "partition", "mount": "/var", "size": "1GiB"}]}]
}`

func TestValidateGood(t *testing.T) {
	r := runCLI(t, "", "validate", example)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "valid (2 image(s), 1 disk(s), 0 volume group(s))") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestValidateBadListsEveryErrorWithPointer(t *testing.T) {
	r := runCLI(t, badSpec, "validate", "-")
	if r.code != engine.ExitInvalidSpec {
		t.Fatalf("exit %d, want %d; stderr:\n%s", r.code, engine.ExitInvalidSpec, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	want := []string{
		`/images/0/bogus: unknown key "bogus"`,
		`/partitions/0/volumes/0/size: "101%" exceeds 100%`,
		`/partitions/0/volumes/1/file_system: required: the volume is mounted at "/var"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), r.stderr)
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d = %q, want %q", i, lines[i], w)
		}
	}
	if r.stdout != "" {
		t.Errorf("stdout should be empty, got %q", r.stdout)
	}
}

func TestValidateJSON(t *testing.T) {
	r := runCLI(t, badSpec, "validate", "--json", "-")
	if r.code != engine.ExitInvalidSpec {
		t.Fatalf("exit %d", r.code)
	}
	var ps []jsonProblem
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s", err, r.stdout)
	}
	if len(ps) != 3 || ps[1].Pointer != "/partitions/0/volumes/0/size" || ps[1].Severity != "error" {
		t.Errorf("problems = %+v", ps)
	}

	// A valid document with warnings: exit 0, warnings in the array.
	r = runCLI(t, "", "validate", "--json", "../../examples/raid1.json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil || len(ps) != 1 || ps[0].Severity != "warning" || ps[0].Pointer != "/images" {
		t.Error("warnings:", ps, err)
	}
}

func TestValidateWarningsGoToStderr(t *testing.T) {
	r := runCLI(t, "", "validate", "../../examples/raid1.json")
	if r.code != 0 || !strings.HasPrefix(r.stderr, "warning: /images: ") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestPlanJSONIsDeterministic(t *testing.T) {
	args := []string{"plan", example, "--device", "vda=20GiB", "--seed", "s1", "--json"}
	a, b := runCLI(t, "", args...), runCLI(t, "", args...)
	if a.code != 0 {
		t.Fatalf("exit %d: %s", a.code, a.stderr)
	}
	if a.stdout != b.stdout {
		t.Error("the same seed gave two different plans")
	}
	var l partition.Layout
	if err := json.Unmarshal([]byte(a.stdout), &l); err != nil {
		t.Fatal(err)
	}
	if l.Seed != "s1" || len(l.Disks) != 1 || l.Disks[0].SizeBytes != 20<<30 || len(l.Images) != 2 {
		t.Errorf("plan = seed %q, %d disks, %d images", l.Seed, len(l.Disks), len(l.Images))
	}
	c := runCLI(t, "", "plan", example, "--device", "vda=20GiB", "--json")
	var l2 partition.Layout
	if err := json.Unmarshal([]byte(c.stdout), &l2); err != nil {
		t.Fatal(err)
	}
	if l2.Seed == "" || l2.Seed == "s1" || l2.Multiboot.UUID == l.Multiboot.UUID {
		t.Errorf("without --seed a fresh seed must be chosen; got %q", l2.Seed)
	}
}

func TestPlanTable(t *testing.T) {
	r := runCLI(t, "", "plan", example, "--device", "vda=20GiB:4096", "--seed", "x")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"disk vda (simulated): 20 GiB, 5242880 sectors of 4096 bytes", "  #  START", "multiboot", "| UUID="} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestPlanReadsImageFileSize(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(12 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before, _ := os.Stat(img)
	r := runCLI(t, "", "plan", example, "--device", "vda="+img, "--seed", "x", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var l partition.Layout
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatal(err)
	}
	if l.Disks[0].Path != img || l.Disks[0].SizeBytes != 12<<30 {
		t.Errorf("disk = %+v", l.Disks[0].Disk)
	}
	after, _ := os.Stat(img)
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Error("plan modified the disk image")
	}
}

func TestPlanErrorsAndExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		stderrHead string
	}{
		{"does not fit", []string{"plan", example, "--device", "vda=5GiB"}, engine.ExitInvalidSpec, "/partitions/0: disk vda: the partitions need"},
		{"invalid spec", []string{"plan", "-", "--device", "vda=5GiB"}, engine.ExitInvalidSpec, "/images/0/bogus"},
		{"unknown disk", []string{"plan", example, "--device", "sdz=5GiB"}, engine.ExitFailure, `provisioner: --device sdz: the spec has no disk with id "sdz"`},
		{"missing device", []string{"plan", example, "--device", "vda=/nonexistent/disk"}, engine.ExitEnvironment, "provisioner: --device vda=/nonexistent/disk: probing"},
		{"bad sector size", []string{"plan", example, "--device", "vda=10GiB:1000"}, engine.ExitFailure, "provisioner: --device"},
		{"missing spec file", []string{"validate", "/nonexistent/spec.json"}, engine.ExitFailure, "provisioner: reading spec"},
		{"no argument", []string{"validate"}, engine.ExitFailure, "provisioner: accepts 1 arg(s)"},
		{"unknown flag", []string{"plan", example, "--bogus"}, engine.ExitFailure, "provisioner: unknown flag: --bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, badSpec, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, tc.stderrHead) {
				t.Errorf("stderr = %q, want it to start with %q", r.stderr, tc.stderrHead)
			}
		})
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, cmd := range []string{"validate", "plan", "reload", "confirm"} {
		r := runCLI(t, "", cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "provisioner "+cmd) {
			t.Errorf("%s --help: exit %d\n%s", cmd, r.code, r.stdout)
		}
	}
}
