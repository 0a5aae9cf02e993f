package harness

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ClusterName is the etcd_cluster_name the tests use (the default).
const ClusterName = "etcd"

// PKIDir is where etcdplay keeps the cluster's certificates on the
// controller.
func (e *Env) PKIDir() string { return e.pkiDirOf(ClusterName) }

func (e *Env) pkiDirOf(cluster string) string { return filepath.Join(e.StateDir, cluster, "pki") }

// ClientTLS loads the client certificate etcdplay issued for itself, plus
// the cluster CA, straight from the state directory's files.
func (e *Env) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	return e.clientTLSOf(t, ClusterName)
}

func (e *Env) clientTLSOf(t testing.TB, cluster string) *tls.Config {
	t.Helper()
	dir := e.pkiDirOf(cluster)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-etcdplay.crt"), filepath.Join(dir, "client-etcdplay.key"))
	if err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatalf("CA certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// Endpoints are the client URLs of the named lab hosts (all when none).
func (e *Env) Endpoints(hosts ...string) []string {
	var out []string
	for _, h := range e.Lab.Hosts() {
		if len(hosts) == 0 || contains(hosts, h.Name) {
			out = append(out, fmt.Sprintf("https://%s:2379", h.Addr))
		}
	}
	return out
}

// Client is etcd's own v3 client, over TLS with etcdplay's client
// certificate, to the given endpoints (every lab host when none).
func (e *Env) Client(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	if len(endpoints) == 0 {
		endpoints = e.Endpoints()
	}
	return e.ClientOf(t, ClusterName, endpoints...)
}

// ClientOf is Client for the cluster whose etcd_cluster_name is cluster,
// with that cluster's CA and client certificate (an inventory may hold
// several clusters).
func (e *Env) ClientOf(t testing.TB, cluster string, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         e.clientTLSOf(t, cluster),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
