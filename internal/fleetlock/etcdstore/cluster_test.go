package etcdstore

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdCluster is a real etcd cluster of Debian's etcd server processes on loopback ports,
// with data in a test's temporary directory.
type etcdCluster struct {
	t       *testing.T
	members []*etcdMember
}

type etcdMember struct {
	name      string
	clientURL string
	cmd       *exec.Cmd
	log       *bytes.Buffer
	mu        sync.Mutex
	done      chan struct{}
}

// freePorts reserves n loopback ports and releases them for etcd to take.
func freePorts(t *testing.T, n int) []int {
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

// startCluster starts an n-member etcd cluster and waits until it answers; it is stopped
// when the test ends. Without an etcd binary the test is skipped.
func startCluster(t *testing.T, n int) *etcdCluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (Debian package etcd-server; `scripts/deps.sh test` installs it)")
	}
	ports := freePorts(t, 2*n)
	dir := t.TempDir()
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	c := &etcdCluster{t: t}
	for i := range n {
		m := &etcdMember{name: fmt.Sprintf("m%d", i), clientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			log: &bytes.Buffer{}, done: make(chan struct{})}
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		m.cmd = exec.Command(bin, "--name", m.name, "--data-dir", filepath.Join(dir, m.name),
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "fleetlock-test", "--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn")
		m.cmd.Stdout, m.cmd.Stderr = m.writer(), m.writer()
		if err := m.cmd.Start(); err != nil {
			t.Fatalf("starting etcd member %s: %v", m.name, err)
		}
		go func() { m.cmd.Wait(); close(m.done) }()
		c.members = append(c.members, m)
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			m.kill()
		}
		if t.Failed() {
			for _, m := range c.members {
				m.mu.Lock()
				t.Logf("etcd %s log:\n%s", m.name, tailOf(m.log.String(), 3000))
				m.mu.Unlock()
			}
		}
	})
	cli := c.client(t)
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

type lockedWriter struct{ m *etcdMember }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	return w.m.log.Write(p)
}

func (m *etcdMember) writer() lockedWriter { return lockedWriter{m} }

// kill stops the member at once (SIGKILL) and waits for it.
func (m *etcdMember) kill() {
	if m.cmd.Process != nil {
		m.cmd.Process.Signal(os.Kill)
	}
	<-m.done
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// endpoints are the members' client URLs.
func (c *etcdCluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// client returns a client on every member, closed when the test ends.
func (c *etcdCluster) client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// leader returns the member that leads the cluster now.
func (c *etcdCluster) leader(t *testing.T) *etcdMember {
	t.Helper()
	cli := c.client(t)
	for _, m := range c.members {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, m.clientURL)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return m
		}
	}
	t.Fatal("no etcd member says it leads")
	return nil
}
