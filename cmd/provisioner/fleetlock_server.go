//go:build !nofleetlockserver

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/provisioner/provisioner/internal/fleetlock/etcdstore"
	"github.com/spf13/cobra"
)

func init() {
	fleetlockServerCmds = append(fleetlockServerCmds, newFleetlockServeCmd, newFleetlockStatusCmd, newFleetlockReleaseCmd)
}

// etcdFlags select the etcd cluster and how to reach it, over the configuration file.
type etcdFlags struct {
	config                    string
	endpoints                 []string
	txnTimeout                time.Duration
	certFile, keyFile, caFile string
}

func (f *etcdFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "the server's TOML configuration file (the reference server's format)")
	fl.StringSliceVar(&f.endpoints, "etcd", nil, "etcd endpoints, comma-separated (replace [etcd3] endpoints)")
	fl.DurationVar(&f.txnTimeout, "etcd-timeout", 0, "etcd transaction timeout (default 3s, or [etcd3] transaction_timeout_ms)")
	fl.StringVar(&f.certFile, "etcd-cert", "", "etcd client certificate (PEM)")
	fl.StringVar(&f.keyFile, "etcd-key", "", "etcd client key (PEM)")
	fl.StringVar(&f.caFile, "etcd-ca", "", "CA certificates for etcd's certificate (PEM; default the system's)")
}

// load reads the configuration file, if any, and applies the flags over it.
func (f *etcdFlags) load() (fleetlock.ServerConfig, error) {
	cfg := fleetlock.DefaultServerConfig()
	if f.config != "" {
		var err error
		if cfg, err = fleetlock.LoadServerConfig(f.config); err != nil {
			return cfg, err
		}
	}
	if len(f.endpoints) > 0 {
		cfg.EtcdEndpoints = f.endpoints
	}
	if f.txnTimeout > 0 {
		cfg.EtcdTxnTimeout = f.txnTimeout
	}
	if f.certFile != "" {
		cfg.EtcdCertFile, cfg.EtcdKeyFile = f.certFile, f.keyFile
	}
	if f.caFile != "" {
		cfg.EtcdCAFile = f.caFile
	}
	if len(cfg.EtcdEndpoints) == 0 {
		return cfg, engine.Usagef("no etcd endpoints: give --etcd or [etcd3] endpoints in --config")
	}
	return cfg, nil
}

// serveFlags are serve's own flags, over the configuration file.
type serveFlags struct {
	etcd            etcdFlags
	listen          string
	ttl             time.Duration
	tlsCert, tlsKey string
	metrics         bool
	groups          []string
}

func (f *serveFlags) config(cmd *cobra.Command) (fleetlock.ServerConfig, error) {
	cfg, err := f.etcd.load()
	if err != nil {
		return cfg, err
	}
	fl := cmd.Flags()
	if fl.Changed("listen") {
		cfg.Listen = f.listen
	}
	if fl.Changed("ttl") {
		cfg.HolderTTL = f.ttl
	}
	if fl.Changed("tls-cert") || fl.Changed("tls-key") {
		cfg.TLSCertFile, cfg.TLSKeyFile = f.tlsCert, f.tlsKey
	}
	if fl.Changed("metrics") {
		cfg.Metrics = f.metrics
	}
	for _, g := range f.groups {
		name, n, ok := strings.Cut(g, "=")
		slots, err := strconv.ParseUint(n, 10, 64)
		if !ok || err != nil {
			return cfg, engine.Usagef("--group %q: want NAME=SLOTS", g)
		}
		cfg.Groups[name] = slots
	}
	if err := cfg.Validate(); err != nil {
		return cfg, engine.Usagef("%w", err)
	}
	return cfg, nil
}

