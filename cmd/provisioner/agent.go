package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/agent"
	"github.com/provisioner/provisioner/internal/bootflow"
	"github.com/provisioner/provisioner/internal/engine"
	prun "github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
	"github.com/spf13/cobra"
)

// machineAgent is an agent that deploys onto this machine's disks (found by their spec
// ids), with one seed for the process so that GET /v1/plan shows the UUIDs the deploy
// will use.
func machineAgent(log *slog.Logger, node, prober, bootInfo string, progress io.Writer) (*agent.Agent, error) {
	seed, err := randomSeed()
	if err != nil {
		return nil, err
	}
	env := engine.HostEnv(log)
	return &agent.Agent{
		Node: node,
		Log:  log,
		Deploy: func(ctx context.Context, spec *schema.Spec, events func(engine.Event)) (*engine.DeployResult, error) {
			return engine.Deploy(ctx, spec, engine.DeployOptions{
				PartitionOptions: engine.PartitionOptions{Seed: seed, Env: env, Out: progress, Events: events},
				Log:              log,
				Boot:             engine.BootOptions{BootInfoPath: bootInfo, Prober: prober, Self: []string{"/proc/self/exe"}},
			})
		},
		Plan: func(ctx context.Context, spec *schema.Spec) (*partition.Layout, error) {
			return engine.Partition(ctx, spec, engine.PartitionOptions{Seed: seed, Env: env, DryRun: true, Out: io.Discard})
		},
	}, nil
}

