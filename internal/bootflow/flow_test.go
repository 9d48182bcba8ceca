package bootflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/agent"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/schema"
)

const goodSpec = `{"images": [{"name": "a", "url": "http://x/a.tar", "target": "/", "boot": true}],
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "10 GiB",
  "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`

// flowCase runs a Flow with fakes: a spec server, a callback collecting events, a deploy
// that succeeds or fails, and power and shell actions that record what they were asked.
type flowCase struct {
	mu       sync.Mutex
	events   []agent.Event
	power    []string
	shells   int
	console  bytes.Buffer
	deployed *schema.Spec
	// reloadErr is what the node's reload returns; reloaded is the request it got.
	reloadErr error
	reloaded  *agent.ReloadRequest
	// kept is the CheckKept answer.
	keptStep string
	keptErr  error
}

func (c *flowCase) run(t *testing.T, cfg Config, spec string, deployErr error) error {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/spec.json":
			io.WriteString(w, spec)
		case "/events":
			var e agent.Event
			json.NewDecoder(r.Body).Decode(&e)
			if r.Header.Get("Authorization") != "Bearer tok" {
				t.Errorf("callback without the token: %q", r.Header.Get("Authorization"))
			}
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	if cfg.SpecURL == "" && cfg.Reload == nil && !cfg.Kept {
		cfg.SpecURL = srv.URL + "/spec.json"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bi := &bootloader.BootInfo{Elements: []bootloader.Element{{OSID: "a", Kernel: "/boot/vmlinuz"}}}
	ag := &agent.Agent{
		Node:     "n1",
		Callback: &agent.Callback{URL: srv.URL + "/events", Token: "tok", Backoff: func(int) time.Duration { return time.Millisecond }},
		Deploy: func(ctx context.Context, spec *schema.Spec, events func(engine.Event)) (*engine.DeployResult, error) {
			c.mu.Lock()
			c.deployed = spec
			c.mu.Unlock()
			events(engine.Event{Phase: engine.PhasePlan})
			events(engine.Event{Phase: engine.PhasePartition})
			if deployErr != nil {
				return nil, deployErr
			}
			events(engine.Event{Phase: engine.PhaseImages})
			events(engine.Event{Phase: engine.PhaseBootloader})
			return &engine.DeployResult{BootInfo: bi}, nil
		},
	}
	if cfg.Reload != nil {
		ag.NodeAPI = &agent.Node{Reload: func(ctx context.Context, req agent.ReloadRequest, events func(engine.Event)) (*bootloader.BootInfo, error) {
			c.mu.Lock()
			c.reloaded = &req
			c.mu.Unlock()
			events(engine.Event{Phase: engine.PhasePlan})
			events(engine.Event{Phase: engine.PhaseImages})
			if c.reloadErr != nil {
				return nil, c.reloadErr
			}
			return bi, nil
		}}
	}
	f := &Flow{
		CheckKept: func(context.Context) (string, error) { return c.keptStep, c.keptErr },
		Config:    cfg, Agent: ag, Fetcher: &deploy.Fetcher{}, Log: slog.New(slog.DiscardHandler), Console: &c.console,
		Network: func(context.Context) error { return nil },
		Serve:   func(ctx context.Context) error { <-ctx.Done(); return nil },
		Power: func(_ context.Context, action string, got *bootloader.BootInfo) error {
			c.mu.Lock()
			c.power = append(c.power, action)
			c.mu.Unlock()
			if got != bi {
				t.Errorf("power got boot info %v", got)
			}
			cancel() // a real reboot never returns
			return nil
		},
		Shell: func(context.Context) error {
			c.mu.Lock()
			c.shells++
			c.mu.Unlock()
			cancel()
			return nil
		},
	}
	return f.Run(ctx)
}

func (c *flowCase) types() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.events {
		s := e.Type
		if e.Phase != "" {
			s += ":" + e.Phase
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestFlowDeploysThenPowers(t *testing.T) {
	var c flowCase
	c.run(t, Config{After: AfterKexec}, goodSpec, nil)
	if len(c.power) != 1 || c.power[0] != AfterKexec || c.shells != 0 || c.deployed == nil {
		t.Errorf("power %v, shells %d, deployed %v\n%s", c.power, c.shells, c.deployed != nil, c.console.String())
	}
	if got := c.types(); !strings.HasPrefix(got, "started") || !strings.HasSuffix(got, "succeeded") || !strings.Contains(got, "phase:bootloader") {
		t.Errorf("events: %s", got)
	}
	if last := c.events[len(c.events)-1]; last.BootInfo == nil || last.BootInfo.Elements[0].OSID != "a" {
		t.Errorf("final event without boot info: %+v", last)
	}
	if !strings.HasPrefix(c.console.String(), Banner+"\n") {
		t.Errorf("console:\n%s", c.console.String())
	}
}

func TestFlowFailuresStayUp(t *testing.T) {
	t.Run("deploy fails", func(t *testing.T) {
		var c flowCase
		err := c.run(t, Config{After: AfterReboot}, goodSpec, errors.New("disk vda: busy"))
		if err == nil || len(c.power) != 0 || c.shells != 1 {
			t.Fatalf("err %v, power %v, shells %d", err, c.power, c.shells)
		}
		last := c.events[len(c.events)-1]
		if last.Type != "failed" || last.Step != engine.PhasePartition || !strings.Contains(last.Error, "busy") {
			t.Errorf("final event: %+v (all: %s)", last, c.types())
		}
		if !strings.Contains(c.console.String(), "FAILED: deploy failed: disk vda: busy") {
			t.Errorf("console:\n%s", c.console.String())
		}
	})
	t.Run("invalid spec", func(t *testing.T) {
		var c flowCase
		err := c.run(t, Config{After: AfterReboot}, strings.Replace(goodSpec, `"boot": true`, `"boot": true, "bogus": 1`, 1), nil)
		if err == nil || c.deployed != nil || c.shells != 1 || c.types() != "failed" {
			t.Fatalf("err %v, deployed %v, shells %d, events %s", err, c.deployed != nil, c.shells, c.types())
		}
		if e := c.events[0]; e.Step != "spec" || !strings.Contains(e.Error, "/images/0/bogus") {
			t.Errorf("event: %+v", e)
		}
	})
	t.Run("nothing to do", func(t *testing.T) {
		var c flowCase
		spec := filepath.Join(t.TempDir(), "missing.json")
		os.Remove(spec)
		err := c.run(t, Config{SpecURL: spec, After: AfterReboot}, "", nil)
		if err == nil || !strings.Contains(err.Error(), "fetching the spec") || c.shells != 1 {
			t.Errorf("err %v, shells %d", err, c.shells)
		}
	})
}

// TestFlowReloads: the reload mode reloads the image the kernel command line names, then
// does provisioner.after; a failed reload is reported and the ramdisk stays up.
func TestFlowReloads(t *testing.T) {
	cfg, err := ParseCmdline("console=ttyS0 provisioner.reload=b provisioner.url=http://x/b2.tar.zst provisioner.tries=2 provisioner.kept=1")
	if err != nil {
		t.Fatal(err)
	}
	var c flowCase
	c.run(t, cfg, "", nil)
	if c.reloaded == nil || c.reloaded.Image != "b" || c.reloaded.URL != "http://x/b2.tar.zst" || c.reloaded.Tries != 2 || c.deployed != nil {
		t.Fatalf("reloaded %+v, deployed %v", c.reloaded, c.deployed != nil)
	}
	if len(c.power) != 1 || c.power[0] != AfterReboot || c.shells != 0 {
		t.Errorf("power %v, shells %d", c.power, c.shells)
	}
	if got := c.types(); !strings.HasPrefix(got, "started") || !strings.HasSuffix(got, "succeeded") {
		t.Errorf("events: %s", got)
	}

	c = flowCase{reloadErr: errors.New("image b: fetching http://x/b2.tar.zst: 404 Not Found")}
	if err := c.run(t, cfg, "", nil); err == nil || len(c.power) != 0 || c.shells != 1 {
		t.Fatalf("err %v, power %v, shells %d", err, c.power, c.shells)
	}
	if last := c.events[len(c.events)-1]; last.Type != "failed" || !strings.Contains(last.Error, "404") {
		t.Errorf("final event %+v", last)
	}
	if !strings.Contains(c.console.String(), "FAILED: reload failed") {
		t.Errorf("console:\n%s", c.console.String())
	}
}

// TestFlowKeptReportsTrial: the ramdisk booted from the node's copy with nothing to do
// reports what CheckKept found (a failed trial) and waits, without powering anything.
func TestFlowKeptReportsTrial(t *testing.T) {
	c := flowCase{keptStep: "trial", keptErr: errors.New("trial of b failed after 2 boots; the deploy ramdisk boots now")}
	if err := c.run(t, Config{Kept: true, After: AfterReboot}, "", nil); err == nil || len(c.power) != 0 || c.shells != 1 {
		t.Fatalf("err %v, power %v, shells %d", err, c.power, c.shells)
	}
	if c.types() != "failed" || c.events[0].Step != "trial" || !strings.Contains(c.events[0].Error, "trial of b failed") {
		t.Errorf("events %+v", c.events)
	}
}

func TestAgentURL(t *testing.T) {
	if got := AgentURL(Config{AgentAddr: "10.0.0.5:9999", TLSCert: "c"}); got != "https://10.0.0.5:9999" {
		t.Errorf("agentURL = %s", got)
	}
	if got := AgentURL(Config{AgentAddr: ":9999"}); !strings.HasPrefix(got, "http://") || strings.HasPrefix(got, "http://:") {
		t.Logf("AgentURL(:9999) = %s (no non-loopback address here?)", got)
	}
}
