//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/vmrun"
)

// TestRamdiskAgentAPI drives the ramdisk the way an Ironic-style conductor does: the
// ramdisk boots with provisioner.agent and waits; the test reaches the agent API through
// a QEMU port forward, is refused without the token, gets 400 with pointers for a bad
// spec, deploys a good one (409 for a second one meanwhile), follows /v1/status to
// succeeded, reads /v1/boot-info and /v1/plan, and powers the VM off through /v1/power.
// Heartbeats reach the callback meanwhile.
func TestRamdiskAgentAPI(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	port := freePort(t)
	disk := sparse(t, 2<<30)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vmDone := make(chan []byte, 1)
	go func() {
		res, err := vmrun.Run(ctx, vmrun.Options{
			Kernel: ramdisk.Kernel, Initrd: ramdisk.Initramfs, Disks: []string{disk}, Dir: t.TempDir(), Timeout: 10 * time.Minute,
			Forward: []string{fmt.Sprintf("tcp:127.0.0.1:%d-:9999", port)},
			Append:  ramdiskArgs(c, "provisioner.agent=:9999", "provisioner.heartbeat=2s", "provisioner.prober=builtin"),
		})
		if err != nil {
			t.Errorf("VM: %v", err)
		}
		vmDone <- res.Serial
	}()
	var serial []byte
	defer func() {
		if t.Failed() {
			t.Logf("events:\n%s", c.EventLog())
			if serial != nil {
				t.Logf("serial log:\n%s", serial)
			}
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	call := func(method, path, token, body string) (int, []byte) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// Wait for the agent (the ramdisk boots, loads modules, runs DHCP).
	deadline := time.Now().Add(5 * time.Minute)
	for {
		code, _ := call("GET", "/v1/status", c.Token, "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			serial = <-vmDone
			t.Fatal("the agent API never answered")
		}
		time.Sleep(time.Second)
	}
	if code, _ := call("GET", "/v1/status", "wrong", ""); code != http.StatusUnauthorized {
		t.Errorf("bad token: %d", code)
	}
	if code, body := call("POST", "/v1/deploy", c.Token, `{"images": [{"name": "a", "target": "/"}], "partitions": []}`); code != http.StatusBadRequest || !strings.Contains(string(body), `"/images/0"`) {
		t.Errorf("bad spec: %d %s", code, body)
	}
	spec := twoImageSpec(c, "bios")
	if code, body := call("POST", "/v1/deploy", c.Token, spec); code != http.StatusAccepted {
		t.Fatalf("deploy: %d %s", code, body)
	}
	if code, _ := call("POST", "/v1/deploy", c.Token, spec); code != http.StatusConflict {
		t.Errorf("second deploy while one runs: %d, want 409", code)
	}
	var st struct {
		State      string `json:"state"`
		Error      string `json:"error"`
		FailedStep string `json:"failed_step"`
	}
	for time.Now().Before(deadline.Add(5 * time.Minute)) {
		_, body := call("GET", "/v1/status", c.Token, "")
		json.Unmarshal(body, &st)
		if st.State == "succeeded" || st.State == "failed" {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if st.State != "succeeded" {
		t.Fatalf("status %+v", st)
	}
	code, body := call("GET", "/v1/boot-info", c.Token, "")
	if code != http.StatusOK || !strings.Contains(string(body), `"os_id": "tiny-b"`) && !strings.Contains(string(body), `"os_id":"tiny-b"`) {
		t.Errorf("boot-info: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/plan", c.Token, ""); code != http.StatusOK || !strings.Contains(string(body), "tiny-a-root") {
		t.Errorf("plan: %d %.200s", code, body)
	}
	if code, body := call("POST", "/v1/power", c.Token, `{"action": "poweroff"}`); code != http.StatusAccepted {
		t.Errorf("power: %d %s", code, body)
	}
	select {
	case serial = <-vmDone:
	case <-time.After(3 * time.Minute):
		cancel()
		serial = <-vmDone
		t.Error("the VM did not power off")
	}
	beats := 0
	for _, e := range c.Events() {
		if e.Type == "heartbeat" && strings.HasSuffix(e.AgentURL, ":9999") {
			beats++
		}
	}
	if beats == 0 {
		t.Error("no heartbeat with the agent URL reached the callback")
	}
	if last, _ := c.Last(); last.Type != "succeeded" && last.Type != "heartbeat" {
		t.Errorf("last event %+v", last)
	}
	// The deployed disk boots the default image.
	if got := marker(runVM(t, vmrun.Options{Disks: []string{disk}, Timeout: 5 * time.Minute})); got != "BOOTED-IMAGE-A" {
		t.Errorf("booted %q", got)
	}
}

// freePort returns a TCP port free on the host's loopback now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
