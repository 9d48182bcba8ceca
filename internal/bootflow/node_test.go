package bootflow

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/agent"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/schema"
)

// writeBootDir writes the boot files of a deployed node with two images, the second
// one the default.
func writeBootDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bi := &bootloader.BootInfo{CurrentElement: 1}
	for i, name := range []string{"a", "b"} {
		bi.Elements = append(bi.Elements, bootloader.Element{
			GrubID: i, ImageName: name + "-image", OSID: name, BootName: "Linux (" + name + ")",
			RootUUID: "0b5e1c3a-0000-4000-8000-00000000001" + string(rune('0'+i)), MenuentryID: "provisioner-" + name,
		})
	}
	data, err := bi.Encode()
	if err != nil {
		t.Fatal(err)
	}
	env := &bootloader.Env{}
	env.Set("saved_entry", "provisioner-b")
	envData, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(bootloader.GrubEnvPath)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bootloader.BootInfoPath), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bootloader.GrubEnvPath), envData, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMachineNodeBoot(t *testing.T) {
	dir := writeBootDir(t)
	n := MachineNode(slog.New(slog.DiscardHandler), dir)
	if n.Boot == nil {
		t.Fatal("no Boot")
	}
	ans, err := n.Boot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// What the endpoint encodes is what list --json prints for the same directory.
	data, err := json.Marshal(ans)
	if err != nil {
		t.Fatal(err)
	}
	var got engine.BootDocument
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Source != dir || got.Saved != 1 || got.Default != 1 || got.Booted != nil || got.Pending != nil || len(got.Elements) != 2 || got.Elements[1].OSID != "b" {
		t.Errorf("boot: %s", data)
	}

	// A directory without boot files is the environment's fault, as for list (exit 3).
	empty := MachineNode(slog.New(slog.DiscardHandler), t.TempDir())
	if _, err := empty.Boot(context.Background()); engine.ExitCode(err) != engine.ExitEnvironment {
		t.Errorf("boot without boot files: %v (exit %d), want exit 3", err, engine.ExitCode(err))
	}
}

func TestAgentForNode(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	n := MachineNode(log, t.TempDir())
	ag, err := agentFor(AgentOptions{Log: log, Node: "n1", NodeAPI: n, Progress: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	// On a node nothing can deploy, not even through the Agent's own methods.
	if ag.NodeAPI != n || ag.Deploy != nil || ag.Plan != nil || ag.Node != "n1" {
		t.Errorf("node agent %+v", ag)
	}
	ag, err = agentFor(AgentOptions{Log: log, Progress: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	if ag.NodeAPI != nil || ag.Deploy == nil {
		t.Errorf("deploy agent %+v", ag)
	}
}

// absentDiskSpec is a valid spec whose only disk is on no machine: the node's update
// fails finding it, before anything is read or written.
const absentDiskSpec = `{"images": [{"name": "a", "url": "http://x/a.tar", "target": "/", "boot": true}],
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "provisioner-test-absent0"},
  "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`

func TestMachineNodeUpdate(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	dir := writeBootDir(t)
	n := MachineNode(log, dir)
	if n.Update == nil || n.PlanAgainst == nil {
		t.Fatal("no Update or PlanAgainst")
	}
	spec, _, err := schema.Load(strings.NewReader(absentDiskSpec))
	if err != nil {
		t.Fatal(err)
	}
	// On the node the spec's disks are found by their ids, as update finds them there:
	// a disk that is not on the machine is the environment's fault (exit 3).
	if b, err := n.PlanAgainst(t.Context(), spec, agent.UpdateOptions{}); b != nil || engine.ExitCode(err) != engine.ExitEnvironment || !strings.Contains(err.Error(), "provisioner-test-absent0") {
		t.Errorf("dry run on a machine without the disk: %v, %v (exit %d)", b, err, engine.ExitCode(err))
	}
	var events []engine.Event
	res, err := n.Update(t.Context(), spec, agent.UpdateOptions{NoTrial: true}, func(e engine.Event) { events = append(events, e) })
	if engine.ExitCode(err) != engine.ExitEnvironment || !strings.Contains(err.Error(), "provisioner-test-absent0") || (res != nil && res.Applied) {
		t.Errorf("update on a machine without the disk: %+v, %v", res, err)
	}

	// The options are update --yes's on the node: nothing asked, no --device, the
	// request's choices and the agent's events.
	called := false
	o := nodeUpdateOptions(log, engine.BootDirOptions{Dir: dir, LockWait: nodeLockWait},
		agent.UpdateOptions{Force: true, Tries: 2, RemoveData: true}, func(engine.Event) { called = true })
	if o.Confirm != nil || len(o.Against.Targets) != 0 || o.Against.BootDir.Dir != dir || !o.Force || o.Tries != 2 || o.NoTrial ||
		!o.Against.RemoveData || o.Events == nil || o.Log == nil || len(o.Boot.Self) == 0 {
		t.Errorf("update options %+v", o)
	}
	o.Events(engine.Event{})
	if !called {
		t.Error("the update's events do not reach the agent")
	}
}
