package fleetlock

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadNodeConfig(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadNodeConfig(filepath.Join(dir, "none.toml"))
	if err != nil || c != (NodeConfig{}) {
		t.Fatalf("missing file: %+v, %v", c, err)
	}
	if cl, err := c.Client(IDSources{ProductUUID: "/nonexistent", MachineID: "/nonexistent"}); cl != nil || err != nil {
		t.Errorf("no base_url: client %+v, %v", cl, err)
	}
	if c.Timeout() != DefaultLockTimeout {
		t.Errorf("default timeout %v", c.Timeout())
	}
	f := filepath.Join(dir, "fleetlock.toml")
	os.WriteFile(f, []byte(`# the reboot slots
base_url = "http://fleetlock.example:8080/"
group = "workers"
lock_timeout = "90s"
`), 0o644)
	c, err = LoadNodeConfig(f)
	want := NodeConfig{BaseURL: "http://fleetlock.example:8080/", Group: "workers", LockTimeout: 90 * time.Second}
	if err != nil || c != want || c.Timeout() != 90*time.Second {
		t.Fatalf("%+v, %v", c, err)
	}
	mid := filepath.Join(dir, "machine-id")
	os.WriteFile(mid, []byte("0123456789abcdef0123456789abcdef\n"), 0o444)
	cl, err := c.Client(IDSources{ProductUUID: filepath.Join(dir, "none"), MachineID: mid})
	if err != nil || cl.ID != "f388cf4436484c4fa3cefeffd873f14d" || cl.Group != "workers" || cl.BaseURL != want.BaseURL {
		t.Errorf("client %+v, %v", cl, err)
	}
	c.ID = "rack1-node7"
	if cl, err := c.Client(IDSources{ProductUUID: "/nonexistent", MachineID: "/nonexistent"}); err != nil || cl.ID != "rack1-node7" {
		t.Errorf("id override: %+v, %v", cl, err)
	}
	for body, wantErr := range map[string]string{
		`base_url = "ftp://x/"`:          `base_url: "ftp://x/": want an http:// or https:// URL`,
		`base_url = "http://"`:           "with a host",
		`group = "a/b"`:                  `group "a/b"`,
		`lock_timeout = "-1s"`:           "lock_timeout -1s",
		`lock_timeout = "soon"`:          "soon",
		"url = \"http://x/\"\nslots = 2": "unknown key slots, url",
		`base_url = `:                    "fleetlock.toml",
	} {
		os.WriteFile(f, []byte(body), 0o644)
		if _, err := LoadNodeConfig(f); err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), f) {
			t.Errorf("%q: err = %v, want %q and the file", body, err, wantErr)
		}
	}
}
