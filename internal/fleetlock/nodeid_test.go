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

// TestNodeID: the id read from a machine-id file is stable, a v4 UUID in 32 hex digits,
// and shares nothing visible with the machine id; where systemd-id128 and a machine id
// exist, it is what systemd derives for our app id.
func TestNodeID(t *testing.T) {
	f := filepath.Join(t.TempDir(), "machine-id")
	const machine = "0123456789abcdef0123456789abcdef"
	os.WriteFile(f, []byte(machine+"\n"), 0o444)
	a, err := NodeID(f)
	b, err2 := NodeID(f)
	if err != nil || err2 != nil || a != b {
		t.Fatalf("NodeID: %s %v, %s %v", a, err, b, err2)
	}
	if len(a) != 32 || a[12] != '4' || !strings.ContainsAny(a[16:17], "89ab") || strings.Contains(a, machine[:8]) || a == machine {
		t.Errorf("node id %s", a)
	}
	os.WriteFile(f, []byte("fedcba9876543210fedcba9876543210\n"), 0o444)
	if c, _ := NodeID(f); c == a || c == "" {
		t.Errorf("another machine id gives %s", c)
	}
	if _, err := NodeID(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("no machine-id file: no error")
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
	got, err := NodeID(MachineIDFile)
	if err != nil || got != strings.TrimSpace(string(want)) {
		t.Errorf("NodeID(%s) = %s, %v; systemd-id128 says %s", MachineIDFile, got, err, want)
	}
}
