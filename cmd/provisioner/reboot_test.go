package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/provisioner/provisioner/schema"
)

// No test reboots the machine it runs on: a command that gets as far as rebooting
// without a test's fake panics.
func init() {
	nodeReboot = func(context.Context, bool) error { panic("a test reached the real reboot") }
}

// fakeReboots replaces the reboot for one test and counts the calls.
func fakeReboots(t *testing.T) *int {
	var n int
	old := nodeReboot
	nodeReboot = func(ctx context.Context, kexec bool) error {
		n++
		return nil
	}
	t.Cleanup(func() { nodeReboot = old })
	return &n
}

// testMachineID points the node id at a machine-id file of the test and returns the
// node id derived from it.
func testMachineID(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "machine-id")
	os.WriteFile(f, []byte("0123456789abcdef0123456789abcdef\n"), 0o444)
	old := nodeIDSources
	nodeIDSources = fleetlock.IDSources{ProductUUID: filepath.Join(t.TempDir(), "product_uuid"), MachineID: f}
	t.Cleanup(func() { nodeIDSources = old })
	return "f388cf4436484c4fa3cefeffd873f14d" // systemd-id128 machine-id -a <our app id> for that machine id
}

// slotServer is a FleetLock server with one slot per group, in memory.
type slotServer struct {
	mu      sync.Mutex
	holders map[string]string // group -> id
	*httptest.Server
}

