//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/provisioner/provisioner/internal/fleetlock/etcdstore"
	"github.com/provisioner/provisioner/internal/fleetlock/etcdtest"
	"github.com/provisioner/provisioner/internal/vmrun"
)

// nodeUUID is the scenario's SMBIOS system UUID (QEMU's -uuid): both OSes of the node
// derive their FleetLock id from it.
const nodeUUID = "5f2c6a4e-0d1b-4c3a-9e8f-7a6b5c4d3e2f"

// flCall is one FleetLock request the server answered.
type flCall struct {
	endpoint, id string
	status       int
	at           time.Time
}

// flServer is the provisioner's FleetLock server on a real etcd, on a loopback port the
// guest reaches at 10.0.2.2, recording every protocol request it answers.
type flServer struct {
	store *etcdstore.Store
	port  int
	mu    sync.Mutex
	calls []flCall
}

// startFleetLock starts etcd and the server with groups; both stop with the test.
func startFleetLock(t *testing.T, groups map[string]uint64) *flServer {
	t.Helper()
	cli := etcdtest.Start(t, 1).Client(t)
	s := &flServer{store: etcdstore.New(cli, etcdstore.Options{Groups: groups})}
	if err := s.store.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := fleetlock.NewServer(s.store, fleetlock.ServerOptions{}).Handler()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: s.record(h), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// record notes each pre-reboot and steady-state request's id and answer.
func (s *flServer) record(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req fleetlock.Request
		json.Unmarshal(body, &req)
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rw, r)
		s.mu.Lock()
		s.calls = append(s.calls, flCall{strings.TrimPrefix(r.URL.Path, "/v1/"), req.ClientParams.ID, rw.status, time.Now()})
		s.mu.Unlock()
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

// callsOf returns the requests id made to endpoint.
func (s *flServer) callsOf(id, endpoint string) []flCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	var l []flCall
	for _, c := range s.calls {
		if c.id == id && c.endpoint == endpoint {
			l = append(l, c)
		}
	}
	return l
}

// holders returns the ids holding a slot of group, as stored in etcd.
func (s *flServer) holders(t *testing.T, group string) []string {
	t.Helper()
	st, err := s.store.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range st {
		if g.Name == group {
			var ids []string
			for _, h := range g.Holders {
				ids = append(ids, h.ID)
			}
			return ids
		}
	}
	t.Fatalf("group %s is not stored", group)
	return nil
}

// client is a FleetLock client of the server as the host reaches it.
func (s *flServer) client(id, group string) *fleetlock.Client {
	return &fleetlock.Client{BaseURL: "http://127.0.0.1:" + strconv.Itoa(s.port), ID: id, Group: group}
}

