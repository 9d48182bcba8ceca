package etcdstore

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/provisioner/provisioner/internal/fleetlock"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ClientConfig is the etcd client's configuration for a server configuration: endpoints,
// the transaction timeout as dial timeout, and the client certificate (TLS) when set.
func ClientConfig(c fleetlock.ServerConfig) (clientv3.Config, error) {
	cc := clientv3.Config{Endpoints: c.EtcdEndpoints, DialTimeout: c.EtcdTxnTimeout}
	if c.EtcdCertFile == "" && c.EtcdCAFile == "" {
		return cc, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.EtcdCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.EtcdCertFile, c.EtcdKeyFile)
		if err != nil {
			return cc, fmt.Errorf("etcd client certificate %s: %w", c.EtcdCertFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if c.EtcdCAFile != "" {
		pem, err := os.ReadFile(c.EtcdCAFile)
		if err != nil {
			return cc, fmt.Errorf("etcd CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return cc, fmt.Errorf("etcd CA file %s: no PEM certificate", c.EtcdCAFile)
		}
	}
	cc.TLS = tc
	return cc, nil
}

// Dial connects an etcd client as the configuration says; the caller closes it. etcd is
// not contacted yet: the first request finds out whether it answers.
func Dial(c fleetlock.ServerConfig) (*clientv3.Client, error) {
	cc, err := ClientConfig(c)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", c.EtcdEndpoints, err)
	}
	return cli, nil
}
