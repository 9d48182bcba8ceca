package fleetlock

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// NodeConfigFile is where a node keeps its FleetLock client configuration; the node
// tools write it when the spec gives a FleetLock URL.
const NodeConfigFile = "/etc/provisioner/fleetlock.toml"

// DefaultLockTimeout is how long a reboot waits for a slot unless told otherwise.
const DefaultLockTimeout = 30 * time.Minute

// NodeConfig is a node's FleetLock client configuration, a TOML file:
//
//	base_url = "http://fleetlock.example:8080/"
//	group = "workers"
//	id = "..."             # optional: default derived from the system UUID or machine id (NodeID)
//	lock_timeout = "30m"   # optional: default DefaultLockTimeout
//
// Without base_url (or without the file) the provisioner's reboots take no slot.
type NodeConfig struct {
	BaseURL     string        `toml:"base_url"`
	Group       string        `toml:"group"`
	ID          string        `toml:"id"`
	LockTimeout time.Duration `toml:"lock_timeout"`
}

// LoadNodeConfig reads the configuration file at path. A file that does not exist is
// an empty configuration (no FleetLock); an unknown key or a bad value is an error
// naming the file and the key.
func LoadNodeConfig(path string) (NodeConfig, error) {
	var c NodeConfig
	md, err := toml.DecodeFile(path, &c)
	if errors.Is(err, fs.ErrNotExist) {
		return NodeConfig{}, nil
	}
	if err != nil {
		return NodeConfig{}, fmt.Errorf("fleetlock configuration %s: %w", path, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		keys := make([]string, len(u))
		for i, k := range u {
			keys[i] = k.String()
		}
		slices.Sort(keys)
		return NodeConfig{}, fmt.Errorf("fleetlock configuration %s: unknown key %s (known: base_url, group, id, lock_timeout)", path, strings.Join(keys, ", "))
	}
	if err := c.Validate(); err != nil {
		return NodeConfig{}, fmt.Errorf("fleetlock configuration %s: %w", path, err)
	}
	return c, nil
}

// Validate checks the values: an http or https base URL with a host, a group the
// protocol allows, a timeout of 0 or more.
func (c NodeConfig) Validate() error {
	if c.BaseURL != "" {
		if err := CheckBaseURL(c.BaseURL); err != nil {
			return fmt.Errorf("base_url: %w", err)
		}
	}
	if c.Group != "" && !ValidGroup(c.Group) {
		return fmt.Errorf("group %q: want letters, digits, '.' and '-' only", c.Group)
	}
	if c.LockTimeout < 0 {
		return fmt.Errorf("lock_timeout %v: want 0 or more", c.LockTimeout)
	}
	return nil
}

// CheckBaseURL fails unless u is an http or https URL with a host.
func CheckBaseURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%q: %w", u, err)
	}
	if p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
		return fmt.Errorf("%q: want an http:// or https:// URL with a host", u)
	}
	return nil
}

// Timeout is the lock timeout with its default applied.
func (c NodeConfig) Timeout() time.Duration {
	if c.LockTimeout == 0 {
		return DefaultLockTimeout
	}
	return c.LockTimeout
}

// Client makes the client this configuration describes, its id derived from src (see
// NodeID) unless the configuration sets one; nil when it has no base URL (no slot to
// take).
func (c NodeConfig) Client(src IDSources) (*Client, error) {
	if c.BaseURL == "" {
		return nil, nil
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	id := c.ID
	if id == "" {
		var err error
		if id, err = NodeID(src); err != nil {
			return nil, err
		}
	}
	return &Client{BaseURL: c.BaseURL, ID: id, Group: c.Group}, nil
}
