package bootloader

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func testBootInfo() *BootInfo {
	return &BootInfo{
		MultibootPartition: "6f3c1a2e-0000-4000-8000-000000000001",
		Elements: []Element{
			{
				GrubID: 0, ImageName: "ubuntu-22.04", OSID: "ubuntu", ImageUUID: "u-img",
				BootName: "Ubuntu 22.04.4 LTS", RootUUID: "root-0", MenuentryID: "img-ubuntu",
				Kernel: "/boot/vmlinuz-5.15.0-100-generic", Initrd: "/boot/initrd.img-5.15.0-100-generic",
				Cmdline:     "console=ttyS0",
				Filesystems: map[string]string{"/": "root-0", "/boot": "boot-0", "/var": "var-0"},
			},
			{
				GrubID: 1, ImageName: "debian-12", OSID: "utility", ImageUUID: "d-img",
				BootName: "Debian GNU/Linux 12", RootUUID: "root-1", MenuentryID: "img-utility",
				Kernel: "/boot/vmlinuz-6.1.0-18-amd64", Initrd: "/boot/initrd.img-6.1.0-18-amd64",
				Filesystems: map[string]string{"/": "root-1"},
			},
		},
	}
}

func TestBootInfoRoundTrip(t *testing.T) {
	b := testBootInfo()
	once := 1
	b.PendingOnce = &once
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(data), "}\n") || !strings.Contains(string(data), "\n  \"elements\": [") {
		t.Errorf("not indented JSON with a trailing newline:\n%s", data)
	}
	p := filepath.Join(t.TempDir(), "boot-info.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadBootInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, b) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, b)
	}
	again, err := got.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(data) {
		t.Error("Encode is not deterministic")
	}
}

func TestBootInfoKeys(t *testing.T) {
	data, err := testBootInfo().Encode()
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Top      map[string]json.RawMessage
		Elements []map[string]json.RawMessage `json:"elements"`
	}
	if err := json.Unmarshal(data, &raw.Top); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	// pending_once is omitted when nothing is pending.
	if got, want := sortedKeys(raw.Top), []string{"current_element", "elements", "multiboot_partition"}; !slices.Equal(got, want) {
		t.Errorf("top-level keys = %q, want %q", got, want)
	}
	wantEl := []string{
		// Bareon's
		"boot_name", "grub_id", "image_name", "image_uuid", "os_id", "root_uuid",
		// ours
		"cmdline", "filesystems", "initrd", "kernel", "menuentry_id",
	}
	slices.Sort(wantEl)
	if got := sortedKeys(raw.Elements[0]); !slices.Equal(got, wantEl) {
		t.Errorf("element keys = %q, want %q", got, wantEl)
	}
	if string(raw.Elements[1]["grub_id"]) != "1" || string(raw.Elements[1]["os_id"]) != `"utility"` {
		t.Errorf("element 1 = %s", data)
	}
}

func sortedKeys(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestBootInfoEncodeEmpty(t *testing.T) {
	b := &BootInfo{Elements: []Element{{GrubID: 0, OSID: "only"}}}
	data, err := (&BootInfo{}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"elements": []`) {
		t.Errorf("nil elements not written as []:\n%s", data)
	}
	data, err = b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"filesystems": {}`) {
		t.Errorf("nil filesystems not written as {}:\n%s", data)
	}
	if b.Elements[0].Filesystems != nil {
		t.Error("Encode modified its receiver")
	}
}

func TestReadBootInfoErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	if _, err := ReadBootInfo(missing); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Error("missing file:", err)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"elements": [`), 0o644)
	if _, err := ReadBootInfo(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Error("truncated file:", err)
	}
	// Bareon's own files carry no keys of ours and may carry others: they still read.
	bareon := filepath.Join(dir, "bareon.json")
	os.WriteFile(bareon, []byte(`{"elements":[{"grub_id":2,"image_name":"x","os_id":"centos","image_uuid":"u","boot_name":"CentOS","root_uuid":"r","extra":1}],"current_element":2,"multiboot_partition":"m"}`), 0o644)
	b, err := ReadBootInfo(bareon)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := b.Find("centos"); err != nil || e.GrubID != 2 {
		t.Error("Find in Bareon's file:", e, err)
	}
}

func TestBootInfoFind(t *testing.T) {
	b := testBootInfo()
	b.Elements = append(b.Elements, Element{GrubID: 2, ImageName: "debian-12", OSID: "7"})
	tests := []struct {
		in     string
		wantID int
	}{
		{"0", 0},
		{"1", 1},
		{"ubuntu", 0},               // os_id
		{"ubuntu-22.04", 0},         // image_name
		{"utility", 1},              // os_id
		{"7", 2},                    // a numeric os_id that is no grub_id
		{"img-ubuntu", -1},          // menuentry ids are not accepted
		{"3", -1},                   // no such grub_id
		{"debian-12", -2},           // image_name shared by two elements
		{"", -1},                    // empty
		{" 1", -1},                  // not a number, not a name
		{"Ubuntu", -1},              // names are case-sensitive
		{"Debian GNU/Linux 12", -1}, // boot_name is a title, not a name
		{"+1", -1},                  // grub ids are written without a sign,
		{"01", -1},                  // without leading zeros,
		{"-0", -1},                  // and never as -0
		{"-1", -1},
	}
	for _, tt := range tests {
		e, err := b.Find(tt.in)
		switch tt.wantID {
		case -1:
			if !errors.Is(err, ErrUnknownEntry) {
				t.Error(fmt.Sprintf("Find(%q) =", tt.in), e, err, "; want ErrUnknownEntry")
				continue
			}
			for _, s := range []string{"0 (ubuntu, ubuntu-22.04)", "1 (utility, debian-12)", "2 (7, debian-12)"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Find(%q) error %q does not list %q", tt.in, err, s)
				}
			}
		case -2:
			if err == nil || errors.Is(err, ErrUnknownEntry) || !strings.Contains(err.Error(), "1, 2") {
				t.Error(fmt.Sprintf("Find(%q) =", tt.in), e, err, "; want an ambiguity error naming ids 1, 2")
			}
		default:
			if err != nil || e.GrubID != tt.wantID {
				t.Error(fmt.Sprintf("Find(%q) =", tt.in), e, err, fmt.Sprintf("; want grub_id %d", tt.wantID))
			} else if e != &b.Elements[tt.wantID] {
				t.Errorf("Find(%q) returned a copy, not the element", tt.in)
			}
		}
	}
	if _, err := (&BootInfo{}).Find("0"); err == nil || !strings.Contains(err.Error(), "no elements") {
		t.Error("empty boot info:", err)
	}
}
