package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want Target
		err  string
	}{
		{arg: "vda=20GiB", want: Target{Name: "vda", SizeBytes: 20 << 30, SectorSize: 512}},
		{arg: "vda=2TB:4096", want: Target{Name: "vda", SizeBytes: 2e12, SectorSize: 4096}},
		{arg: "vda=15000", want: Target{Name: "vda", SizeBytes: 15000 << 20, SectorSize: 512}},
		{arg: "vda=/dev/sdb", want: Target{Name: "vda", Path: "/dev/sdb"}},
		{arg: "vda=disk.img", want: Target{Name: "vda", Path: "disk.img"}},
		{arg: "vda=50%", err: "needs an absolute size"},
		{arg: "vda=remaining", err: "needs an absolute size"},
		{arg: "vda=0", err: "needs an absolute size"},
		{arg: "vda", err: "want NAME=SIZE"},
		{arg: "=10GiB", err: "want NAME=SIZE"},
		{arg: "vda=", err: "want NAME=SIZE"},
		{arg: "vda=10GiB:1000", err: "must be 512 or 4096"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			got, err := ParseTarget(tc.arg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrUsage) {
					t.Fatalf("err = %v, want a usage error containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

const twoDisks = `{"images": [{"name": "a", "url": "http://x/a.tar", "target": "/", "boot": true}],
 "partitions": [
  {"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "2GiB"}]},
  {"type": "disk", "id": {"type": "name", "value": "/dev/vdb"}, "size": "1GiB", "volumes": [{"type": "partition", "mount": "/srv", "file_system": "ext4", "size": "remaining"}]}]}`

func TestPlanSpec(t *testing.T) {
	spec, _, err := schema.Load(strings.NewReader(twoDisks))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "vda.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 4<<30); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// vda from an image file; /dev/vdb from the spec's own size.
	l, err := PlanSpec(ctx, spec, []Target{{Name: "vda", Path: img}}, "s")
	if err != nil {
		t.Fatal(err)
	}
	if l.Disks[0].Path != img || l.Disks[0].SizeBytes != 4<<30 || l.Disks[1].SizeBytes != 1<<30 {
		t.Errorf("disks = %+v / %+v", l.Disks[0].Disk, l.Disks[1].Disk)
	}

	// The disk id is matched as written in the spec.
	if _, err := PlanSpec(ctx, spec, []Target{{Name: "/dev/vdb", SizeBytes: 2 << 30, SectorSize: 512}, {Name: "vda", SizeBytes: 8 << 30, SectorSize: 512}}, "s"); err != nil {
		t.Error("targets by spec id:", err)
	}

	for _, tc := range []struct {
		name    string
		targets []Target
		class   error
		msg     string
	}{
		{"unknown disk", []Target{{Name: "sdx", SizeBytes: 1 << 30}}, ErrUsage, `no disk with id "sdx" (its disks: /dev/vdb, vda)`},
		{"twice", []Target{{Name: "vda", SizeBytes: 8 << 30}, {Name: "vda", SizeBytes: 8 << 30}}, ErrUsage, "given twice"},
		{"missing path", []Target{{Name: "vda", Path: filepath.Join(t.TempDir(), "none.img")}}, ErrEnvironment, "none.img"},
		// vda has no size in the spec and no target: the planner says how to give one.
		{"no size", nil, nil, "--device vda=SIZE|PATH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PlanSpec(ctx, spec, tc.targets, "s")
			if err == nil || !strings.Contains(err.Error(), tc.msg) || (tc.class != nil && !errors.Is(err, tc.class)) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.class, tc.msg)
			}
		})
	}
}

// TestCheckTargets: plan and partition check --device and --size in one place, with
// one wording.
func TestCheckTargets(t *testing.T) {
	spec, _, err := schema.Load(strings.NewReader(twoDisks))
	if err != nil {
		t.Fatal(err)
	}
	vda := Target{Name: "vda", Path: "vda.img"}
	for _, tc := range []struct {
		name     string
		targets  []Target
		sizes    map[string]uint64
		needPath bool
		want     string // "" for no error
	}{
		{"paths", []Target{vda, {Name: "/dev/vdb", Path: "/dev/sdb"}}, map[string]uint64{"vda": 1 << 30}, true, ""},
		{"sizes where no path is needed", []Target{{Name: "vda", SizeBytes: 1 << 30}}, nil, false, ""},
		{"unknown disk", []Target{{Name: "sdx", Path: "x"}}, nil, true, `--device sdx: the spec has no disk with id "sdx" (its disks: /dev/vdb, vda)`},
		{"unknown --size", []Target{vda}, map[string]uint64{"vda": 1 << 30, "sdz": 1 << 30}, true, `--size sdz: the spec has no disk with id "sdz" (its disks: /dev/vdb, vda)`},
		{"twice", []Target{vda, vda}, nil, false, "--device vda is given twice"},
		{"a size where a path is needed", []Target{{Name: "vda", SizeBytes: 1 << 30}}, nil, true, "--device vda: partition needs a device or an image file, not a size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkTargets(spec, tc.targets, tc.sizes, tc.needPath)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("err = %v", err)
			case tc.want != "" && (!errors.Is(err, ErrUsage) || err.Error() != tc.want):
				t.Errorf("err = %v, want a usage error %q", err, tc.want)
			}
		})
	}
}
