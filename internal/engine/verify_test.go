package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

// lvmVerifyDoc keeps the root logical volume with the verify policy.
const lvmVerifyDoc = `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
 "partitions_policy": "verify",
 "partitions": [
  {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "8 GiB", "volumes": [
    {"type": "pv", "vg": "os", "size": "remaining"}]},
  {"type": "vg", "id": "os", "volumes": [
    {"type": "lv", "name": "root", "mount": "/", "file_system": "ext4", "size": "4 GiB", "keep_data": true},
    {"type": "lv", "name": "swap", "mount": "swap", "file_system": "swap", "size": "1 GiB"}]}]}`

// TestVerifyStepFailures runs the verify policy's steps that need no block device (a
// layout of logical volumes only; the loop-device tests run the rest) with a fake lvm,
// blkid and mkswap. A failure before the first write is the machine's (ErrEnvironment)
// or a mismatch, in the step's own words, and leaves the run unwritten; a failure after
// it is a write failure.
func TestVerifyStepFailures(t *testing.T) {
	const lvs = "lvm lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_size"
	report := func(rootSize uint64) string {
		return fmt.Sprintf(`{"report": [{"lv": [{"vg_name":"os", "lv_name":"root", "lv_size":"%d"}, {"vg_name":"os", "lv_name":"swap", "lv_size":"  1073741824"}]}]}`, rootSize)
	}
	for _, tc := range []struct {
		name    string
		fail    func(c run.Call) (run.Result, error) // nil: the default answer
		class   error
		head    string // the error's start: a step's own words, or the step number of a write
		written bool
	}{
		{"match", nil, nil, "", true},
		{"lvs garbage", func(c run.Call) (run.Result, error) {
			if c.Argv[1] == "lvs" {
				return run.Result{Stdout: []byte("not json")}, nil
			}
			return run.Result{}, errNotMe
		}, ErrEnvironment, "parsing lvm lvs output", false},
		{"lvm missing", func(c run.Call) (run.Result, error) {
			return run.Result{}, run.Fail(c.Argv, 127, "lvm: not found")
		}, ErrEnvironment, "listing logical volumes", false},
		{"lv size differs", func(c run.Call) (run.Result, error) {
			if c.Argv[1] == "lvs" {
				return run.Result{Stdout: []byte(report(4<<30 + 8<<20))}, nil
			}
			return run.Result{}, errNotMe
		}, partition.ErrMismatch, `partitions_policy "verify": disks do not match the plan: logical volume os/root is 4.01 GiB`, false},
		{"vgchange fails", func(c run.Call) (run.Result, error) {
			if c.Argv[1] == "vgchange" {
				return run.Result{}, run.Fail(c.Argv, 5, "Volume group \"os\" not found")
			}
			return run.Result{}, errNotMe
		}, ErrEnvironment, "activating volume group os", false},
		{"blkid fails", func(c run.Call) (run.Result, error) {
			if c.Argv[0] == "blkid" {
				return run.Result{}, run.Fail(c.Argv, 4, "blkid: error: /dev/os/root: No such device")
			}
			return run.Result{}, errNotMe
		}, ErrEnvironment, "probing /dev/os/root", false},
		{"mkswap fails", func(c run.Call) (run.Result, error) {
			if c.Argv[0] == "mkswap" {
				return run.Result{}, run.Fail(c.Argv, 1, "mkswap: error")
			}
			return run.Result{}, errNotMe
		}, ErrWrite, "step 5/5 (make swap on /dev/os/swap", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := partition.Plan(loadString(t, lvmVerifyDoc), nil, "verify")
			if err != nil {
				t.Fatal(err)
			}
			l.Disks = nil
			fake := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
				if tc.fail != nil {
					if res, err := tc.fail(c); err != errNotMe {
						return res, err
					}
				}
				switch {
				case c.Argv[0] == "lvm" && c.Argv[1] == "lvs":
					return run.Result{Stdout: []byte(report(4 << 30))}, nil
				case c.Argv[0] == "blkid":
					return run.Result{Stdout: []byte("TYPE=ext4\nUUID=1111-kept\n")}, nil
				}
				return run.Result{}, nil
			}}
			actions, err := partition.PolicyOf(l).Actions(partition.Devices{})
			if err != nil {
				t.Fatal(err)
			}
			st := &runState{}
			var phases []string
			events := st.track(func(ev Event) { phases = append(phases, ev.Phase) })
			err = applyPolicy(context.Background(), PartitionOptions{Out: io.Discard, Env: partition.Env{Run: fake}}, st, events, l, actions)
			if got := fake.Commands(); len(got) == 0 || got[0] != lvs {
				t.Errorf("commands %v, want lvs first", got)
			}
			// The partition phase begins with the first write; a failure before it is
			// reported in the phase before (planning).
			if st.wasWritten() != tc.written || slices.Contains(phases, PhasePartition) != tc.written {
				t.Errorf("written %v, phases %v; want written %v", st.wasWritten(), phases, tc.written)
			}
			if tc.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.class) || !strings.HasPrefix(err.Error(), tc.head) {
				t.Fatalf("err = %v, want %v starting with %q", err, tc.class, tc.head)
			}
			for _, other := range []error{ErrEnvironment, ErrWrite, partition.ErrMismatch} {
				if other != tc.class && errors.Is(err, other) {
					t.Errorf("err = %v is also %v", err, other)
				}
			}
		})
	}
}

