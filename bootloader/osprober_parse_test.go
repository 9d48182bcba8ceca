package bootloader

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseOSProber(t *testing.T) {
	out := strings.Join([]string{
		"/dev/loop4p4:Tiny test image A:TinyA:linux",
		"/dev/sda1@/EFI/Microsoft/Boot/bootmgfw.efi:Windows Boot Manager:Windows:efi",
		"garbage without colons",
		"/dev/sdb2:Fake: \"quoted\" ünïcode 1.0:Fake1:linux\r",
		"/dev/sdb3:::linux", // no PRETTY_NAME: empty long and short names
		"/dev/loop4p4:Duplicate:Dup:linux",
		"relative:Name:Short:linux",
		"/dev/sdc1:only:three",
		"",
		"   ",
	}, "\n")
	want := []osEntry{
		{"/dev/loop4p4", "Tiny test image A", "TinyA", "linux"},
		{"/dev/sda1@/EFI/Microsoft/Boot/bootmgfw.efi", "Windows Boot Manager", "Windows", "efi"},
		{"/dev/sdb2", "Fake: \"quoted\" ünïcode 1.0", "Fake1", "linux"},
		{"/dev/sdb3", "", "", "linux"},
	}
	if got := parseOSProber([]byte(out)); !reflect.DeepEqual(got, want) {
		t.Errorf("parseOSProber:\n got %q\nwant %q", got, want)
	}
	if got := parseOSProber(nil); len(got) != 0 {
		t.Errorf("no output: %q", got)
	}
}

func TestParseBootProber(t *testing.T) {
	out := strings.Join([]string{
		// Same volume, from the fallback probe.
		"/dev/loop4p4:/dev/loop4p4::/boot/vmlinuz-6.1.0-56-cloud-amd64:/boot/initrd.img-6.1.0-56-cloud-amd64:root=/dev/loop4p4",
		// Separate /boot, paths already prefixed (os-prober 1.81).
		"/dev/sda2:/dev/sda1:Debian GNU/Linux:/boot/vmlinuz-6.1.0-1:/boot/initrd.img-6.1.0-1:root=UUID=x ro quiet",
		// Separate /boot, paths on the /boot volume (older probes).
		"/dev/sda2:/dev/sda1:Debian, recovery:/vmlinuz-6.1.0-2:/initrd.img-6.1.0-2:ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off",
		// No initrd; params with colons; odd characters in the label.
		"/dev/sdb1:/dev/sdb1:Arch (x) 'q' \"q\" $x;|&:/boot/vmlinuz-linux::console=ttyS0,115200n8 a:b:c",
		// Microcode before the real initrd; a grub path to clean.
		"/dev/sdb1:/dev/sdb1:Arch:/boot/../boot/vmlinuz-6.2:/boot/intel-ucode.img /boot/initramfs-6.2.img:",
		// Empty boot field counts as the root.
		"/dev/sdd1:::/vmlinuz-5.10::",
		"/dev/sdb1:/dev/sdb1:too few fields:/boot/vmlinuz-x",
		"/dev/sdb1:/dev/sdb1:relative kernel:vmlinuz-x::",
		"/dev/sdb1:/dev/sdb1:escape in path:/boot/vmlinuz-\x1b[31m::",
		"/dev/sdb1:/dev/sdb1:tab in initrd:/boot/vmlinuz-7:/boot/initrd\t.img:",
		"junk line",
		"",
	}, "\n")
	want := []bootEntry{
		{"/dev/loop4p4", "/dev/loop4p4", "/boot/vmlinuz-6.1.0-56-cloud-amd64", "/boot/initrd.img-6.1.0-56-cloud-amd64"},
		{"/dev/sda2", "/dev/sda1", "/boot/vmlinuz-6.1.0-1", "/boot/initrd.img-6.1.0-1"},
		{"/dev/sda2", "/dev/sda1", "/boot/vmlinuz-6.1.0-2", "/boot/initrd.img-6.1.0-2"},
		{"/dev/sdb1", "/dev/sdb1", "/boot/vmlinuz-linux", ""},
		{"/dev/sdb1", "/dev/sdb1", "/boot/vmlinuz-6.2", "/boot/initramfs-6.2.img"},
		{"/dev/sdd1", "/dev/sdd1", "/vmlinuz-5.10", ""},
	}
	if got := parseBootProber([]byte(out)); !reflect.DeepEqual(got, want) {
		t.Errorf("parseBootProber:\n got %q\nwant %q", got, want)
	}
}

// TestParseBounds checks that a runaway output is cut, not held or parsed in full.
func TestParseBounds(t *testing.T) {
	line := "/dev/sda1:/dev/sda1::/boot/vmlinuz-1::\n"
	out := strings.Repeat(line, maxProberLines+10)
	if got := parseBootProber([]byte(out)); len(got) != maxProberLines {
		t.Errorf("%d entries parsed, want the bound %d", len(got), maxProberLines)
	}
	huge := "/dev/sda1:" + strings.Repeat("x", 2*maxProberOutput) + ":X:linux\n/dev/sda2:A:A:linux\n"
	if got := parseOSProber([]byte(huge)); len(got) != 0 {
		t.Errorf("an oversized line gave %d entries", len(got))
	}
}

func TestReportRoundTrip(t *testing.T) {
	rep := proberReport{Format: proberFormat, Roots: []proberRoot{
		{Partition: "/dev/loop4p4", Name: "Tiny: \"A\"\x1b", Entries: []bootEntry{
			{Root: "/dev/loop4p4", Boot: "/dev/loop4p4", Kernel: "/boot/vmlinuz-6.1", Initrd: "/boot/initrd.img-6.1"},
		}},
		{Partition: "/dev/loop4p5", Name: "B", Error: "linux-boot-prober /dev/loop4p5: exit status 1"},
	}}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeReport(append(b, '\n'))
	if err != nil || !reflect.DeepEqual(got, rep) {
		t.Errorf("round trip: %+v, %v\nwant %+v", got, err, rep)
	}

	bad := map[string]string{
		"other format":  `{"format":2,"roots":[],"new":true}`,
		"no format":     `{"roots":[]}`,
		"unknown field": `{"format":1,"roots":[{"partition":"/dev/x","kernel":"/boot/v"}]}`,
		"trailing data": `{"format":1,"roots":[]} {"format":1}`,
		"empty":         " \n",
		"not json":      "os-prober: warning\n",
		"oversized":     `{"format":1,"roots":[],"x":"` + strings.Repeat("x", maxChildReport) + `"}`,
	}
	for name, in := range bad {
		if _, err := decodeReport([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodeReport([]byte(`{"format":2}`)); err == nil || !strings.Contains(err.Error(), "format 2") {
		t.Errorf("a format mismatch should say so: %v", err)
	}
}