func newFleetlockServeCmd(s *streams) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve --etcd ENDPOINTS [--listen ADDR] [--config FILE] [--ttl D] [--group NAME=SLOTS]...",
		Short: "Run the FleetLock server on an etcd cluster",
		Long: `serve answers FleetLock's POST /v1/pre-reboot (take a slot) and /v1/steady-state
(release it), keeping each group's counting semaphore in etcd under the reference
server's key and JSON, so that it can replace the reference server on the same etcd. It
keeps no state: run as many replicas as wanted on one etcd.

It also serves GET /v1/groups (slots and holders with when each took its slot),
/metrics (Prometheus text) and /healthz (etcd reachable), and logs JSON lines on
standard error. Without a configuration file it serves group "default" with 1 slot;
--group adds or resizes groups. A configured slot count different from the stored one
is written to etcd. With --ttl, a holder older than that loses its slot (checked on
each request and every minute). It runs until SIGTERM or SIGINT.`,
		Example: `  provisioner fleetlock serve --etcd http://10.0.0.1:2379,http://10.0.0.2:2379 --listen :9090 --group workers=2
  provisioner fleetlock serve --config /etc/fleetlock/config.toml --ttl 24h`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config(cmd)
			if err != nil {
				return err
			}
			return serveFleetlock(cmd.Context(), s, cfg)
		},
	}
	f.etcd.bind(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "", "address to serve on, host:port (default 0.0.0.0:9090, or [service] address and port)")
	fl.DurationVar(&f.ttl, "ttl", 0, "release holders that have held a slot longer than this (0: never)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "the key of --tls-cert (PEM)")
	fl.BoolVar(&f.metrics, "metrics", true, "serve /metrics")
	fl.StringArrayVar(&f.groups, "group", nil, "a group and its slots, NAME=SLOTS (repeatable; over the file's groups)")
	return cmd
}