// readToken returns --token, or the content of --token-file.
func readToken(token, file string) (string, error) {
	if file == "" {
		return token, nil
	}
	if token != "" {
		return "", engine.Usagef("--token and --token-file exclude each other")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", engine.Environmentf("--token-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// agentFlushTimeout bounds how long a stopping agent waits for its last events to be
// delivered.
const agentFlushTimeout = 10 * time.Second

func newAgentCmd(s *streams) *cobra.Command {
	var (
		listen, token, tokenFile, cert, key, callback, node, prober, bootInfo string
		heartbeat                                                             time.Duration
		insecure, power                                                       bool
	)
	cmd := &cobra.Command{
		Use:   "agent --listen ADDR --token TOKEN [flags]",
		Short: "Serve the deploy agent API (Ironic-style JSON over HTTP) on this machine",
		Long: `agent serves the deploy API that a conductor drives, deploying onto this machine's disks
(found by the spec's disk ids). Every request needs "Authorization: Bearer TOKEN".

  GET  /v1/status     state (idle, deploying, succeeded, failed), phase, per-image
                      progress, the last error and the step it failed in
  POST /v1/deploy     body: provision.json. 202 accepted; 400 with every validation
                      problem and its JSON pointer; 409 while a deploy runs
  GET  /v1/plan       the layout of the last accepted spec on this machine's disks
  GET  /v1/boot-info  boot-info.json of the last successful deploy
  POST /v1/power      {"action": "reboot"|"poweroff"|"kexec"} (only with --power)

With --callback every event (started, each phase, image progress, succeeded with
boot-info, failed with the error and step) is POSTed there, in order and retried with
backoff; --heartbeat also POSTs {node, state, agent_url} periodically. TLS is served when
--tls-cert and --tls-key are given. The deploy ramdisk runs the same agent when its kernel
command line has provisioner.agent=ADDR.

On SIGTERM, SIGINT or SIGHUP the agent stops accepting requests, cancels a running deploy
(it fails, reported with its step, and cleans up as after any failure), waits for it,
delivers the last events (at most 10 s) and exits 0; a second signal exits at once.`,
		Example: `  provisioner agent --listen :9999 --token-file /etc/provisioner/token
  provisioner agent --listen 10.0.0.5:9999 --token s3cret --callback https://conductor/v1/events --heartbeat 30s`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if listen == "" {
				return engine.Usagef("--listen is required")
			}
			tok, err := readToken(token, tokenFile)
			if err != nil {
				return err
			}
			if tok == "" && !insecure {
				return engine.Usagef("a token is required (--token or --token-file); --insecure serves without one")
			}
			log := slog.New(slog.NewTextHandler(s.err, nil))
			ag, err := machineAgent(log, node, prober, bootInfo, s.err)
			if err != nil {
				return err
			}
			if callback != "" {
				ag.Callback = &agent.Callback{URL: callback, Token: tok, Log: log}
			}
			if power {
				ag.Power = func(ctx context.Context, action string) error {
					return bootflow.Power(ctx, prun.Exec{Logger: log}, action, ag.BootInfo())
				}
			}
			ctx := cmd.Context()
			if heartbeat > 0 && ag.Callback != nil {
				go ag.Heartbeat(ctx, heartbeat, bootflowAgentURL(listen, cert))
			}
			srv := &agent.Server{Agent: ag, Token: tok, Insecure: insecure, Log: log}
			fmt.Fprintf(s.err, "agent API on %s\n", listen)
			err = srv.Serve(ctx, listen, cert, key)
			// Serve returns when ctx ends (a signal): it accepts nothing more, and a
			// deploy it started, which runs under ctx, is failing and cleaning up now.
			// The process must outlive that cleanup, and give the final event a moment
			// to reach the conductor.
			ag.Wait()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), agentFlushTimeout)
			defer cancel()
			if ferr := ag.Flush(fctx); ferr != nil {
				log.Warn("events not all delivered", "err", ferr)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "address to listen on, e.g. :9999")
	f.StringVar(&token, "token", "", "bearer token required from clients and sent to the callback")
	f.StringVar(&tokenFile, "token-file", "", "read the token from this file")
	f.StringVar(&cert, "tls-cert", "", "TLS certificate (PEM); with --tls-key, serve HTTPS")
	f.StringVar(&key, "tls-key", "", "TLS private key (PEM)")
	f.StringVar(&callback, "callback", "", "URL to POST events to")
	f.DurationVar(&heartbeat, "heartbeat", 0, "POST a heartbeat to the callback this often (0: never)")
	f.StringVar(&node, "node", "", "node name in events (default: the hostname)")
	f.StringVar(&prober, "prober", engine.ProberAuto, "kernel discovery: auto, os-prober, builtin")
	f.StringVar(&bootInfo, "boot-info", engine.DefaultBootInfoPath, "also write boot-info.json here")
	f.BoolVar(&insecure, "insecure", false, "serve without a token (closed test networks only)")
	f.BoolVar(&power, "power", false, "allow POST /v1/power to reboot, power off or kexec this machine")
	return cmd
}

// bootflowAgentURL is the URL a heartbeat advertises for the agent's listen address.
func bootflowAgentURL(listen, cert string) string {
	return bootflow.AgentURL(bootflow.Config{AgentAddr: listen, TLSCert: cert})
}

// newRamdiskBootCmd is the deploy ramdisk's boot program (u-root's init runs it as
// /bin/uinit with this subcommand): it follows the kernel command line.
func newRamdiskBootCmd(s *streams) *cobra.Command {
	var cmdlinePath string
	cmd := &cobra.Command{
		Use:    "ramdisk-boot",
		Short:  "The deploy ramdisk's boot program (run by its init)",
		Hidden: true,
		Args:   exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			// JSON lines on the console: readable enough for a person, parseable by a
			// harness reading the serial log.
			log := slog.New(slog.NewJSONHandler(s.err, nil))
			raw, err := os.ReadFile(cmdlinePath)
			if err != nil {
				return engine.Environmentf("reading the kernel command line: %w", err)
			}
			cfg, cfgErr := bootflow.ParseCmdline(string(raw))
			if err := bootflow.Prepare(ctx); err != nil {
				log.Error("preparing the ramdisk", "err", err)
			}
			runner := prun.Exec{Logger: log}
			ag, err := machineAgent(log, cfg.Node, cfg.Prober, engine.DefaultBootInfoPath, s.err)
			if err != nil {
				return err
			}
			if cfg.Callback != "" {
				ag.Callback = &agent.Callback{URL: cfg.Callback, Token: cfg.Token, Log: log}
			}
			ag.Power = func(ctx context.Context, action string) error {
				return bootflow.Power(ctx, runner, action, ag.BootInfo())
			}
			srv := &agent.Server{Agent: ag, Token: cfg.Token, Log: log}
			flow := &bootflow.Flow{
				Config: cfg, Agent: ag, Fetcher: &deploy.Fetcher{Log: log}, Log: log, Console: s.out,
				Network: func(ctx context.Context) error { return bootflow.Network(ctx, cfg.BootIF, log) },
				Serve:   func(ctx context.Context) error { return srv.Serve(ctx, cfg.AgentAddr, cfg.TLSCert, cfg.TLSKey) },
				Power: func(ctx context.Context, action string, bi *bootloader.BootInfo) error {
					return bootflow.Power(ctx, runner, action, bi)
				},
				Shell: func(ctx context.Context) error {
					fmt.Fprintln(s.out, "provisioner ramdisk: starting a shell on the console (exit to get a new one)")
					return prun.Interactive(ctx, []string{"/bin/sh"}, os.Stdin, os.Stdout, os.Stderr)
				},
			}
			if cfgErr != nil {
				// A bad parameter must not make the machine reboot into the old OS:
				// stay up and say why.
				flow.Config = bootflow.Config{}
				return flow.StayUp(ctx, fmt.Errorf("kernel command line: %w", cfgErr))
			}
			return flow.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&cmdlinePath, "cmdline", "/proc/cmdline", "read the kernel command line from this file")
	return cmd
}
