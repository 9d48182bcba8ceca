package bootflow

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/agent"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// MachineAgent returns an agent that deploys onto this machine's disks (found by their
// spec ids), with one seed for the process so that GET /v1/plan shows the UUIDs the
// deploy will use. progress receives the deploy's progress lines.
func MachineAgent(log *slog.Logger, node, prober, bootInfo string, progress io.Writer) (*agent.Agent, error) {
	seed, err := engine.NewSeed()
	if err != nil {
		return nil, err
	}
	env := engine.HostEnv(log)
	return &agent.Agent{
		Node: node,
		Log:  log,
		Deploy: func(ctx context.Context, spec *schema.Spec, events func(engine.Event)) (*engine.DeployResult, error) {
			return engine.Deploy(ctx, spec, engine.DeployOptions{
				PartitionOptions: engine.PartitionOptions{Seed: seed, Env: env, Out: progress, Events: engine.Tee(events, engine.TextEvents(progress))},
				Log:              log,
				Boot:             engine.BootOptions{BootInfoPath: bootInfo, Prober: prober, Self: []string{"/proc/self/exe"}},
			})
		},
		Plan: func(ctx context.Context, spec *schema.Spec) (*partition.Layout, error) {
			return engine.Partition(ctx, spec, engine.PartitionOptions{Seed: seed, Env: env, DryRun: true, Out: io.Discard})
		},
	}, nil
}

// AgentOptions configure ServeAgent: the agent command's flags.
type AgentOptions struct {
	// Listen is the address the API listens on, e.g. ":9999".
	Listen string
	// Token is required from clients and sent to the callback; Insecure serves without.
	Token    string
	Insecure bool
	// TLSCert and TLSKey, both set, serve HTTPS.
	TLSCert, TLSKey string
	// Callback receives every event; Heartbeat, when positive, also posts the agent's
	// state this often.
	Callback  string
	Heartbeat time.Duration
	// Node names the machine in events (default: the hostname).
	Node string
	// Prober and BootInfo are the deploy's kernel discovery and extra boot-info path.
	Prober, BootInfo string
	// Power allows POST /v1/power to reboot, power off or kexec this machine.
	Power bool
	// NodeAPI, when set, serves the API of a deployed node (reload, update, confirm,
	// boot; see MachineNode) instead of the deploy API: deploying from the running
	// system would wipe the disks it runs from.
	NodeAPI *agent.Node
	// Log receives the agent's log; Progress the deploy's progress lines and the
	// listening notice.
	Log      *slog.Logger
	Progress io.Writer
}

// agentFlushTimeout bounds how long a stopping agent waits for its last events to be
// delivered.
const agentFlushTimeout = 10 * time.Second

// ServeAgent serves the agent API on this machine until ctx ends: the deploy API, or a
// deployed node's with o.NodeAPI. It then accepts nothing more, waits for an operation it
// started (which runs under ctx, so it is failing and cleaning up), and gives the final
// events a bounded moment to reach the conductor.
func ServeAgent(ctx context.Context, o AgentOptions) error {
	if o.Node != "" {
		// The history records of what the agent does carry the name its events carry.
		bootloader.SetNodeName(o.Node)
	}
	ag, err := agentFor(o)
	if err != nil {
		return err
	}
	if o.Callback != "" {
		ag.Callback = &agent.Callback{URL: o.Callback, Token: o.Token, Log: o.Log}
	}
	if o.Power {
		runner := run.Exec{Logger: o.Log}
		ag.Power = func(ctx context.Context, action string) error {
			return Power(ctx, runner, action, ag.BootInfo())
		}
	}
	if o.Heartbeat > 0 && ag.Callback != nil {
		go ag.Heartbeat(ctx, o.Heartbeat, AgentURL(Config{AgentAddr: o.Listen, TLSCert: o.TLSCert}))
	}
	srv := &agent.Server{Agent: ag, Token: o.Token, Insecure: o.Insecure, Log: o.Log}
	what := "agent API"
	if o.NodeAPI != nil {
		what = "node agent API"
	}
	fmt.Fprintf(o.Progress, "%s on %s\n", what, o.Listen)
	err = srv.Serve(ctx, o.Listen, o.TLSCert, o.TLSKey)
	ag.Wait()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), agentFlushTimeout)
	defer cancel()
	if ferr := ag.Flush(fctx); ferr != nil {
		o.Log.Warn("events not all delivered", "err", ferr)
	}
	return err
}

