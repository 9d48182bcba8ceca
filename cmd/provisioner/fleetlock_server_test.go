//go:build !nofleetlockserver

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/provisioner/provisioner/internal/fleetlock/etcdtest"
)

// startEtcd starts a one-member etcd for the test and returns its client URL; without
// an etcd binary the test is skipped.
func startEtcd(t *testing.T) string {
	t.Helper()
	return etcdtest.Start(t, 1).Endpoints()[0]
}

// TestFleetlockServeStatusRelease runs serve in-process with a configuration file and
// flags over it, takes slots over HTTP, and reads them back with status (from etcd and
// from the server) and frees one with release.
func TestFleetlockServeStatusRelease(t *testing.T) {
	etcd := startEtcd(t)
	cfg := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(cfg, []byte(`
[service]
address = "127.0.0.1"
port = 1
[status]
enabled = true
address = "127.0.0.1"
port = 0
[etcd3]
endpoints = ["http://127.0.0.1:1"]
[lock]
default_slots = 2
[[lock.groups]]
name = "workers"
slots = 1
[provisioner]
holder_ttl = "1h"
`), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"fleetlock", "serve", "--config", cfg, "--etcd", etcd, "--listen", "127.0.0.1:0", "--group", "db=3"}, nil, &out, &errw)
	}()
	var addr, statusAddr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" || statusAddr == ""; {
		for _, line := range strings.Split(errw.String(), "\n") {
			var rec struct{ Msg, Address, Service string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				if rec.Service == "status" {
					statusAddr = rec.Address
				} else {
					addr = rec.Address
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen: %s", errw.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	base := "http://" + addr
	for url, want := range map[string]int{"http://" + statusAddr + "/metrics": 200, "http://" + statusAddr + "/healthz": 200,
		"http://" + statusAddr + "/v1/groups": 404, base + "/metrics": 200} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", url, resp.StatusCode, want)
		}
	}
	for _, id := range []string{"n1", "n2"} {
		req, _ := http.NewRequest(http.MethodPost, base+fleetlock.PreRebootPath, strings.NewReader(`{"client_params":{"id":"`+id+`","group":"workers"}}`))
		req.Header.Set(fleetlock.HeaderName, "true")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[string]int{"n1": 200, "n2": 500}[id]; resp.StatusCode != want {
			t.Errorf("lock %s: %d, want %d", id, resp.StatusCode, want)
		}
	}

	var stdout, stderr bytes.Buffer
	if code := run([]string{"fleetlock", "status", "--server", base + "/", "--json"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("status --server: %d %s", code, stderr.String())
	}
	var groups fleetlock.GroupsResponse
	if err := json.Unmarshal(stdout.Bytes(), &groups); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range groups.Groups {
		names = append(names, fmt.Sprintf("%s:%d/%d:%d", g.Name, g.Slots, g.ConfiguredSlots, len(g.Holders)))
	}
	if got := strings.Join(names, " "); got != "db:3/3:0 default:2/2:0 workers:1/1:1" {
		t.Errorf("status --server: %s", got)
	}
	stdout.Reset()
	if code := run([]string{"fleetlock", "status", "--etcd", etcd}, nil, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "group workers: 1 of 1 slots held\n  n1  since ") {
		t.Errorf("status --etcd: %d %q %s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"fleetlock", "release", "n1", "--group", "workers", "--etcd", etcd}, nil, &stdout, &stderr); code != 0 ||
		stdout.String() != "released n1's slot of group workers\n" {
		t.Errorf("release: %d %q %s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"fleetlock", "release", "n1", "--group", "workers", "--etcd", etcd}, nil, &stdout, &stderr); code != 0 ||
		stdout.String() != "n1 held no slot of group workers\n" {
		t.Errorf("release again: %d %q", code, stdout.String())
	}
	if code := run([]string{"fleetlock", "release", "n1", "--group", "a/b", "--etcd", etcd}, nil, &stdout, &stderr); code != 1 {
		t.Errorf("release with a bad group: exit %d", code)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d: %s", code, errw.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	for _, want := range []string{`"msg":"slot granted","group":"workers","id":"n1"`, `"msg":"request refused"`, `"holder_ttl":"1h0m0s"`} {
		if !strings.Contains(errw.String(), want) {
			t.Errorf("serve's log lacks %s:\n%s", want, errw.String())
		}
	}
}

func TestFleetlockServeUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"fleetlock", "serve"}, nil, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "no etcd endpoints") {
		t.Errorf("serve without etcd: %d %s", code, stderr.String())
	}
	if code := run([]string{"fleetlock", "serve", "--etcd", "http://127.0.0.1:1", "--group", "x"}, nil, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "NAME=SLOTS") {
		t.Errorf("serve with a bad --group: %d %s", code, stderr.String())
	}
}

// TestFleetlockServeTLS serves HTTPS with --tls-cert and --tls-key.
func TestFleetlockServeTLS(t *testing.T) {
	etcd := startEtcd(t)
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "s.crt"), filepath.Join(dir, "s.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"fleetlock", "serve", "--etcd", etcd, "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile}, nil, &out, &errw)
	}()
	defer func() { cancel(); <-done }()
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(20 * time.Millisecond) {
		for _, line := range strings.Split(errw.String(), "\n") {
			var rec struct {
				Msg, Address string
				TLS          bool
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" && rec.TLS {
				addr = rec.Address
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen with TLS: %s", errw.String())
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(mustParseCert(t, der))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+fleetlock.PreRebootPath, strings.NewReader(`{"client_params":{"id":"n1","group":"default"}}`))
	req.Header.Set(fleetlock.HeaderName, "true")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("HTTPS request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HTTPS lock: %d", resp.StatusCode)
	}
}

func mustParseCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
