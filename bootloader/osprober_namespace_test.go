package bootloader

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestConfine builds a fake sysfs: the target disk loop3 with a root partition, an md
// member, a /boot partition and an ESP; an md array on the member with an LVM volume (a
// second root) on it; and another disk with its own dm volume. Only the roots and what
// they are assembled from may show as os-prober's candidates; the /boot volume is known
// to blkid only.
func TestConfine(t *testing.T) {
	sys, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	devices := filepath.Join(sys, "devices")
	block := filepath.Join(sys, "block")
	mk := func(dev string, parts []string, slaves []string) {
		t.Helper()
		d := filepath.Join(devices, dev)
		for _, p := range parts {
			if err := os.MkdirAll(filepath.Join(d, p), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"partition", "start"} {
				if err := os.WriteFile(filepath.Join(d, p, f), []byte("1\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := os.MkdirAll(filepath.Join(d, "slaves"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range slaves {
			if err := os.Symlink("../../"+s, filepath.Join(d, "slaves", s)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(d, "queue"), 0o755); err != nil { // a non-partition subdirectory
			t.Fatal(err)
		}
		if err := os.MkdirAll(block, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../devices/"+dev, filepath.Join(block, dev)); err != nil {
			t.Fatal(err)
		}
	}
	mk("loop3", []string{"loop3p1", "loop3p2", "loop3p3", "loop3p4"}, nil)
	mk("loop9", []string{"loop9p1"}, nil)
	mk("dm-1", nil, []string{"md0"}) // listed before md0
	mk("md0", nil, []string{"loop3p2"})
	mk("dm-2", nil, []string{"loop9p1"})
	mk("vda", nil, nil)

	c, err := newConfinement(block, []string{"loop3p1", "dm-1"}, []string{"loop3p3"})
	if err != nil {
		t.Fatal(err)
	}
	wantLinks := map[string]string{
		"md0":  filepath.Join(devices, "md0"),
		"dm-1": filepath.Join(devices, "dm-1"),
	}
	if !reflect.DeepEqual(c.links, wantLinks) {
		t.Errorf("links: %v\nwant %v", c.links, wantLinks)
	}
	loop3 := filepath.Join(devices, "loop3")
	wantMirrors := map[string]map[string]string{"loop3": {
		"loop3p1": filepath.Join(loop3, "loop3p1"),
		"loop3p2": filepath.Join(loop3, "loop3p2"),
		"queue":   filepath.Join(loop3, "queue"),
		"slaves":  filepath.Join(loop3, "slaves"),
	}}
	if !reflect.DeepEqual(c.mirrors, wantMirrors) {
		t.Errorf("mirrors: %v\nwant %v", c.mirrors, wantMirrors)
	}
	boot := filepath.Join(loop3, "loop3p3")
	wantStartless := map[string]map[string]string{"loop3/loop3p3": {"partition": filepath.Join(boot, "partition")}}
	if !reflect.DeepEqual(c.startless, wantStartless) {
		t.Errorf("startless: %v\nwant %v", c.startless, wantStartless)
	}
	wantNames := map[string]bool{"loop3": true, "loop3p1": true, "loop3p2": true, "loop3p3": true, "md0": true, "dm-1": true}
	if !reflect.DeepEqual(c.names, wantNames) {
		t.Errorf("names: %v\nwant %v", c.names, wantNames)
	}
	if want := map[string]bool{"loop3p1": true, "dm-1": true}; !reflect.DeepEqual(c.roots, want) {
		t.Errorf("roots: %v\nwant %v", c.roots, want)
	}

	// What os-prober walks in the rebuilt /sys/block: the root and the md member only;
	// the /boot volume is there for blkid, without start.
	fake := t.TempDir()
	if err := c.populate(fake); err != nil {
		t.Fatal(err)
	}
	var walked []string
	found, err := filepath.Glob(filepath.Join(fake, "*", "*[0-9]"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range found {
		if _, err := os.Stat(filepath.Join(p, "start")); err == nil {
			walked = append(walked, filepath.Base(p))
		}
	}
	if want := []string{"loop3p1", "loop3p2"}; !reflect.DeepEqual(walked, want) {
		t.Errorf("os-prober would walk %v, want %v", walked, want)
	}
	if _, err := os.Stat(filepath.Join(fake, "loop3", "loop3p3", "partition")); err != nil {
		t.Errorf("the /boot volume is missing: %v", err)
	}

	// A root on the same disk as the /boot volume named twice stays a root.
	c, err = newConfinement(block, []string{"loop3p1"}, []string{"loop3p1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.mirrors["loop3"]["loop3p1"]; !ok {
		t.Errorf("a root also given as /boot is hidden: %v", c.mirrors)
	}
	if _, err := newConfinement(block, []string{"loop7p1"}, nil); err == nil {
		t.Error("a volume missing from sysfs accepted")
	}
}

func TestLVMConfig(t *testing.T) {
	got := lvmConfig(map[string]bool{"loop3": true, "loop3p2": true, "dm-1": true, "cciss!c0d0": true})
	want := "devices {\n" +
		"\tfilter = [ \"a|^/dev/dm-1$|\", \"a|^/dev/loop3$|\", \"a|^/dev/loop3p2$|\", \"r|.*|\" ]\n" +
		"\tglobal_filter = [ \"a|^/dev/dm-1$|\", \"a|^/dev/loop3$|\", \"a|^/dev/loop3p2$|\", \"r|.*|\" ]\n" +
		"}\n"
	if got != want {
		t.Errorf("lvm.conf:\n%s\nwant\n%s", got, want)
	}
}

func TestFilterPartitions(t *testing.T) {
	in := "major minor  #blocks  name\n\n 254        0   20971520 vda\n 254        1   20970496 vda1\n   7        3      65536 loop3\n 259        0      16384 loop3p1\n 259        9      16384 loop3p10\n"
	want := "major minor  #blocks  name\n\n   7        3      65536 loop3\n 259        0      16384 loop3p1\n"
	if got := string(filterPartitions([]byte(in), map[string]bool{"loop3": true, "loop3p1": true})); got != want {
		t.Errorf("filtered:\n%s\nwant\n%s", got, want)
	}
}

// TestProberArgs: the child reads back the roots and /boot volumes the parent passes.
func TestProberArgs(t *testing.T) {
	v := ProberVolumes{Roots: []string{"/dev/vda3", "/dev/mapper/vg-root"}, Boot: []string{"/dev/vda4"}}
	args := v.args()
	if want := []string{"/dev/vda3", "/dev/mapper/vg-root", "boot=/dev/vda4"}; !reflect.DeepEqual(args, want) {
		t.Errorf("args %q, want %q", args, want)
	}
	if got := parseProberArgs(args); !reflect.DeepEqual(got, v) {
		t.Errorf("read back %+v, want %+v", got, v)
	}
}

// TestShowsDeviceMapper: lvs stays visible to os-prober exactly when a shown device is
// a logical volume; hiding it then would make os-prober miss the root.
func TestShowsDeviceMapper(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  bool
	}{
		{[]string{"vda", "vda3", "vda4"}, false},
		{[]string{"loop0", "loop0p1", "md127"}, false},
		{[]string{"vda", "vda5", "dm-2"}, true},
	} {
		c := confinement{names: map[string]bool{}}
		for _, n := range tc.names {
			c.names[n] = true
		}
		if got := c.showsDeviceMapper(); got != tc.want {
			t.Errorf("showsDeviceMapper(%v) = %v, want %v", tc.names, got, tc.want)
		}
	}
}