// agentFor is ServeAgent's agent before its callback and power: on a node it has
// no deploy function at all, so nothing in it can start one.
func agentFor(o AgentOptions) (*agent.Agent, error) {
	if o.NodeAPI != nil {
		return &agent.Agent{Node: o.Node, Log: o.Log, NodeAPI: o.NodeAPI}, nil
	}
	return MachineAgent(o.Log, o.Node, o.Prober, o.BootInfo, o.Progress)
}

// RamdiskOptions are what the ramdisk's boot program takes from its init.
type RamdiskOptions struct {
	// Cmdline is the kernel command line (the content of /proc/cmdline).
	Cmdline string
	// Console receives the lines meant for a person; Log the JSON log lines (on the
	// console too, where a harness reading the serial log parses them).
	Console io.Writer
	Log     io.Writer
	// Stdin, Stdout and Stderr are the console shell's streams.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Ramdisk is the deploy ramdisk's boot program: it wires the machine (network, agent
// API, power actions, console shell) into a Flow and follows the kernel command line.
// A command line it cannot parse keeps the ramdisk up and says why: a bad parameter
// must not make the machine reboot into the old OS.
func Ramdisk(ctx context.Context, o RamdiskOptions) error {
	log := slog.New(slog.NewJSONHandler(o.Log, nil))
	cfg, cfgErr := ParseCmdline(o.Cmdline)
	if cfg.Node != "" {
		// The ramdisk's hostname is not the node's: the deploy's history record carries
		// provisioner.node.
		bootloader.SetNodeName(cfg.Node)
	}
	if err := Prepare(ctx); err != nil {
		log.Error("preparing the ramdisk", "err", err)
	}
	runner := run.Exec{Logger: log}
	ag, err := MachineAgent(log, cfg.Node, cfg.Prober, engine.DefaultBootInfoPath, o.Log)
	if err != nil {
		return err
	}
	if cfg.Callback != "" {
		ag.Callback = &agent.Callback{URL: cfg.Callback, Token: cfg.Token, Log: log}
	}
	ag.Power = func(ctx context.Context, action string) error {
		return Power(ctx, runner, action, ag.BootInfo())
	}
	srv := &agent.Server{Agent: ag, Token: cfg.Token, Log: log}
	flow := &Flow{
		Config: cfg, Agent: ag, Fetcher: &deploy.Fetcher{Log: log}, Log: log, Console: o.Console,
		Network: func(ctx context.Context) error { return Network(ctx, cfg.BootIF, log) },
		Serve:   func(ctx context.Context) error { return srv.Serve(ctx, cfg.AgentAddr, cfg.TLSCert, cfg.TLSKey) },
		Power: func(ctx context.Context, action string, bi *bootloader.BootInfo) error {
			return Power(ctx, runner, action, bi)
		},
		Shell: func(ctx context.Context) error {
			fmt.Fprintln(o.Console, "provisioner ramdisk: starting a shell on the console (exit to get a new one)")
			return run.Interactive(ctx, []string{"/bin/sh"}, o.Stdin, o.Stdout, o.Stderr)
		},
	}
	if cfg.Reload != nil {
		ag.NodeAPI = &agent.Node{Reload: RamdiskReloader(log, cfg.Prober, AfterReloadWords(o.Cmdline), o.Log)}
	}
	flow.CheckKept = func(ctx context.Context) (string, error) { return CheckKept(ctx, engine.HostEnv(log)) }
	if cfgErr != nil {
		flow.Config = Config{}
		return flow.StayUp(ctx, fmt.Errorf("kernel command line: %w", cfgErr))
	}
	return flow.Run(ctx)
}
