package fleetlock

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"
)

// ServerConfig is the server's configuration: the reference server's TOML file read as it is,
// plus this server's additions in a [provisioner] table (which the reference server
// ignores, so one file serves both).
type ServerConfig struct {
	// Listen is the service's host:port ([service] address and port).
	Listen string
	// TLSCertFile and TLSKeyFile serve HTTPS when both are set.
	TLSCertFile, TLSKeyFile string
	// StatusListen is the reference server's separate status listener ([status] enabled,
	// address, port), served with /metrics and /healthz; "" when disabled.
	StatusListen string

	// EtcdEndpoints are the etcd cluster's client URLs ([etcd3] endpoints).
	EtcdEndpoints []string
	// EtcdTxnTimeout bounds the etcd connection and each request's etcd work, retries
	// included ([etcd3] transaction_timeout_ms).
	EtcdTxnTimeout time.Duration
	// EtcdCertFile and EtcdKeyFile are the etcd client certificate; EtcdCAFile, when set,
	// replaces the system's CAs for etcd's certificate.
	EtcdCertFile, EtcdKeyFile, EtcdCAFile string

	// DefaultGroup is [lock] default_group_name, configured with DefaultSlots.
	DefaultGroup string
	DefaultSlots uint64
	// Groups are all configured groups with their slots, the default group included.
	Groups map[string]uint64

	// HolderTTL, when positive, releases slots held longer.
	HolderTTL time.Duration
	// Metrics serves /metrics on the service listener.
	Metrics bool
	// Unknown lists the file's keys this server does not know (typos, newer keys).
	Unknown []string
}

// DefaultServerConfig is the configuration without a file: the reference server's defaults
// (0.0.0.0:9090, a 3 s etcd transaction timeout, group "default" with 1 slot).
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Listen:         "0.0.0.0:9090",
		EtcdTxnTimeout: 3 * time.Second,
		DefaultGroup:   DefaultGroup,
		DefaultSlots:   1,
		Groups:         map[string]uint64{DefaultGroup: 1},
		Metrics:        true,
	}
}

// tomlFile is the file's shape: the reference server's tables and keys, and ours.
type tomlFile struct {
	Service *struct {
		Address *string `toml:"address"`
		Port    *uint64 `toml:"port"`
		TLS     *bool   `toml:"tls"`
	} `toml:"service"`
	Status *struct {
		Enabled *bool   `toml:"enabled"`
		Address *string `toml:"address"`
		Port    *uint64 `toml:"port"`
		TLS     *bool   `toml:"tls"`
	} `toml:"status"`
	Etcd3 *struct {
		Endpoints    []string `toml:"endpoints"`
		TxnTimeoutMs *uint64  `toml:"transaction_timeout_ms"`
		CertPub      string   `toml:"client_cert_pub_path"`
		CertKey      string   `toml:"client_cert_key_path"`
	} `toml:"etcd3"`
	Lock *struct {
		DefaultGroupName *string `toml:"default_group_name"`
		DefaultSlots     *uint64 `toml:"default_slots"`
		Groups           []struct {
			Name  string  `toml:"name"`
			Slots *uint64 `toml:"slots"`
		} `toml:"groups"`
	} `toml:"lock"`
	Provisioner *struct {
		TLSCertFile string  `toml:"tls_cert_file"`
		TLSKeyFile  string  `toml:"tls_key_file"`
		EtcdCAFile  string  `toml:"etcd_ca_file"`
		HolderTTL   *string `toml:"holder_ttl"`
		Metrics     *bool   `toml:"metrics"`
	} `toml:"provisioner"`
}

// LoadServerConfig reads a configuration file over DefaultServerConfig.
func LoadServerConfig(path string) (ServerConfig, error) {
	var f tomlFile
	md, err := toml.DecodeFile(path, &f)
	if err != nil {
		return ServerConfig{}, fmt.Errorf("reading fleetlock configuration %s: %w", path, err)
	}
	c := DefaultServerConfig()
	for _, k := range md.Undecoded() {
		c.Unknown = append(c.Unknown, k.String())
	}
	if err := c.merge(&f); err != nil {
		return ServerConfig{}, fmt.Errorf("fleetlock configuration %s: %w", path, err)
	}
	return c, nil
}

// merge applies the file's keys over c, with the reference server's rules: groups
// without slots get default_slots, and the default group is always configured.
func (c *ServerConfig) merge(f *tomlFile) error {
	if s := f.Service; s != nil {
		host, port, _ := net.SplitHostPort(c.Listen)
		if s.Address != nil {
			host = *s.Address
		}
		if s.Port != nil {
			port = strconv.FormatUint(*s.Port, 10)
		}
		c.Listen = net.JoinHostPort(host, port)
		if s.TLS != nil && *s.TLS && (f.Provisioner == nil || f.Provisioner.TLSCertFile == "") {
			return fmt.Errorf("[service] tls = true needs [provisioner] tls_cert_file and tls_key_file")
		}
	}
	if s := f.Status; s != nil && s.Enabled != nil && *s.Enabled {
		addr, port := "0.0.0.0", uint64(0)
		if s.Address != nil {
			addr = *s.Address
		}
		if s.Port != nil {
			port = *s.Port
		}
		c.StatusListen = net.JoinHostPort(addr, strconv.FormatUint(port, 10))
	}
	if e := f.Etcd3; e != nil {
		c.EtcdEndpoints = append(c.EtcdEndpoints, e.Endpoints...)
		if e.TxnTimeoutMs != nil {
			c.EtcdTxnTimeout = time.Duration(*e.TxnTimeoutMs) * time.Millisecond
		}
		c.EtcdCertFile, c.EtcdKeyFile = e.CertPub, e.CertKey
	}
	if l := f.Lock; l != nil {
		c.Groups = map[string]uint64{}
		if l.DefaultGroupName != nil {
			c.DefaultGroup = *l.DefaultGroupName
		}
		if l.DefaultSlots != nil {
			c.DefaultSlots = *l.DefaultSlots
		}
		for _, g := range l.Groups {
			c.Groups[g.Name] = c.DefaultSlots
			if g.Slots != nil {
				c.Groups[g.Name] = *g.Slots
			}
		}
		c.Groups[c.DefaultGroup] = c.DefaultSlots
	}
	if p := f.Provisioner; p != nil {
		c.TLSCertFile, c.TLSKeyFile, c.EtcdCAFile = p.TLSCertFile, p.TLSKeyFile, p.EtcdCAFile
		if p.HolderTTL != nil {
			d, err := time.ParseDuration(*p.HolderTTL)
			if err != nil {
				return fmt.Errorf("[provisioner] holder_ttl: %w", err)
			}
			c.HolderTTL = d
		}
		if p.Metrics != nil {
			c.Metrics = *p.Metrics
		}
	}
	return nil
}

// Validate checks what the server cannot run without.
func (c *ServerConfig) Validate() error {
	if len(c.EtcdEndpoints) == 0 {
		return fmt.Errorf("no etcd endpoints ([etcd3] endpoints or --etcd)")
	}
	for g := range c.Groups {
		if !ValidGroup(g) {
			return fmt.Errorf("group %q: a group name must match %s", g, groupPattern)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return fmt.Errorf("TLS needs both a certificate and a key (tls_cert_file %q, tls_key_file %q)", c.TLSCertFile, c.TLSKeyFile)
	}
	if c.EtcdTxnTimeout <= 0 {
		return fmt.Errorf("etcd transaction timeout %v: must be positive", c.EtcdTxnTimeout)
	}
	return nil
}