// TestScenarioFleetLockReboot: a two-image node deployed with the node tools and a
// FleetLock server (group rack1, one slot, already held by another node). Inside image A,
// `switch-default tiny-b --reboot` stages the switch and waits for the slot without
// rebooting; once the other holder releases, it takes the slot and reboots into B; B's
// `confirm --fleetlock-release` (what the node tools' unit runs at boot) releases it. The
// id is the same in both OSes (derived from the SMBIOS system UUID, not the OSes' own
// machine ids).
func TestScenarioFleetLockReboot(t *testing.T) {
	needSuite(t)
	fl := startFleetLock(t, map[string]uint64{"rack1": 1})
	ctx := context.Background()
	if err := fl.client("other-node", "rack1").Lock(ctx, 0); err != nil {
		t.Fatal(err)
	}
	nodeID, err := fleetlock.AppSpecificID(nodeUUID, fleetlock.AppID)
	if err != nil {
		t.Fatal(err)
	}
	c := newConductor(t)
	disk := sparse(t, 2<<30)
	tools := fmt.Sprintf(`"target": "/", "node_tools": {"fleetlock": {"url": "http://10.0.2.2:%d/", "group": "rack1"}},`, fl.port)
	deploy(t, c, strings.ReplaceAll(oneDiskSpec(c, "bios", "clean", false), `"target": "/",`, tools), disk)
	d := []string{disk}

	// The other node releases its slot only once the node has been refused three times, and
	// only if the node's VM is still up: a node that rebooted without a slot ends its VM.
	vmDone := make(chan struct{})
	var released time.Time
	releaseErr := make(chan error, 1)
	go func() { releaseErr <- releaseWhenWaiting(ctx, fl, nodeID, vmDone, &released) }()
	log := bootVM(t, vmrun.Options{Net: true, UUID: nodeUUID}, d, nil,
		"cat /etc/provisioner/fleetlock.toml\nprovisioner switch-default tiny-b --reboot --lock-timeout 5m")
	close(vmDone)
	if err := <-releaseErr; err != nil {
		t.Fatal(err)
	}
	if got := marker(log); got != "BOOTED-IMAGE-A" {
		t.Fatalf("booted %q, want BOOTED-IMAGE-A", got)
	}
	for _, want := range []string{`group = "rack1"`, "default is now 1 (tiny-b)", `taking a reboot slot in group "rack1"`, "as " + nodeID,
		"could not take the reboot slot yet", "reboot slot taken", "rebooting"} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("the node's console lacks %q", want)
		}
	}
	granted := fl.callsOf(nodeID, "pre-reboot")
	if n := len(granted); n < 3 || granted[n-1].status != http.StatusOK || !granted[n-1].at.After(released) {
		t.Fatalf("the node's pre-reboot requests: %+v; want refusals, then a grant after the release at %v", granted, released)
	}
	t.Logf("node %s: %d refused pre-reboot requests, granted %v after the other node released", nodeID, len(granted)-1, granted[len(granted)-1].at.Sub(released).Round(100*time.Millisecond))
	if h := fl.holders(t, "rack1"); len(h) != 1 || h[0] != nodeID {
		t.Fatalf("holders of rack1 after the reboot: %v, want only the node", h)
	}

	log = bootVM(t, vmrun.Options{Net: true, UUID: nodeUUID}, d, nil, "provisioner confirm --fleetlock-release")
	expectBoot(t, log, "BOOTED-IMAGE-B")
	if out := cmdOutput(log); !strings.Contains(out, `released the reboot slot in group "rack1"`) || !strings.Contains(out, nodeID) {
		t.Errorf("confirm --fleetlock-release in image B said:\n%s", out)
	}
	if h := fl.holders(t, "rack1"); len(h) != 0 {
		t.Errorf("holders of rack1 after confirm: %v, want none", h)
	}
	if st := fl.callsOf(nodeID, "steady-state"); len(st) != 1 || st[0].status != http.StatusOK {
		t.Errorf("the node's steady-state requests: %+v", st)
	}
}

// releaseWhenWaiting waits until the server has refused nodeID three times, checks that the
// node's VM still runs, then releases the other node's slot and notes when.
func releaseWhenWaiting(ctx context.Context, fl *flServer, nodeID string, vmDone <-chan struct{}, released *time.Time) error {
	deadline := time.After(4 * time.Minute)
	for {
		refused := 0
		for _, c := range fl.callsOf(nodeID, "pre-reboot") {
			if c.status != http.StatusOK {
				refused++
			}
		}
		if refused >= 3 {
			break
		}
		select {
		case <-vmDone:
			return fmt.Errorf("the node's VM ended after %d refused pre-reboot requests, before the slot was free", refused)
		case <-deadline:
			return fmt.Errorf("the node made %d refused pre-reboot requests in 4 minutes", refused)
		case <-time.After(100 * time.Millisecond):
		}
	}
	select {
	case <-vmDone:
		return fmt.Errorf("the node's VM ended while the group was full")
	default:
	}
	*released = time.Now()
	return fl.client("other-node", "rack1").Unlock(ctx, 0)
}
