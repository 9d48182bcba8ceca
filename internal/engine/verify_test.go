package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

func TestListLVs(t *testing.T) {
	report := `  {
      "report": [
          {
              "lv": [
                  {"vg_name":"os", "lv_name":"root", "lv_size":"4294967296"},
                  {"vg_name":"os", "lv_name":"swap", "lv_size":"  1073741824"}
              ]
          }
      ]
  }`
	fake := &run.Fake{Handler: func(c run.Call) (run.Result, error) { return run.Result{Stdout: []byte(report)}, nil }}
	got, err := listLVs(context.Background(), fake)
	if err != nil {
		t.Fatal(err)
	}
	if got["os/root"] != 4<<30 || got["os/swap"] != 1<<30 || len(got) != 2 {
		t.Errorf("lvs = %v", got)
	}
	if cmd := fake.Commands()[0]; cmd != "lvm lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_size" {
		t.Errorf("command = %s", cmd)
	}

	bad := &run.Fake{Handler: func(c run.Call) (run.Result, error) { return run.Result{Stdout: []byte("not json")}, nil }}
	if _, err := listLVs(context.Background(), bad); !errors.Is(err, ErrEnvironment) {
		t.Errorf("garbage: %v", err)
	}
	missing := &run.Fake{Handler: func(c run.Call) (run.Result, error) { return run.Result{}, run.Fail(c.Argv, 127, "lvm: not found") }}
	if _, err := listLVs(context.Background(), missing); !errors.Is(err, ErrEnvironment) || !strings.Contains(err.Error(), "listing logical volumes") {
		t.Errorf("failing lvm: %v", err)
	}
}

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
