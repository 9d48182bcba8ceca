// Package bootflow is the deploy ramdisk's boot program: it reads the kernel command
// line, brings up the network, and then deploys the spec it is given (provisioner.spec),
// serves the agent API and waits for one (provisioner.agent), or both; it reports to a
// callback and ends with the requested power action. After a failure it keeps the agent
// API and a console shell up for diagnosis instead of rebooting. It also wires this
// machine's agent (disks, callback, power actions) for the agent command.
package bootflow

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/provisioner/provisioner/internal/engine"
)

// After actions: what the ramdisk does once a deploy succeeded.
const (
	AfterReboot   = "reboot"
	AfterPoweroff = "poweroff"
	AfterKexec    = "kexec"
	AfterNone     = "none"
)

// DefaultHeartbeat is the heartbeat period when the agent API and a callback are both
// configured.
const DefaultHeartbeat = 30 * time.Second

// Config is what the kernel command line asks for.
type Config struct {
	// SpecURL is provisioner.spec: the provision.json to fetch and deploy.
	SpecURL string
	// Callback is provisioner.callback: where events are POSTed.
	Callback string
	// Token is provisioner.token: the bearer token of the callback and the agent API.
	Token string
	// After is provisioner.after (default reboot).
	After string
	// AgentAddr is provisioner.agent: the address the agent API listens on.
	AgentAddr string
	// BootIF is the MAC address from Ironic's BOOTIF= ("01-52-54-00-12-34-56" or a plain
	// MAC): DHCP runs on that interface only.
	BootIF net.HardwareAddr
	// Heartbeat is provisioner.heartbeat (a duration, "30s"; "0" disables).
	Heartbeat time.Duration
	// Node is provisioner.node, the name events carry ("" : the hostname).
	Node string
	// Prober is provisioner.prober: the kernel prober (auto, os-prober, builtin).
	Prober string
	// TLSCert and TLSKey are provisioner.tls_cert and provisioner.tls_key: files in the
	// ramdisk holding the agent API's certificate.
	TLSCert, TLSKey string
	// Reload is the reload of one image that `provisioner reload --via-ramdisk` put on
	// the kernel command line (provisioner.reload and the words after it), nil when none.
	Reload *engine.RamdiskReload
	// Kept is provisioner.kept: the ramdisk was booted from the copy kept on the node,
	// whose boot files it checks when it has nothing else to do.
	Kept bool
}

