// Package etcdtest starts real etcd clusters for tests: Debian's etcd server as
// processes on loopback ports, with their data in the test's temporary directory, so
// that the FleetLock store, the server's commands and the QEMU scenarios all run against
// the etcd operators run, not a stand-in.
package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/run"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster is a real etcd cluster of Debian's etcd server processes on loopback ports,
// with data in a test's temporary directory.
type Cluster struct {
	// Members are the cluster's members, in the order they were started.
	Members []*Member
}

// Member is one etcd server process.
type Member struct {
	// Name is the member's name (m0, m1, ...); ClientURL is where clients reach it.
	Name      string
	ClientURL string
	proc      *run.Process
	log       *bytes.Buffer
	mu        sync.Mutex
}

// freePorts reserves n loopback ports and releases them for etcd to take.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserving a loopback port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Start starts an n-member etcd cluster and waits until it answers; it is stopped
// when the test ends. Without an etcd binary the test is skipped.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin, err := run.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (Debian package etcd-server; `scripts/deps.sh test` installs it)")
	}
	ports := freePorts(t, 2*n)
	dir := t.TempDir()
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	c := &Cluster{}
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			log: &bytes.Buffer{}}
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		argv := []string{bin, "--name", m.Name, "--data-dir", filepath.Join(dir, m.Name),
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "fleetlock-test", "--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"}
		if m.proc, err = run.Start(argv, m.writer(), m.writer()); err != nil {
			t.Fatalf("starting etcd member %s: %v", m.Name, err)
		}
		c.Members = append(c.Members, m)
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
		}
		if t.Failed() {
			for _, m := range c.Members {
				m.mu.Lock()
				t.Logf("etcd %s log:\n%s", m.Name, tailOf(m.log.String(), 3000))
				m.mu.Unlock()
			}
		}
	})
	cli := c.Client(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd cluster not healthy after 20s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// lockedWriter appends a member's output to its log under the member's lock.
type lockedWriter struct{ m *Member }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	return w.m.log.Write(p)
}

func (m *Member) writer() lockedWriter { return lockedWriter{m} }

// Kill stops the member at once (SIGKILL) and waits for it.
func (m *Member) Kill() {
	m.proc.Kill()
}

// tailOf is the last n bytes of s.
func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Client returns a client on every member, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Leader returns the member that leads the cluster now.
func (c *Cluster) Leader(t testing.TB) *Member {
	t.Helper()
	cli := c.Client(t)
	for _, m := range c.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return m
		}
	}
	t.Fatal("no etcd member says it leads")
	return nil
}
