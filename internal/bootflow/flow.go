package bootflow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/agent"
	"github.com/provisioner/provisioner/schema"
)

// Banner is the first line the ramdisk prints on the console: tests and operators wait
// for it to know the provisioner runs.
const Banner = "provisioner ramdisk: booted"

// Flow is the ramdisk's boot program. The machine actions are functions so that a test
// can run the whole flow without a network, disks or a reboot.
type Flow struct {
	Config  Config
	Agent   *agent.Agent
	Fetcher *deploy.Fetcher
	Log     *slog.Logger
	// Console receives the lines meant for a person at the console.
	Console io.Writer
	// Network brings up the network (DHCP).
	Network func(ctx context.Context) error
	// Serve serves the agent API until ctx is done; called only with Config.AgentAddr.
	Serve func(ctx context.Context) error
	// Power performs the after action with the deploy's boot info; it returns only on
	// failure (or for "none").
	Power func(ctx context.Context, action string, bi *bootloader.BootInfo) error
	// Shell runs an interactive shell on the console and returns when it exits.
	Shell func(ctx context.Context) error
	// CheckKept looks at the node's boot files when the ramdisk was booted from the copy
	// kept on the node with nothing to do (provisioner.kept): it returns the step
	// ("trial", "reload") and the error of a failure to report, or "" and nil.
	CheckKept func(ctx context.Context) (step string, err error)
}

// Run follows the kernel command line: bring up the network; serve the agent API when
// asked; deploy provisioner.spec when given and then do provisioner.after. It returns
// only when ctx ends: after a failure, or with nothing to do, it keeps the agent API up
// and offers a shell on the console for diagnosis (again whenever the shell exits).
func (f *Flow) Run(ctx context.Context) error {
	fmt.Fprintln(f.Console, Banner)
	c := f.Config
	netErr := f.Network(ctx)
	if netErr != nil {
		f.Log.Error("network", "err", netErr)
		fmt.Fprintf(f.Console, "provisioner ramdisk: network: %v\n", netErr)
	}
	if c.AgentAddr != "" {
		go func() {
			if err := f.Serve(ctx); err != nil && ctx.Err() == nil {
				f.Log.Error("agent API stopped", "addr", c.AgentAddr, "err", err)
				fmt.Fprintf(f.Console, "provisioner ramdisk: agent API on %s stopped: %v\n", c.AgentAddr, err)
			}
		}()
		if c.Heartbeat > 0 && f.Agent.Callback != nil {
			go f.Agent.Heartbeat(ctx, c.Heartbeat, AgentURL(c))
		}
		fmt.Fprintf(f.Console, "provisioner ramdisk: agent API on %s\n", c.AgentAddr)
	}

	if c.Reload != nil {
		return f.reload(ctx, netErr)
	}
	if c.SpecURL == "" {
		if c.Kept && f.CheckKept != nil {
			if step, err := f.CheckKept(ctx); err != nil {
				return f.StayUp(ctx, f.reportEarly(ctx, step, err))
			}
		}
		if c.AgentAddr != "" {
			fmt.Fprintln(f.Console, "provisioner ramdisk: waiting for a spec (POST /v1/deploy)")
			<-ctx.Done()
			return ctx.Err()
		}
		return f.StayUp(ctx, errors.New("nothing to do: the kernel command line has neither provisioner.spec nor provisioner.agent"))
	}
	if netErr != nil && !isLocal(c.SpecURL) {
		return f.StayUp(ctx, f.reportEarly(ctx, "network", fmt.Errorf("no network to fetch %s: %w", c.SpecURL, netErr)))
	}
	spec, err := f.fetchSpec(ctx, c.SpecURL)
	if err != nil {
		return f.StayUp(ctx, f.reportEarly(ctx, "spec", err))
	}
	fmt.Fprintf(f.Console, "provisioner ramdisk: deploying %s\n", c.SpecURL)
	res, err := f.Agent.Run(ctx, spec)
	if err != nil {
		// The agent has reported the failure, with its step, to the callback.
		f.flush(ctx)
		return f.StayUp(ctx, fmt.Errorf("deploy failed: %w", err))
	}
	fmt.Fprintln(f.Console, "provisioner ramdisk: deploy succeeded")
	return f.after(ctx, res.BootInfo)
}

