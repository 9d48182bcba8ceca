package bootflow

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/engine"
)

func TestParseCmdline(t *testing.T) {
	c, err := ParseCmdline(`BOOT_IMAGE=/vmlinuz console=ttyS0 quiet provisioner.spec=http://10.0.2.2:8080/spec.json provisioner.callback="http://10.0.2.2:8080/events?x=1 y" provisioner.token=s3cret provisioner.after=kexec BOOTIF=01-52-54-00-12-34-56 provisioner.node=rack1-n4 provisioner.agent=:9999` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.SpecURL != "http://10.0.2.2:8080/spec.json" || c.Callback != "http://10.0.2.2:8080/events?x=1 y" || c.Token != "s3cret" ||
		c.After != AfterKexec || c.BootIF.String() != "52:54:00:12:34:56" || c.Node != "rack1-n4" || c.AgentAddr != ":9999" || c.Heartbeat != DefaultHeartbeat {
		t.Errorf("config %+v", c)
	}
	c, err = ParseCmdline("console=ttyS0")
	if err != nil || c.After != AfterReboot || c.SpecURL != "" || c.Heartbeat != 0 || c.BootIF != nil {
		t.Errorf("defaults: %+v %v", c, err)
	}
	c, err = ParseCmdline("provisioner.heartbeat=5 BOOTIF=52:54:00:aa:bb:cc")
	if err != nil || c.Heartbeat != 5*time.Second || c.BootIF.String() != "52:54:00:aa:bb:cc" {
		t.Errorf("heartbeat seconds / plain MAC: %+v %v", c, err)
	}
	for _, bad := range []struct{ line, want string }{
		{"provisioner.after=halt", "provisioner.after"},
		{"provisioner.heartbeat=soon", "provisioner.heartbeat"},
		{"BOOTIF=01-zz", "BOOTIF"},
		{"provisioner.tls_cert=/c.pem", "tls_key"},
	} {
		if _, err := ParseCmdline(bad.line); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: err = %v", bad.line, err)
		}
	}
}

// TestRamdiskReloadWords: the words reload --via-ramdisk writes read back as the same
// reload, and AfterReloadWords keeps everything but the reload's words.
func TestRamdiskReloadWords(t *testing.T) {
	r := engine.RamdiskReload{Image: "b", URL: "http://10.0.2.2:8080/b2.tar.zst", Checksum: "sha256:9f86", Format: "tar.zst",
		ImageUUID: "u-2", ImageName: "B 2", Tries: 2, Report: engine.RamdiskReport{Callback: "http://10.0.2.2:8080/events", Token: "tok", Node: "n4", Agent: ":9999"}}
	line := "BOOT_IMAGE=/ramdisk/vmlinuz console=ttyS0 " + strings.Join(r.Words(), " ")
	c, err := ParseCmdline(line)
	if err != nil {
		t.Fatal(err)
	}
	r.Report = engine.RamdiskReport{}
	if c.Reload == nil || *c.Reload != r || !c.Kept || c.Callback != "http://10.0.2.2:8080/events" || c.Token != "tok" || c.Node != "n4" || c.AgentAddr != ":9999" {
		t.Errorf("parsed %+v, reload %+v", c, c.Reload)
	}
	if got := strings.Join(AfterReloadWords(line), " "); got != "console=ttyS0 provisioner.kept=1 provisioner.callback=http://10.0.2.2:8080/events provisioner.token=tok provisioner.node=n4 provisioner.agent=:9999" {
		t.Errorf("after: %s", got)
	}
	for _, bad := range []struct{ line, want string }{
		{"provisioner.reload=b", "provisioner.url is required"},
		{"provisioner.url=http://x/b", "without provisioner.reload"},
		{"provisioner.reload=b provisioner.url=u provisioner.tries=0", "provisioner.tries"},
		{"provisioner.reload=b provisioner.url=u provisioner.spec=http://x/s.json", "exclude each other"},
	} {
		if _, err := ParseCmdline(bad.line); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: err = %v", bad.line, err)
		}
	}
}

func TestChooseIfaces(t *testing.T) {
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	all := []Iface{
		{Name: "lo", Loopback: true},
		{Name: "eth0", MAC: mac("52:54:00:00:00:01")},
		{Name: "eth1", MAC: mac("52:54:00:00:00:02")},
		{Name: "ib0", MAC: make(net.HardwareAddr, 20)},
	}
	if got, err := chooseIfaces(all, nil); err != nil || strings.Join(got, ",") != "eth0,eth1" {
		t.Errorf("all: %v %v", got, err)
	}
	if got, err := chooseIfaces(all, mac("52:54:00:00:00:02")); err != nil || strings.Join(got, ",") != "eth1" {
		t.Errorf("BOOTIF: %v %v", got, err)
	}
	if _, err := chooseIfaces(all, mac("52:54:00:00:00:09")); err == nil || !strings.Contains(err.Error(), "52:54:00:00:00:09") {
		t.Errorf("unknown BOOTIF: %v", err)
	}
	if _, err := chooseIfaces(all[:1], nil); err == nil {
		t.Error("no interface: no error")
	}
}
