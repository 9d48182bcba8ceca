package bootflow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
)

// linkUpTimeout bounds how long an interface may take to come up (a real NIC negotiating
// its link takes a few seconds; QEMU's is up at once).
const linkUpTimeout = 20 * time.Second

// Iface is what choosing an interface needs to know about it.
type Iface struct {
	Name     string
	MAC      net.HardwareAddr
	Loopback bool
}

// chooseIfaces picks the interfaces to run DHCP on: the one with the BOOTIF MAC when
// given (an error if none has it: the conductor said which NIC PXE-booted, and another
// may be on a network that must not be used), else every Ethernet interface.
func chooseIfaces(all []Iface, bootIF net.HardwareAddr) ([]string, error) {
	var out []string
	for _, i := range all {
		if i.Loopback || len(i.MAC) != 6 {
			continue
		}
		if bootIF != nil {
			if bytes.Equal(i.MAC, bootIF) {
				return []string{i.Name}, nil
			}
			continue
		}
		out = append(out, i.Name)
	}
	if bootIF != nil {
		return nil, fmt.Errorf("no network interface has the BOOTIF address %s", bootIF)
	}
	if len(out) == 0 {
		return nil, errors.New("no Ethernet interface")
	}
	return out, nil
}

// Network configures the network with DHCPv4: on the BOOTIF interface, or on every
// Ethernet interface, keeping the first lease of each. The link is brought up before
// DISCOVER is sent (a DHCP client started on a down link waits for nothing).
func Network(ctx context.Context, bootIF net.HardwareAddr, log *slog.Logger) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("listing network interfaces: %w", err)
	}
	var all []Iface
	byName := map[string]netlink.Link{}
	for _, l := range links {
		a := l.Attrs()
		all = append(all, Iface{Name: a.Name, MAC: a.HardwareAddr, Loopback: a.Flags&net.FlagLoopback != 0})
		byName[a.Name] = l
	}
	if lo, ok := byName["lo"]; ok {
		// Local services (the agent on 127.0.0.1) need the loopback up too.
		netlink.LinkSetUp(lo)
	}
	names, err := chooseIfaces(all, bootIF)
	if err != nil {
		return err
	}
	var ifs []netlink.Link
	for _, n := range names {
		ifs = append(ifs, byName[n])
	}
	log.Info("DHCP", "interfaces", names)
	configured := 0
	var errs []error
	for res := range dhclient.SendRequests(ctx, ifs, true, false, dhclient.Config{Timeout: 5 * time.Second, Retries: 5}, linkUpTimeout) {
		name := res.Interface.Attrs().Name
		if res.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, res.Err))
			continue
		}
		if err := res.Lease.Configure(); err != nil {
			errs = append(errs, fmt.Errorf("%s: configuring the lease: %w", name, err))
			continue
		}
		log.Info("network configured", "interface", name, "lease", res.Lease.String())
		configured++
	}
	if configured == 0 {
		return fmt.Errorf("DHCP on %v: %w", names, errors.Join(errs...))
	}
	return nil
}