// reload is the reload mode: the reload of one image of the node that booted this
// ramdisk from its kept copy (reload --via-ramdisk), then provisioner.after.
func (f *Flow) reload(ctx context.Context, netErr error) error {
	r := f.Config.Reload
	if netErr != nil && !isLocal(r.URL) {
		return f.StayUp(ctx, f.reportEarly(ctx, "network", fmt.Errorf("no network to fetch %s: %w", r.URL, netErr)))
	}
	fmt.Fprintf(f.Console, "provisioner ramdisk: reloading %s from %s\n", r.Image, r.URL)
	bi, err := f.Agent.RunReload(ctx, agent.ReloadRequest{Image: r.Image, URL: r.URL, Checksum: r.Checksum, Format: r.Format,
		ImageUUID: r.ImageUUID, ImageName: r.ImageName, Tries: r.Tries, NoTrial: r.NoTrial})
	if err != nil {
		// The agent has reported the failure, with its step, to the callback.
		f.flush(ctx)
		return f.StayUp(ctx, fmt.Errorf("reload failed: %w", err))
	}
	fmt.Fprintln(f.Console, "provisioner ramdisk: reload succeeded")
	return f.after(ctx, bi)
}

// after ends a deploy or reload that succeeded: the events delivered, provisioner.after.
func (f *Flow) after(ctx context.Context, bi *bootloader.BootInfo) error {
	c := f.Config
	f.flush(ctx)
	if c.After == AfterNone {
		fmt.Fprintln(f.Console, "provisioner ramdisk: provisioner.after=none: staying up")
		<-ctx.Done()
		return ctx.Err()
	}
	fmt.Fprintf(f.Console, "provisioner ramdisk: %s\n", c.After)
	if err := f.Power(ctx, c.After, bi); err != nil {
		return f.StayUp(ctx, fmt.Errorf("%s failed: %w", c.After, err))
	}
	<-ctx.Done()
	return ctx.Err()
}

// flush waits (bounded) until the callback has every event, so the final one is not lost
// to a reboot.
func (f *Flow) flush(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := f.Agent.Flush(fctx); err != nil {
		f.Log.Warn("not every event reached the callback", "err", err)
	}
}

// maxSpecBytes bounds the spec download: a provision.json is a few kilobytes.
const maxSpecBytes = 4 << 20

// fetchSpec downloads and loads the spec; a validation error lists every problem.
func (f *Flow) fetchSpec(ctx context.Context, url string) (*schema.Spec, error) {
	data, err := f.Fetcher.Get(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("fetching the spec: %w", err)
	}
	if len(data) > maxSpecBytes {
		return nil, fmt.Errorf("the spec at %s is over %d bytes", url, maxSpecBytes)
	}
	spec, warns, err := schema.Load(bytes.NewReader(data))
	for _, w := range warns {
		f.Log.Warn("spec", "pointer", w.Pointer, "warning", w.Message)
	}
	if err != nil {
		return nil, fmt.Errorf("the spec at %s: %w", url, err)
	}
	return spec, nil
}

// reportEarly sends a failure that happened before the agent deployed anything (the
// network, the spec) to the callback, with step, and returns err.
func (f *Flow) reportEarly(ctx context.Context, step string, err error) error {
	if f.Agent.Callback != nil {
		ev := agent.Event{Type: agent.EventFailed, Time: time.Now().UTC(), Node: f.Config.Node, Step: step, Error: err.Error()}
		if serr := f.Agent.Callback.Send(ctx, ev); serr != nil {
			f.Log.Warn("reporting the failure to the callback failed", "err", serr)
		}
	}
	return err
}

// StayUp prints why the ramdisk stops here and keeps it alive for diagnosis: the agent
// API (if any) keeps serving, and a shell runs on the console, again after each exit.
func (f *Flow) StayUp(ctx context.Context, why error) error {
	f.Log.Error("provisioner ramdisk stops here", "err", why)
	fmt.Fprintf(f.Console, "provisioner ramdisk: FAILED: %v\n", why)
	fmt.Fprintln(f.Console, "provisioner ramdisk: not rebooting; the console shell and the agent API (if enabled) stay up for diagnosis")
	for ctx.Err() == nil {
		if err := f.Shell(ctx); err != nil && ctx.Err() == nil {
			f.Log.Warn("console shell", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second): // a shell that cannot start must not spin
			}
		}
	}
	return why
}

// AgentURL is the URL the heartbeat advertises: a listen address without a host (":9999")
// gets this machine's first non-loopback IPv4 address, which is what a conductor can reach.
func AgentURL(c Config) string {
	scheme := "http"
	if c.TLSCert != "" {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(c.AgentAddr)
	if err != nil {
		return scheme + "://" + c.AgentAddr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				host = ipn.IP.String()
				break
			}
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// isLocal reports whether url needs no network (a file in the ramdisk).
func isLocal(url string) bool {
	return len(url) > 0 && (url[0] == '/' || bytes.HasPrefix([]byte(url), []byte("file://")))
}