// errNotMe tells the fake of TestVerifyStepFailures to give its default answer.
var errNotMe = errors.New("default answer")

func TestProbeFS(t *testing.T) {
	fake := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		switch c.Argv[len(c.Argv)-1] {
		case "/dev/empty":
			return run.Result{}, run.Fail(c.Argv, 2, "")
		case "/dev/broken":
			return run.Result{}, run.Fail(c.Argv, 4, "blkid: error: /dev/broken: No such device")
		}
		return run.Result{Stdout: []byte("DEVNAME=/dev/vda3\nUUID=ABCD-1234\nVERSION=FAT32\nLABEL=ESP\nTYPE=vfat\nUSAGE=filesystem\n")}, nil
	}}
	ctx := context.Background()
	info, err := probeFS(ctx, fake, "/dev/vda3")
	if err != nil || info != (partition.FSInfo{Type: "vfat", UUID: "ABCD-1234", Label: "ESP"}) {
		t.Errorf("vfat: %+v, %v", info, err)
	}
	if info, err := probeFS(ctx, fake, "/dev/empty"); err != nil || info != (partition.FSInfo{}) {
		t.Errorf("nothing on the device (blkid exit 2): %+v, %v", info, err)
	}
	if _, err := probeFS(ctx, fake, "/dev/broken"); !errors.Is(err, ErrEnvironment) || !strings.Contains(err.Error(), "No such device") {
		t.Errorf("blkid failure: %v", err)
	}
}

// TestImageDisks: the disks an image's filesystems live on decide which images may be
// deployed at the same time.
func TestImageDisks(t *testing.T) {
	doc := `{"images": [
	   {"name": "a", "url": "u", "target": "/"}, {"name": "b", "url": "u", "target": "/"}, {"name": "c", "url": "u", "target": "/"}],
	 "boot_mode": "bios",
	 "partitions": [
	  {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "4 GiB", "volumes": [
	    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["a"]},
	    {"type": "raid", "mount": "/srv", "file_system": "ext4", "size": "512 MiB", "images": ["b"]}]},
	  {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "4 GiB", "volumes": [
	    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["b"]},
	    {"type": "raid", "mount": "/srv", "file_system": "ext4", "size": "512 MiB", "images": ["b"]},
	    {"type": "pv", "vg": "v", "size": "1 GiB"}]},
	  {"type": "disk", "id": {"type": "name", "value": "sdc"}, "size": "4 GiB", "volumes": [
	    {"type": "pv", "vg": "v", "size": "1 GiB"}]},
	  {"type": "vg", "id": "v", "volumes": [{"type": "lv", "name": "c", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["c"]}]}]}`
	spec := loadString(t, doc)
	l, err := partition.Plan(spec, nil, "disks")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, im := range l.Images {
		got[im.Name] = strings.Join(imageDisks(l, im), ",")
	}
	want := map[string]string{"a": "sda", "b": "sda,sdb", "c": "sdb,sdc"}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("image %s: disks %q, want %q", name, got[name], w)
		}
	}
}
