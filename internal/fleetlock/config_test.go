package fleetlock

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// referenceConfig has every table and key of the reference server's configuration file.
const referenceConfig = `
[status]
enabled = true
address = "127.0.0.1"
port = 2222
tls = false

[service]
address = "127.0.0.1"
port = 3333
tls = false

[etcd3]
endpoints = [ "http://127.0.0.1:2379", "http://127.0.0.2:2379" ]
transaction_timeout_ms = 1500
client_cert_pub_path = "/etc/fleetlock/etcd.crt"
client_cert_key_path = "/etc/fleetlock/etcd.key"

[lock]
default_group_name = "default"
default_slots = 2

[[lock.groups]]
name = "workers"

[[lock.groups]]
name = "controllers"
slots = 1
`

func writeServerConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadReferenceConfig(t *testing.T) {
	c, err := LoadServerConfig(writeServerConfig(t, referenceConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:3333" || c.StatusListen != "127.0.0.1:2222" || c.EtcdTxnTimeout != 1500*time.Millisecond ||
		!slices.Equal(c.EtcdEndpoints, []string{"http://127.0.0.1:2379", "http://127.0.0.2:2379"}) ||
		c.EtcdCertFile != "/etc/fleetlock/etcd.crt" || c.EtcdKeyFile != "/etc/fleetlock/etcd.key" ||
		!maps.Equal(c.Groups, map[string]uint64{"default": 2, "workers": 2, "controllers": 1}) ||
		!c.Metrics || c.HolderTTL != 0 || len(c.Unknown) != 0 {
		t.Errorf("config %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestLoadConfigAdditions(t *testing.T) {
	c, err := LoadServerConfig(writeServerConfig(t, `
[service]
port = 8443
tls = true
[etcd3]
endpoints = ["https://etcd:2379"]
[provisioner]
tls_cert_file = "s.crt"
tls_key_file = "s.key"
holder_ttl = "36h"
metrics = false
typo = 1
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:8443" || c.TLSCertFile != "s.crt" || c.HolderTTL != 36*time.Hour || c.Metrics ||
		!maps.Equal(c.Groups, map[string]uint64{"default": 1}) || !slices.Equal(c.Unknown, []string{"provisioner.typo"}) {
		t.Errorf("config %+v", c)
	}
	for _, bad := range []string{"[service]\ntls = true\n", "[provisioner]\nholder_ttl = \"soon\"\n", "[lock\n"} {
		if _, err := LoadServerConfig(writeServerConfig(t, bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	c = DefaultServerConfig()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "etcd") {
		t.Errorf("no endpoints: %v", err)
	}
	c.EtcdEndpoints = []string{"x"}
	c.Groups["a/b"] = 1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `"a/b"`) {
		t.Errorf("bad group: %v", err)
	}
}
