package fleetlock

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
)

// metrics counts requests by endpoint and result; the groups' gauges are read from etcd
// at each scrape, so every replica reports the same state. The Prometheus text format is
// written by hand: a handful of counters and gauges do not warrant a client library and
// its dependencies.
type metrics struct {
	mu       sync.Mutex
	requests map[[2]string]uint64 // {endpoint, result} → count
}

func newMetrics() *metrics { return &metrics{requests: map[[2]string]uint64{}} }

// count records one request's result ("ok" or an error kind).
func (m *metrics) count(endpoint, result string) {
	m.mu.Lock()
	m.requests[[2]string{endpoint, result}]++
	m.mu.Unlock()
}

// labelValue escapes a label value as the text format requires.
func labelValue(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

// write renders every metric. Group gauges are left out when etcd cannot be read, and
// fleetlock_etcd_up says so.
func (m *metrics) write(ctx context.Context, w io.Writer, store Store) {
	header := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	header("fleetlock_requests_total", "counter", "FleetLock requests by endpoint and result (ok or the error kind).")
	m.mu.Lock()
	keys := slices.SortedFunc(maps.Keys(m.requests), func(a, b [2]string) int {
		return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1])
	})
	perEndpoint := map[string]uint64{}
	for _, k := range keys {
		fmt.Fprintf(w, "fleetlock_requests_total{endpoint=%q,result=%q} %d\n", k[0], k[1], m.requests[k])
		perEndpoint[k[0]] += m.requests[k]
	}
	m.mu.Unlock()
	// The reference server's request counters, so that its dashboards keep working.
	header("airlock_v1_pre_reboot_incoming_requests_total", "counter", "Total number of incoming requests to /v1/pre-reboot.")
	fmt.Fprintf(w, "airlock_v1_pre_reboot_incoming_requests_total %d\n", perEndpoint["pre-reboot"])
	header("airlock_v1_steady_state_incoming_requests_total", "counter", "Total number of incoming requests to /v1/steady-state.")
	fmt.Fprintf(w, "airlock_v1_steady_state_incoming_requests_total %d\n", perEndpoint["steady-state"])
	header("fleetlock_cas_conflicts_total", "counter", "Compare-and-swap attempts lost to another writer and retried.")
	fmt.Fprintf(w, "fleetlock_cas_conflicts_total %d\n", store.Conflicts())
	header("fleetlock_holders_expired_total", "counter", "Holders released because they outlived the holder TTL.")
	fmt.Fprintf(w, "fleetlock_holders_expired_total %d\n", store.Expired())

	groups, err := store.Status(ctx)
	header("fleetlock_etcd_up", "gauge", "Whether the last read of the groups from etcd succeeded.")
	if err != nil {
		fmt.Fprintln(w, "fleetlock_etcd_up 0")
		return
	}
	fmt.Fprintln(w, "fleetlock_etcd_up 1")
	configured := 0 // Status lists every configured group
	for _, g := range groups {
		if _, ok := store.Configured(g.Name); ok {
			configured++
		}
	}
	header("airlock_config_groups", "gauge", "Total number of configured groups.")
	fmt.Fprintf(w, "airlock_config_groups %d\n", configured)
	gauge := func(name, help string, value func(GroupStatus) (uint64, bool)) {
		header(name, "gauge", help)
		for _, g := range groups {
			if v, ok := value(g); ok {
				fmt.Fprintf(w, "%s{group=\"%s\"} %d\n", name, labelValue(g.Name), v)
			}
		}
	}
	gauge("airlock_config_semaphore_slots", "Total number of configured slots per group.",
		func(g GroupStatus) (uint64, bool) {
			_, ok := store.Configured(g.Name)
			return g.ConfiguredSlots, ok
		})
	gauge("airlock_database_semaphore_slots", "Total number of slots per group, in the database.",
		func(g GroupStatus) (uint64, bool) { return g.Slots, g.Stored })
	gauge("airlock_database_semaphore_lock_holders", "Total number of locked slots per group, in the database.",
		func(g GroupStatus) (uint64, bool) { return uint64(len(g.Holders)), g.Stored })
}