// ParseCmdline reads the parameters the ramdisk understands from a kernel command line
// (/proc/cmdline's content). Unknown parameters are the kernel's and are ignored; a
// known one with a bad value is an error naming it.
func ParseCmdline(s string) (Config, error) {
	c := Config{After: AfterReboot, Heartbeat: -1}
	for _, word := range splitCmdline(s) {
		key, val, _ := strings.Cut(word, "=")
		switch key {
		case "provisioner.spec":
			c.SpecURL = val
		case "provisioner.callback":
			c.Callback = val
		case "provisioner.token":
			c.Token = val
		case "provisioner.agent":
			c.AgentAddr = val
		case "provisioner.node":
			c.Node = val
		case "provisioner.prober":
			c.Prober = val
		case "provisioner.tls_cert":
			c.TLSCert = val
		case "provisioner.tls_key":
			c.TLSKey = val
		case engine.WordReload, engine.WordURL, engine.WordChecksum, engine.WordFormat, engine.WordImageUUID,
			engine.WordImageName, engine.WordTries, engine.WordNoTrial:
			if err := c.reloadWord(key, val); err != nil {
				return c, err
			}
		case engine.WordKept:
			c.Kept = val == "1"
		case "provisioner.after":
			switch val {
			case AfterReboot, AfterPoweroff, AfterKexec, AfterNone:
				c.After = val
			default:
				return c, fmt.Errorf("provisioner.after=%q: want reboot, poweroff, kexec or none", val)
			}
		case "provisioner.heartbeat":
			d, err := parseDuration(val)
			if err != nil {
				return c, fmt.Errorf("provisioner.heartbeat=%q: %w", val, err)
			}
			c.Heartbeat = d
		case "BOOTIF":
			mac, err := parseBootIF(val)
			if err != nil {
				return c, fmt.Errorf("BOOTIF=%q: %w", val, err)
			}
			c.BootIF = mac
		}
	}
	if c.Heartbeat < 0 {
		c.Heartbeat = 0
		if c.AgentAddr != "" && c.Callback != "" {
			c.Heartbeat = DefaultHeartbeat
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, fmt.Errorf("provisioner.tls_cert and provisioner.tls_key go together")
	}
	if r := c.Reload; r != nil {
		switch {
		case r.Image == "":
			return c, fmt.Errorf("%s=... without %s=IMAGE", engine.WordURL, engine.WordReload)
		case r.URL == "":
			return c, fmt.Errorf("%s=%s: %s is required", engine.WordReload, r.Image, engine.WordURL)
		case c.SpecURL != "":
			return c, fmt.Errorf("provisioner.spec and %s exclude each other: a ramdisk deploys or reloads", engine.WordReload)
		}
	}
	return c, nil
}

// reloadWord sets one word of the reload mode.
func (c *Config) reloadWord(key, val string) error {
	if c.Reload == nil {
		c.Reload = &engine.RamdiskReload{}
	}
	r := c.Reload
	switch key {
	case engine.WordReload:
		r.Image = val
	case engine.WordURL:
		r.URL = val
	case engine.WordChecksum:
		r.Checksum = val
	case engine.WordFormat:
		r.Format = val
	case engine.WordImageUUID:
		r.ImageUUID = val
	case engine.WordImageName:
		r.ImageName = val
	case engine.WordTries:
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return fmt.Errorf("%s=%q: want a number of tries, 1 or more", key, val)
		}
		r.Tries = n
	case engine.WordNoTrial:
		r.NoTrial = val == "1"
	}
	return nil
}

// reloadWords are the words of the reload mode and the ones grub adds, which the ramdisk's
// entry must not keep once the reload is done (see AfterReloadWords).
var reloadWords = []string{engine.WordReload, engine.WordURL, engine.WordChecksum, engine.WordFormat,
	engine.WordImageUUID, engine.WordImageName, engine.WordTries, engine.WordNoTrial, "BOOT_IMAGE"}

// AfterReloadWords returns the words of the kernel command line cmdline without the
// reload's: what the ramdisk's entry boots with once the reload is done (the console, the
// callback and provisioner.kept), so that a trial falling back to the ramdisk reports
// instead of reloading again.
func AfterReloadWords(cmdline string) []string {
	var out []string
	for _, w := range splitCmdline(cmdline) {
		key, _, _ := strings.Cut(w, "=")
		if !slices.Contains(reloadWords, key) {
			out = append(out, w)
		}
	}
	return out
}

// parseDuration accepts Go durations ("30s", "1m") and bare seconds ("30").
func parseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n >= 0 && fmt.Sprint(n) == s {
		return time.Duration(n) * time.Second, nil
	}
	return 0, fmt.Errorf("want a duration such as 30s")
}

// parseBootIF reads PXELINUX's BOOTIF: the ARP hardware type (01 for Ethernet) and the
// MAC, dash-separated. A plain MAC is accepted too.
func parseBootIF(s string) (net.HardwareAddr, error) {
	v := strings.ReplaceAll(s, "-", ":")
	if parts := strings.Split(v, ":"); len(parts) == 7 {
		v = strings.Join(parts[1:], ":")
	}
	mac, err := net.ParseMAC(v)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("not an Ethernet MAC address")
	}
	return mac, nil
}

// splitCmdline splits at blanks outside double quotes and removes the quotes, as the
// kernel does for parameters ("a=\"b c\"" is a=b c).
func splitCmdline(s string) []string {
	var out []string
	var cur strings.Builder
	in, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			in = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}