func newSlotServer(t *testing.T) *slotServer {
	s := &slotServer{holders: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req fleetlock.Request
		if r.Method != http.MethodPost || r.Header.Get(fleetlock.HeaderName) != "true" || json.NewDecoder(r.Body).Decode(&req) != nil {
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(fleetlock.Error{Kind: fleetlock.KindInvalidClientIdentity, Value: "bad request"})
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		g, id := req.ClientParams.Group, req.ClientParams.ID
		switch {
		case r.URL.Path == fleetlock.SteadyStatePath:
			if s.holders[g] == id {
				delete(s.holders, g)
			}
		case r.URL.Path != fleetlock.PreRebootPath:
			w.WriteHeader(404)
			return
		case s.holders[g] != "" && s.holders[g] != id:
			w.WriteHeader(500)
			json.NewEncoder(w).Encode(fleetlock.Error{Kind: fleetlock.KindFailedLock, Value: fmt.Sprintf("%s holds the slot of %s", s.holders[g], g)})
			return
		default:
			s.holders[g] = id
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *slotServer) holder(g string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holders[g]
}

func (s *slotServer) set(g, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == "" {
		delete(s.holders, g)
	} else {
		s.holders[g] = id
	}
}

// noConfig is a configuration file path that does not exist.
func noConfig(t *testing.T) string { return filepath.Join(t.TempDir(), "none.toml") }

func TestRebootWithoutServer(t *testing.T) {
	reboots := fakeReboots(t)
	r := runCLI(t, "", "reboot", "--fleetlock-config", noConfig(t))
	if r.code != 0 || *reboots != 1 || r.stdout != "rebooting\n" {
		t.Errorf("exit %d, %d reboots\n%s%s", r.code, *reboots, r.stdout, r.stderr)
	}
}

// TestRebootTakesSlot: with a server, reboot takes the slot as the node id derived from
// the machine id, then reboots; with the group full it waits, and reboots once the
// holder has released it.
func TestRebootTakesSlot(t *testing.T) {
	reboots := fakeReboots(t)
	id := testMachineID(t)
	srv := newSlotServer(t)
	r := runCLI(t, "", "reboot", "--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL+"/", "--group", "workers")
	if r.code != 0 || *reboots != 1 || srv.holder("workers") != id || !strings.Contains(r.stdout, `taking a reboot slot in group "workers" at `+srv.URL+"/ as "+id) {
		t.Fatalf("exit %d, %d reboots, holder %q\n%s%s", r.code, *reboots, srv.holder("workers"), r.stdout, r.stderr)
	}
	srv.set("workers", "other")
	go func() {
		time.Sleep(1500 * time.Millisecond)
		srv.set("workers", "")
	}()
	start := time.Now()
	r = runCLI(t, "", "reboot", "--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL, "--group", "workers", "--lock-timeout", "30s")
	if r.code != 0 || *reboots != 2 || srv.holder("workers") != id || time.Since(start) < 1500*time.Millisecond {
		t.Errorf("exit %d after %v, %d reboots, holder %q\n%s%s", r.code, time.Since(start), *reboots, srv.holder("workers"), r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "could not take the reboot slot yet, waiting") || !strings.Contains(r.stderr, "other holds the slot of workers") {
		t.Errorf("the waits are not logged:\n%s", r.stderr)
	}
}

// TestRebootLockTimeout: a group that stays full makes reboot fail with exit 3, naming
// the group and the server, without rebooting.
func TestRebootLockTimeout(t *testing.T) {
	reboots := fakeReboots(t)
	testMachineID(t)
	srv := newSlotServer(t)
	srv.set("default", "other")
	start := time.Now()
	r := runCLI(t, "", "reboot", "--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL, "--lock-timeout", "1500ms")
	d := time.Since(start)
	if r.code != engine.ExitEnvironment || *reboots != 0 || srv.holder("default") != "other" {
		t.Fatalf("exit %d, %d reboots\n%s%s", r.code, *reboots, r.stdout, r.stderr)
	}
	if d < 1500*time.Millisecond || d > 10*time.Second {
		t.Errorf("gave up after %v, want about 1.5s", d)
	}
	if !strings.Contains(r.stderr, `not rebooting, nothing changed: fleetlock: no reboot slot in group "default" at `+srv.URL) || !strings.Contains(r.stderr, "failed_lock") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

// TestRebootConfigFile: the node's configuration file gives the server, group, id and
// timeout; flags override it; a bad file or flag fails without rebooting.
func TestRebootConfigFile(t *testing.T) {
	reboots := fakeReboots(t)
	srv := newSlotServer(t)
	cfg := filepath.Join(t.TempDir(), "fleetlock.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("base_url = %q\ngroup = \"rack-1\"\nid = \"node-7\"\nlock_timeout = \"1s\"\n", srv.URL)), 0o644)
	r := runCLI(t, "", "reboot", "--fleetlock-config", cfg)
	if r.code != 0 || *reboots != 1 || srv.holder("rack-1") != "node-7" {
		t.Fatalf("exit %d, %d reboots, holder %q\n%s%s", r.code, *reboots, srv.holder("rack-1"), r.stdout, r.stderr)
	}
	r = runCLI(t, "", "reboot", "--fleetlock-config", cfg, "--id", "node-8", "--group", "rack-2")
	if r.code != 0 || *reboots != 2 || srv.holder("rack-2") != "node-8" {
		t.Errorf("flags over the file: exit %d, holder %q\n%s", r.code, srv.holder("rack-2"), r.stderr)
	}
	r = runCLI(t, "", "reboot", "--fleetlock-config", cfg, "--id", "node-9") // rack-1 is held by node-7: 1s
	if r.code != engine.ExitEnvironment || *reboots != 2 || !strings.Contains(r.stderr, `group "rack-1"`) {
		t.Errorf("timeout from the file: exit %d\n%s", r.code, r.stderr)
	}
	os.WriteFile(cfg, []byte("base_url = \"http://x\"\nslots = 2\n"), 0o644)
	for _, args := range [][]string{
		{"--fleetlock-config", cfg},
		{"--fleetlock-config", noConfig(t), "--fleetlock-url", "ftp://x/"},
		{"--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL, "--group", "a/b"},
		{"--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL, "--lock-timeout", "-1s"},
	} {
		r := runCLI(t, "", append([]string{"reboot"}, args...)...)
		if r.code == 0 || *reboots != 2 {
			t.Errorf("%q: exit %d, %d reboots\n%s", args, r.code, *reboots, r.stderr)
		}
	}
}

// TestSwitchDefaultReboot: switch-default --reboot switches, takes the slot and reboots;
// with the group full it exits 3 without rebooting, the switch written all the same.
func TestSwitchDefaultReboot(t *testing.T) {
	reboots := fakeReboots(t)
	id := testMachineID(t)
	srv := newSlotServer(t)
	dir := bootDir(t)
	srv.set("default", "other")
	r := runCLI(t, "", "switch-default", "centos", "--reboot", "--boot-dir", dir, "--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL, "--lock-timeout", "1s")
	if r.code != engine.ExitEnvironment || *reboots != 0 || !strings.Contains(r.stdout, "default is now 1 (centos) (was 0 (ubuntu))") ||
		!strings.Contains(r.stderr, "not rebooting, the switch stays written and takes effect at the next boot: fleetlock: no reboot slot in group \"default\"") {
		t.Fatalf("full group: exit %d, %d reboots\n%s%s", r.code, *reboots, r.stdout, r.stderr)
	}
	if r := runCLI(t, "", "list", "--boot-dir", dir); !strings.Contains(flat(r.stdout), "1 centos centos-image Linux (centos) default") {
		t.Errorf("the switch is not staged:\n%s", r.stdout)
	}
	srv.set("default", "")
	r = runCLI(t, "", "switch-default", "ubuntu", "--reboot", "--boot-dir", dir, "--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL)
	if r.code != 0 || *reboots != 1 || srv.holder("default") != id || !strings.HasSuffix(r.stdout, "rebooting\n") {
		t.Errorf("free slot: exit %d, %d reboots, holder %q\n%s%s", r.code, *reboots, srv.holder("default"), r.stdout, r.stderr)
	}
	r = runCLI(t, "", "switch-default", "ubuntu", "--boot-dir", dir, "--fleetlock-url", srv.URL)
	if r.code != engine.ExitFailure || !strings.Contains(r.stderr, "go with --reboot") {
		t.Errorf("FleetLock flags without --reboot: exit %d\n%s", r.code, r.stderr)
	}
	// An unknown entry changes nothing, takes no slot and does not reboot.
	srv.set("default", "")
	r = runCLI(t, "", "switch-default", "fedora", "--reboot", "--boot-dir", dir, "--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL)
	if r.code != engine.ExitFailure || *reboots != 1 || srv.holder("default") != "" {
		t.Errorf("unknown entry: exit %d, %d reboots, holder %q", r.code, *reboots, srv.holder("default"))
	}
}

// TestConfirmReleases: confirm --fleetlock-release releases the slot when no trial is
// pending, keeps it while a trial of another entry is pending, and does nothing more
// without a server; FleetLock flags need --fleetlock-release.
func TestConfirmReleases(t *testing.T) {
	id := testMachineID(t)
	srv := newSlotServer(t)
	dir := bootDir(t)
	cfg := filepath.Join(t.TempDir(), "fleetlock.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("base_url = %q\ngroup = \"workers\"\n", srv.URL)), 0o644)
	srv.set("workers", id)
	r := runCLI(t, "", "confirm", "--boot-dir", dir, "--fleetlock-release", "--fleetlock-config", cfg)
	if r.code != 0 || srv.holder("workers") != "" || !strings.Contains(r.stdout, `released the reboot slot in group "workers" at `+srv.URL+" of "+id) {
		t.Errorf("no trial: exit %d, holder %q\n%s%s", r.code, srv.holder("workers"), r.stdout, r.stderr)
	}
	armTrial(t, dir, false)
	srv.set("workers", id)
	r = runCLI(t, "", "confirm", "--boot-dir", dir, "--fleetlock-release", "--fleetlock-config", cfg, "--json")
	var res map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 0 || srv.holder("workers") != id || !strings.Contains(r.stderr, "stays held") {
		t.Errorf("trial pending elsewhere: exit %d, %v, holder %q\n%s%s", r.code, err, srv.holder("workers"), r.stdout, r.stderr)
	}
	armTrial(t, dir, true)
	r = runCLI(t, "", "confirm", "--boot-dir", dir, "--fleetlock-release", "--fleetlock-config", cfg)
	if r.code != 0 || srv.holder("workers") != "" {
		t.Errorf("rolled back: exit %d, holder %q\n%s%s", r.code, srv.holder("workers"), r.stdout, r.stderr)
	}
	srv.set("workers", id)
	r = runCLI(t, "", "confirm", "--boot-dir", dir, "--fleetlock-release", "--fleetlock-config", noConfig(t))
	if r.code != 0 || srv.holder("workers") != id || strings.Contains(r.stdout, "released") {
		t.Errorf("no server configured: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "confirm", "--boot-dir", dir, "--fleetlock-url", srv.URL)
	if r.code != engine.ExitFailure || !strings.Contains(r.stderr, "go with --fleetlock-release") {
		t.Errorf("flags without --fleetlock-release: exit %d\n%s", r.code, r.stderr)
	}
	// A bad configuration does not keep the trial from being confirmed: it fails after.
	os.WriteFile(cfg, []byte("base_url = 1\n"), 0o644)
	r = runCLI(t, "", "confirm", "--boot-dir", dir, "--fleetlock-release", "--fleetlock-config", cfg)
	if r.code != engine.ExitEnvironment || !strings.Contains(r.stdout, "no trial") || !strings.Contains(r.stderr, cfg) {
		t.Errorf("bad configuration: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestFleetlockLockUnlock: the commands for scripts take and release the slot, wait
// and time out as reboot does, and need a server.
func TestFleetlockLockUnlock(t *testing.T) {
	id := testMachineID(t)
	srv := newSlotServer(t)
	base := []string{"--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL, "--group", "g"}
	r := runCLI(t, "", append([]string{"fleetlock", "lock"}, base...)...)
	if r.code != 0 || srv.holder("g") != id || r.stdout != fmt.Sprintf("holding a reboot slot in group \"g\" at %s as %s\n", srv.URL, id) {
		t.Fatalf("lock: exit %d, holder %q\n%s%s", r.code, srv.holder("g"), r.stdout, r.stderr)
	}
	r = runCLI(t, "", append([]string{"fleetlock", "lock", "--id", "other", "--lock-timeout", "0"}, base...)...)
	if r.code != engine.ExitEnvironment || !strings.Contains(r.stderr, "(1 tries)") || srv.holder("g") != id {
		t.Errorf("lock of a full group: exit %d\n%s", r.code, r.stderr)
	}
	r = runCLI(t, "", append([]string{"fleetlock", "unlock"}, base...)...)
	if r.code != 0 || srv.holder("g") != "" || !strings.Contains(r.stdout, "released the reboot slot") {
		t.Errorf("unlock: exit %d, holder %q\n%s%s", r.code, srv.holder("g"), r.stdout, r.stderr)
	}
	for _, sub := range []string{"lock", "unlock"} {
		r = runCLI(t, "", "fleetlock", sub, "--fleetlock-config", noConfig(t))
		if r.code != engine.ExitFailure || !strings.Contains(r.stderr, "no FleetLock server") {
			t.Errorf("%s without a server: exit %d\n%s", sub, r.code, r.stderr)
		}
	}
}

// TestReloadRebootRefusals: reload's FleetLock flags go with --reboot or --kexec, a
// live reload takes no --reboot, and a reload that fails reboots nothing.
func TestReloadRebootRefusals(t *testing.T) {
	reboots := fakeReboots(t)
	srv := newSlotServer(t)
	testMachineID(t)
	dir := bootDir(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--fleetlock-url", srv.URL}, 1, "go with --reboot or --kexec"},
		{[]string{"--live", "--reboot"}, 1, "a live reload needs no reboot"},
		{[]string{"--reboot", "--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL}, 3, "provision-record.json"},
	} {
		r := runCLI(t, "", append([]string{"reload", "centos", "--url", "/x.tar", "--boot-dir", dir}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || *reboots != 0 || srv.holder("default") != "" {
			t.Errorf("%q: exit %d, %d reboots, holder %q\n%s", tc.args, r.code, *reboots, srv.holder("default"), r.stderr)
		}
	}
}

// TestSwitchDefaultRebootDiskImage: on a deployed disk-image file (--device), a switch
// whose slot does not come in time is written all the same and nothing reboots; once
// the slot is free, the next switch takes it and reboots (a loop-device test).
func TestSwitchDefaultRebootDiskImage(t *testing.T) {
	needLoopCLI(t)
	reboots := fakeReboots(t)
	id := testMachineID(t)
	srv := newSlotServer(t)
	dir := t.TempDir()
	img := deployedImage(t)
	cfg := filepath.Join(dir, "fleetlock.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("base_url = %q\nlock_timeout = \"1s\"\n", srv.URL)), 0o644)
	srv.set("default", "other")
	r := runCLI(t, "", "switch-default", "blue", "--reboot", "--device", img, "--fleetlock-config", cfg)
	if r.code != engine.ExitEnvironment || *reboots != 0 || r.stdout != fmt.Sprintf("default is now 1 (blue) (was 0 (red))\ntaking a reboot slot in group \"default\" at %s as %s (waiting 1s at most)\n", srv.URL, id) ||
		!strings.Contains(r.stderr, "not rebooting, the switch stays written") {
		t.Fatalf("full group: exit %d, %d reboots\n%s%s", r.code, *reboots, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "list", "--device", img)
	if !strings.Contains(flat(r.stdout), "1 blue Blue OS Test blue (blue) default") {
		t.Errorf("the switch is not written:\n%s%s", r.stdout, r.stderr)
	}
	srv.set("default", "")
	r = runCLI(t, "", "switch-default", "red", "--reboot", "--device", img, "--fleetlock-config", cfg)
	if r.code != 0 || *reboots != 1 || srv.holder("default") != id || !strings.Contains(r.stdout, "default is now 0 (red) (was 1 (blue))") {
		t.Errorf("free slot: exit %d, %d reboots, holder %q\n%s%s", r.code, *reboots, srv.holder("default"), r.stdout, r.stderr)
	}
}

// TestNodeToolsFleetLockConfig: what the node tools write from a spec's
// node_tools.fleetlock is where, and as, the commands read it.
func TestNodeToolsFleetLockConfig(t *testing.T) {
	if deploy.FleetLockConfigFile != fleetlock.NodeConfigFile {
		t.Errorf("the node tools write %s, the commands read %s", deploy.FleetLockConfigFile, fleetlock.NodeConfigFile)
	}
	b, err := deploy.FleetLockConfig(&schema.NodeFleetLock{URL: "https://fl.example:8443/", Group: "rack-1.workers"})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "fleetlock.toml")
	os.WriteFile(f, b, 0o644)
	c, err := fleetlock.LoadNodeConfig(f)
	if err != nil || c != (fleetlock.NodeConfig{BaseURL: "https://fl.example:8443/", Group: "rack-1.workers"}) {
		t.Errorf("%+v, %v\n%s", c, err, b)
	}
	if !strings.Contains(deploy.ConfirmUnit, "\nExecStart="+deploy.NodeToolsProgram+" confirm --fleetlock-release\n") {
		t.Errorf("the confirm unit does not release the slot:\n%s", deploy.ConfirmUnit)
	}
}

// TestReloadRebootDiskImage: reload --reboot on a deployed disk-image file writes the
// reload (its trial armed) and, with the group full, exits 3 without rebooting, the
// reload staying written for the next boot; with the slot free it reboots (a
// loop-device test).
func TestReloadRebootDiskImage(t *testing.T) {
	needLoopCLI(t)
	reboots := fakeReboots(t)
	id := testMachineID(t)
	srv := newSlotServer(t)
	dir := t.TempDir()
	img := deployedImage(t)
	srv.set("default", "other")
	fl := []string{"--fleetlock-config", noConfig(t), "--fleetlock-url", srv.URL, "--lock-timeout", "1s"}
	r := runCLI(t, "", append([]string{"reload", "blue", "--url", kernelTar(t, dir, "blue2"), "--device", img, "--reboot"}, fl...)...)
	if r.code != engine.ExitEnvironment || *reboots != 0 || !strings.Contains(r.stdout, "reloaded 1 (blue)") ||
		!strings.Contains(r.stderr, "not rebooting, the reload is written and boots at the next boot: fleetlock: no reboot slot") {
		t.Fatalf("full group: exit %d, %d reboots\n%s%s", r.code, *reboots, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "list", "--device", img)
	if !strings.Contains(flat(r.stdout), "1 blue Blue OS Test blue2 (blue) on trial (3 of 3 tries left)") {
		t.Errorf("the reload is not staged:\n%s%s", r.stdout, r.stderr)
	}
	srv.set("default", "")
	r = runCLI(t, "", append([]string{"reload", "red", "--url", kernelTar(t, dir, "red2"), "--device", img, "--no-trial", "--reboot"}, fl...)...)
	if r.code != 0 || *reboots != 1 || srv.holder("default") != id || !strings.HasSuffix(r.stdout, "rebooting\n") {
		t.Errorf("free slot: exit %d, %d reboots, holder %q\n%s%s", r.code, *reboots, srv.holder("default"), r.stdout, r.stderr)
	}
}
