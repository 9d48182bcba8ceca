package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/schema"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "provisioner agent test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func getStatus(client *http.Client, url string) (int, error) {
	req, err := http.NewRequest("GET", url+"/v1/status", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, err
	}
	if st.State != StateIdle {
		return 0, errors.New("state " + st.State)
	}
	return resp.StatusCode, nil
}

func TestServeTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	addr := freeAddr(t)
	s := &Server{Agent: &Agent{}, Token: testToken}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, addr, certFile, keyFile) }()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	var code int
	waitFor(t, "the TLS server", func() bool {
		select {
		case err := <-served:
			t.Fatalf("Serve returned early: %v", err)
		default:
		}
		var err error
		code, err = getStatus(client, "https://"+addr)
		return err == nil
	})
	if code != http.StatusOK {
		t.Errorf("status over TLS: %d", code)
	}
	// Plain HTTP to the TLS port is not served.
	if _, err := getStatus(&http.Client{Timeout: 5 * time.Second}, "http://"+addr); err == nil {
		t.Error("plain HTTP answered on the TLS port")
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after ctx ended")
	}
}

func TestServeChecks(t *testing.T) {
	ctx := t.Context()
	if err := (&Server{Agent: &Agent{}}).Serve(ctx, "127.0.0.1:0", "", ""); !errors.Is(err, ErrNoToken) {
		t.Errorf("Serve without token: %v, want ErrNoToken", err)
	}
	if err := (&Server{Agent: &Agent{}, Token: "x"}).Serve(ctx, "127.0.0.1:0", "cert.pem", ""); err == nil {
		t.Error("Serve with a certificate and no key succeeded")
	}
	if err := (&Server{Token: "x"}).Serve(ctx, "127.0.0.1:0", "", ""); err == nil {
		t.Error("Serve without an agent succeeded")
	}
	if err := (&Server{Agent: &Agent{}, Token: "x"}).Serve(ctx, "256.0.0.1:http", "", ""); err == nil {
		t.Error("Serve on a bad address succeeded")
	}
}

// TestServeDeployOutlivesRequest serves plain HTTP on a listener and checks that a
// deploy accepted through it runs under Serve's context: it ends with it.
func TestServeDeployOutlivesRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeDeploy()
	a := &Agent{Deploy: f.deploy}
	s := &Server{Agent: a, Token: testToken}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.ServeListener(ctx, ln, "", "") }()
	url := "http://" + ln.Addr().String()
	req, _ := http.NewRequest("POST", url+"/v1/deploy", strings.NewReader(validSpec))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("deploy: %d", resp.StatusCode)
	}
	<-f.started
	if st := a.Status(); st.State != StateDeploying {
		t.Fatalf("state after the request: %s", st.State)
	}
	cancel() // ends the server and, with it, the deploy
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	waitFor(t, "the deploy to end with Serve's context", func() bool { return a.Status().State == StateFailed })
	if st := a.Status(); st.Error != context.Canceled.Error() {
		t.Errorf("deploy error %q", st.Error)
	}
}

// TestWaitOutlastsACancelledDeploy: when Serve's context ends (the agent got a signal),
// Serve stops at once, but the deploy it started is still cleaning up; Wait returns only
// once that deploy has ended and is recorded as failed.
func TestWaitOutlastsACancelledDeploy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var cleaned atomic.Bool
	a := &Agent{Deploy: func(ctx context.Context, spec *schema.Spec, events func(engine.Event)) (*engine.DeployResult, error) {
		close(started)
		<-ctx.Done()
		time.Sleep(300 * time.Millisecond) // unmounting, erasing, detaching
		cleaned.Store(true)
		return nil, context.Cause(ctx)
	}}
	a.Wait() // nothing started: returns at once
	s := &Server{Agent: a, Token: testToken}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.ServeListener(ctx, ln, "", "") }()
	req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/v1/deploy", strings.NewReader(validSpec))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-started
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	a.Wait()
	if !cleaned.Load() {
		t.Error("Wait returned before the deploy's cleanup ended")
	}
	if st := a.Status(); st.State != StateFailed || st.Error != context.Canceled.Error() {
		t.Errorf("after Wait: state %s, error %q", st.State, st.Error)
	}
}
