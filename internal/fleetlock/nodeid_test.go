package fleetlock

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAppSpecificID checks the derivation against ids systemd-id128 printed for a
// machine id and two app ids (`systemd-id128 machine-id -a APP` on a machine with that
// machine id): ours, and Fedora CoreOS's update agent's.
func TestAppSpecificID(t *testing.T) {
	const machine = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ app, want string }{
		{AppID, "f388cf4436484c4fa3cefeffd873f14d"},
		{"de35106b6ec24688b63afddaa156679b", "583627a932274834a8ebd99f4ed41c0d"},
	} {
		for _, m := range []string{machine, machine + "\n", "01234567-89ab-cdef-0123-456789abcdef"} {
			got, err := AppSpecificID(m, tc.app)
			if err != nil || got != tc.want {
				t.Errorf("AppSpecificID(%q, %s) = %s, %v; want %s", m, tc.app, got, err, tc.want)
			}
		}
	}
	for _, bad := range []string{"", "01234567", "zz23456789abcdef0123456789abcdef", machine + "00"} {
		if _, err := AppSpecificID(bad, AppID); err == nil || !strings.Contains(err.Error(), "machine id") {
			t.Errorf("machine id %q: err = %v", bad, err)
		}
	}
}

// TestNodeID: without an SMBIOS system UUID the id read from a machine-id file is
// stable, a v4 UUID in 32 hex digits, and shares nothing visible with the machine id;
// where systemd-id128 and a machine id exist, it is what systemd derives for our app id.
func TestNodeID(t *testing.T) {
	dir := t.TempDir()
	src := IDSources{ProductUUID: filepath.Join(dir, "product_uuid"), MachineID: filepath.Join(dir, "machine-id")}
	const machine = "0123456789abcdef0123456789abcdef"
	os.WriteFile(src.MachineID, []byte(machine+"\n"), 0o444)
	a, err := NodeID(src)
	b, err2 := NodeID(src)
	if err != nil || err2 != nil || a != b {
		t.Fatalf("NodeID: %s %v, %s %v", a, err, b, err2)
	}
	if len(a) != 32 || a[12] != '4' || !strings.ContainsAny(a[16:17], "89ab") || strings.Contains(a, machine[:8]) || a == machine {
		t.Errorf("node id %s", a)
	}
	os.WriteFile(src.MachineID, []byte("fedcba9876543210fedcba9876543210\n"), 0o444)
	if c, _ := NodeID(src); c == a || c == "" {
		t.Errorf("another machine id gives %s", c)
	}
	if _, err := NodeID(IDSources{ProductUUID: src.ProductUUID, MachineID: filepath.Join(dir, "none")}); err == nil || !strings.Contains(err.Error(), "no SMBIOS system UUID") {
		t.Errorf("no system UUID, no machine-id file: err = %v", err)
	}
	tool, err := exec.LookPath("systemd-id128")
	if err != nil {
		t.Log("no systemd-id128: skipping the comparison with systemd")
		return
	}
	want, err := exec.Command(tool, "machine-id", "--app-specific="+AppID).Output()
	if err != nil {
		t.Logf("systemd-id128 machine-id: %v: skipping the comparison with systemd", err)
		return
	}
	got, err := NodeID(IDSources{ProductUUID: src.ProductUUID, MachineID: MachineIDFile})
	if err != nil || got != strings.TrimSpace(string(want)) {
		t.Errorf("NodeID(%s) = %s, %v; systemd-id128 says %s", MachineIDFile, got, err, want)
	}
}

// TestNodeIDSystemUUID: a set SMBIOS system UUID wins over the machine id, so that every
// OS of a node (each with its own machine id) has the same id; a UUID the firmware left
// unset (all zeros, all ones) or garbage falls back to the machine id; a file that
// exists but cannot be read is an error, not a silent fallback to another id.
func TestNodeIDSystemUUID(t *testing.T) {
	dir := t.TempDir()
	src := IDSources{ProductUUID: filepath.Join(dir, "product_uuid"), MachineID: filepath.Join(dir, "machine-id")}
	os.WriteFile(src.MachineID, []byte("0123456789abcdef0123456789abcdef\n"), 0o444)
	fromMachine, _ := NodeID(src)
	// The UUID of QEMU's -uuid 5f2c6a4e-0d1b-4c3a-9e8f-7a6b5c4d3e2f, as Linux prints it.
	os.WriteFile(src.ProductUUID, []byte("5f2c6a4e-0d1b-4c3a-9e8f-7a6b5c4d3e2f\n"), 0o400)
	a, err := NodeID(src)
	want, _ := AppSpecificID("5f2c6a4e0d1b4c3a9e8f7a6b5c4d3e2f", AppID)
	if err != nil || a != want || a == fromMachine {
		t.Fatalf("with a system UUID: %s, %v; want %s (machine id gives %s)", a, err, want, fromMachine)
	}
	os.WriteFile(src.MachineID, []byte("fedcba9876543210fedcba9876543210\n"), 0o444)
	if b, _ := NodeID(src); b != a {
		t.Errorf("another OS (machine id) on the same machine: %s, want %s", b, a)
	}
	for _, unset := range []string{"00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "Not Settable"} {
		os.WriteFile(src.ProductUUID, []byte(unset+"\n"), 0o400)
		if got, err := NodeID(src); err != nil || got == a || got == "" {
			t.Errorf("system UUID %q: %s, %v; want the machine id's", unset, got, err)
		}
	}
	if os.Geteuid() == 0 {
		return // root reads a 0000 file
	}
	os.WriteFile(src.ProductUUID, []byte("5f2c6a4e-0d1b-4c3a-9e8f-7a6b5c4d3e2f\n"), 0o000)
	if _, err := NodeID(src); err == nil || !strings.Contains(err.Error(), "run as root") {
		t.Errorf("unreadable system UUID: err = %v", err)
	}
}
