package bootloader

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestConfine builds a fake sysfs: the allowed disk loop3, an md array on one of its
// partitions with a dm volume on the array's partition, and another disk with its own
// dm volume, which must stay hidden.
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
			if err := os.WriteFile(filepath.Join(d, p, "partition"), []byte("1\n"), 0o644); err != nil {
				t.Fatal(err)
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
	mk("loop3", []string{"loop3p1", "loop3p2"}, nil)
	mk("loop9", []string{"loop9p1"}, nil)
	mk("dm-1", nil, []string{"md0p1"}) // listed before md0: found on a second pass
	mk("md0", []string{"md0p1"}, []string{"loop3p2"})
	mk("dm-2", nil, []string{"loop9p1"})
	mk("vda", nil, nil)

	c, err := newConfinement(block, []string{"loop3", "loop3"})
	if err != nil {
		t.Fatal(err)
	}
	wantLinks := map[string]string{
		"loop3": filepath.Join(devices, "loop3"),
		"md0":   filepath.Join(devices, "md0"),
		"dm-1":  filepath.Join(devices, "dm-1"),
	}
	if !reflect.DeepEqual(c.links, wantLinks) {
		t.Errorf("links: %v\nwant %v", c.links, wantLinks)
	}
	wantNames := map[string]bool{"loop3": true, "loop3p1": true, "loop3p2": true, "md0": true, "md0p1": true, "dm-1": true}
	if !reflect.DeepEqual(c.names, wantNames) {
		t.Errorf("names: %v\nwant %v", c.names, wantNames)
	}

	if _, err := newConfinement(block, []string{"loop3p1"}); err == nil {
		t.Error("a partition accepted as a whole disk")
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