// serveFleetlock runs the server until ctx ends, then shuts it down gracefully.
func serveFleetlock(ctx context.Context, s *streams, cfg fleetlock.ServerConfig) error {
	log := slog.New(slog.NewJSONHandler(s.err, nil))
	for _, k := range cfg.Unknown {
		log.Warn("unknown configuration key ignored", "key", k)
	}
	cli, err := etcdstore.Dial(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	store := etcdstore.New(cli, etcdstore.Options{Groups: cfg.Groups, HolderTTL: cfg.HolderTTL, Logger: log})
	srv := fleetlock.NewServer(store, fleetlock.ServerOptions{Logger: log, Metrics: cfg.Metrics, Timeout: cfg.EtcdTxnTimeout})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go srv.Run(ctx)

	errc := make(chan error, 2)
	var servers []*http.Server
	start := func(addr string, h http.Handler, what string) error {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, hs)
		tls := cfg.TLSCertFile != ""
		log.Info("listening", "service", what, "address", l.Addr().String(), "tls", tls,
			"etcd", cfg.EtcdEndpoints, "groups", cfg.Groups, "holder_ttl", cfg.HolderTTL.String())
		go func() {
			if tls {
				errc <- hs.ServeTLS(l, cfg.TLSCertFile, cfg.TLSKeyFile)
			} else {
				errc <- hs.Serve(l)
			}
		}()
		return nil
	}
	if err := start(cfg.Listen, srv.Handler(), "fleetlock"); err != nil {
		return err
	}
	if cfg.StatusListen != "" {
		if err := start(cfg.StatusListen, srv.StatusHandler(), "status"); err != nil {
			return err
		}
	}
	select {
	case err = <-errc:
		err = fmt.Errorf("serving FleetLock: %w", err)
	case <-ctx.Done():
		log.Info("stopping", "cause", context.Cause(ctx).Error())
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	for _, hs := range servers {
		hs.Shutdown(sctx)
	}
	return err
}

func newFleetlockStatusCmd(s *streams) *cobra.Command {
	var f etcdFlags
	var server string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status (--etcd ENDPOINTS | --config FILE | --server URL) [--json]",
		Short: "List the FleetLock groups, their slots and who holds them since when",
		Long: `status reads every group's semaphore and holders, from etcd directly (--etcd or the
etcd of --config: works with no server running, and shows groups written by any server)
or from a running server's GET /v1/groups (--server, the server's base URL: needs no
etcd access). Holders written by a server that records no times (the reference server)
show the time a server first saw them, marked "observed".`,
		Example: `  provisioner fleetlock status --etcd http://10.0.0.1:2379
  provisioner fleetlock status --server http://fleetlock.example:9090 --json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var groups []fleetlock.GroupStatus
			var err error
			if server != "" {
				groups, err = groupsFromServer(cmd.Context(), server)
			} else {
				groups, err = groupsFromEtcd(cmd.Context(), &f)
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(s.out, fleetlock.GroupsResponse{Groups: groups})
			}
			printGroups(s, groups)
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&server, "server", "", "a running server's base URL, instead of etcd")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (the body of GET /v1/groups)")
	return cmd
}

func groupsFromEtcd(ctx context.Context, f *etcdFlags) ([]fleetlock.GroupStatus, error) {
	cfg, err := f.load()
	if err != nil {
		return nil, err
	}
	cli, err := etcdstore.Dial(cfg)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	var groups map[string]uint64
	if f.config != "" {
		groups = cfg.Groups // shows configured slots only when a configuration says them
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.EtcdTxnTimeout)
	defer cancel()
	return etcdstore.New(cli, etcdstore.Options{Groups: groups}).Status(ctx)
}

func groupsFromServer(ctx context.Context, base string) ([]fleetlock.GroupStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := strings.TrimSuffix(base, "/") + fleetlock.GroupsPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, engine.Usagef("--server %q: %w", base, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e fleetlock.Error
		json.NewDecoder(resp.Body).Decode(&e)
		e.Status = resp.StatusCode
		return nil, fmt.Errorf("GET %s: %w", url, &e)
	}
	var body fleetlock.GroupsResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET %s: decoding the groups: %w", url, err)
	}
	return body.Groups, nil
}

func printGroups(s *streams, groups []fleetlock.GroupStatus) {
	if len(groups) == 0 {
		fmt.Fprintln(s.out, "no groups")
	}
	for _, g := range groups {
		line := fmt.Sprintf("group %s: %d of %d slots held", g.Name, len(g.Holders), g.Slots)
		switch {
		case !g.Stored:
			line = fmt.Sprintf("group %s: not in etcd yet (configured with %d slots)", g.Name, g.ConfiguredSlots)
		case g.ConfiguredSlots != 0 && g.ConfiguredSlots != g.Slots:
			line += fmt.Sprintf(" (configured: %d, written at the next request)", g.ConfiguredSlots)
		}
		fmt.Fprintln(s.out, line)
		for _, h := range g.Holders {
			switch {
			case h.Since.IsZero():
				fmt.Fprintf(s.out, "  %s\n", h.ID)
			case h.Observed:
				fmt.Fprintf(s.out, "  %s  observed since %s\n", h.ID, h.Since.Local().Format(time.RFC3339))
			default:
				fmt.Fprintf(s.out, "  %s  since %s (%s)\n", h.ID, h.Since.Local().Format(time.RFC3339), time.Since(h.Since).Round(time.Second))
			}
		}
	}
}

func newFleetlockReleaseCmd(s *streams) *cobra.Command {
	var f etcdFlags
	var group string
	cmd := &cobra.Command{
		Use:   "release ID [--group GROUP] (--etcd ENDPOINTS | --config FILE)",
		Short: "Free the slot a node holds (a node that took it and never came back)",
		Long: `release removes ID from GROUP's holders in etcd, in one compare-and-swap transaction
like the server's own, so it is safe while servers run. It says whether ID held a slot
and exits 0 either way.`,
		Example: `  provisioner fleetlock release 3f9a0c21e6b84d1f --group workers --etcd http://10.0.0.1:2379`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !fleetlock.ValidGroup(group) {
				return engine.Usagef("--group %q: a group name must match ^[a-zA-Z0-9.-]+$", group)
			}
			cfg, err := f.load()
			if err != nil {
				return err
			}
			cli, err := etcdstore.Dial(cfg)
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), cfg.EtcdTxnTimeout)
			defer cancel()
			held, err := etcdstore.New(cli, etcdstore.Options{}).Release(ctx, group, args[0])
			if err != nil {
				return err
			}
			if held {
				fmt.Fprintf(s.out, "released %s's slot of group %s\n", args[0], group)
			} else {
				fmt.Fprintf(s.out, "%s held no slot of group %s\n", args[0], group)
			}
			return nil
		},
	}
	f.bind(cmd)
	cmd.Flags().StringVar(&group, "group", fleetlock.DefaultGroup, "the holder's group")
	return cmd
}
