package main

import (
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/provisioner/provisioner/internal/bootflow"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/spf13/cobra"
)

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

func newAgentCmd(s *streams) *cobra.Command {
	var (
		listen, token, tokenFile, cert, key, callback, node, prober, bootInfo string
		heartbeat                                                             time.Duration
		insecure, power, nodeAPI                                              bool
	)
	cmd := &cobra.Command{
		Use:   "agent --listen ADDR --token TOKEN [--node-api] [flags]",
		Short: "Serve the deploy agent API (Ironic-style JSON over HTTP), or a deployed node's",
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

With --node-api the agent serves a deployed node instead (run it there, e.g. from a systemd
unit): POST /v1/deploy answers 409, since a deploy would wipe the disks the node runs from,
and these endpoints are added (without --node-api they answer 404):

  POST /v1/reload     {"image", "url", "checksum", "format", "image_uuid", "image_name",
                      "tries", "no_trial"}: reload one image, as provisioner reload does;
                      202 accepted, then GET /v1/status as for a deploy; 400 naming the
                      bad field; 409 while a reload, an update or a confirm runs
  POST /v1/update     {"spec": {provision.json}, "force", "tries", "no_trial",
                      "remove_data", "dry_run"}:
                      apply a changed spec, as provisioner update --yes does; 400 with the
                      spec's problems (pointers under /spec) or naming the bad option;
                      dry_run: 200 with the break-down plan --against --json prints,
                      nothing written; else 202, then GET /v1/status as for a reload, its
                      "update" member saying applied, nothing_to_do, refused (with the
                      refusals) or failed; 409 while another operation runs
  POST /v1/confirm    make the image booted on trial the default; 409 during a reload
                      or an update
  GET  /v1/boot       what provisioner list --json prints; 409 during a reload or an
                      update

On SIGTERM, SIGINT or SIGHUP the agent stops accepting requests, cancels a running deploy,
reload or update (it fails, reported with its step, and cleans up as after any failure), waits for it,
delivers the last events (at most 10 s) and exits 0; a second signal exits at once.`,
		Example: `  provisioner agent --listen :9999 --token-file /etc/provisioner/token
  provisioner agent --listen 10.0.0.5:9999 --token s3cret --callback https://conductor/v1/events --heartbeat 30s
  provisioner agent --node-api --listen :9999 --token-file /etc/provisioner/token --power`,
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
			if nodeAPI && (cmd.Flags().Changed("prober") || cmd.Flags().Changed("boot-info")) {
				return engine.Usagef("--prober and --boot-info set up deploys, and an agent with --node-api does not deploy")
			}
			log := slog.New(slog.NewTextHandler(s.err, nil))
			o := bootflow.AgentOptions{
				Listen: listen, Token: tok, Insecure: insecure, TLSCert: cert, TLSKey: key,
				Callback: callback, Heartbeat: heartbeat, Node: node, Prober: prober, BootInfo: bootInfo,
				Power: power, Log: log, Progress: s.err,
			}
			if nodeAPI {
				o.NodeAPI = bootflow.MachineNode(log, "")
			}
			return bootflow.ServeAgent(cmd.Context(), o)
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
	f.BoolVar(&nodeAPI, "node-api", false, "serve the API of this deployed node (reload, update, confirm, boot) instead of deploys")
	return cmd
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
			raw, err := os.ReadFile(cmdlinePath)
			if err != nil {
				return engine.Environmentf("reading the kernel command line: %w", err)
			}
			return bootflow.Ramdisk(cmd.Context(), bootflow.RamdiskOptions{
				Cmdline: string(raw), Console: s.out, Log: s.err,
				Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
			})
		},
	}
	cmd.Flags().StringVar(&cmdlinePath, "cmdline", "/proc/cmdline", "read the kernel command line from this file")
	return cmd
}
