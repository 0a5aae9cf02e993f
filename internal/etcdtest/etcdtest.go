// Package etcdtest runs a real multi-member etcd cluster in-process, over
// TLS with client-certificate auth, laid out the way etcd_pki lays out the
// controller state directory. Only tests import it, so the etcd server
// never links into the etcdplay binary.
package etcdtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// Cluster is a running test cluster and the etcdplay model describing it.
type Cluster struct {
	Model    *etcd.Cluster
	Vars     map[string]any // the host vars FromVars read (inventory_hostname = first member)
	StateDir string
	servers  []*embed.Etcd
	cfgs     []*embed.Config
	t        testing.TB
}

// Start boots an n-member cluster on 127.0.0.1 and stops it when t ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	stateDir := t.TempDir()
	hosts := make([]any, n)
	hostvars := map[string]any{}
	ports := freePorts(t, 2*n)
	for i := range n {
		h := fmt.Sprintf("etcd%d", i+1)
		hosts[i] = h
		hostvars[h] = map[string]any{
			"etcd_address":     "127.0.0.1",
			"etcd_client_port": ports[2*i],
			"etcd_peer_port":   ports[2*i+1],
		}
	}
	vars := map[string]any{
		"inventory_hostname": "etcd1",
		"groups":             map[string]any{"etcd": hosts},
		"hostvars":           hostvars,
	}
	model, err := etcd.FromVars(vars)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Model: model, Vars: vars, StateDir: stateDir, t: t}
	pki := model.PKI(stateDir)
	writePKI(t, pki, model)
	for _, m := range model.Members {
		cfg := embed.NewConfig()
		cfg.Name = m.Name
		cfg.Dir = filepath.Join(stateDir, "data", m.Name)
		cfg.LogLevel = "error"
		// Stopping members on purpose makes the server log errors: keep
		// test output to the test.
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.ListenClientUrls = []url.URL{mustURL(m.ClientURL)}
		cfg.AdvertiseClientUrls = cfg.ListenClientUrls
		// Peers talk plain HTTP: the tests are about the client side.
		peer := mustURL("http://" + mustURL(m.PeerURL).Host)
		cfg.ListenPeerUrls = []url.URL{peer}
		cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
		cfg.InitialClusterToken = "test"
		cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile = pki.Server(m.Name)
		cfg.ClientTLSInfo.TrustedCAFile = pki.CACert()
		cfg.ClientTLSInfo.ClientCertAuth = true
		cfg.TickMs, cfg.ElectionMs = 20, 200
		c.cfgs = append(c.cfgs, cfg)
	}
	ic := ""
	for i, m := range model.Members {
		if i > 0 {
			ic += ","
		}
		ic += m.Name + "=http://" + mustURL(m.PeerURL).Host
	}
	for _, cfg := range c.cfgs {
		cfg.InitialCluster = ic
	}
	c.servers = make([]*embed.Etcd, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			e, err := embed.StartEtcd(c.cfgs[i])
			c.servers[i] = e
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			if s != nil {
				s.Close()
			}
		}
	})
	for i := range n {
		c.waitReady(i)
	}
	return c
}

func (c *Cluster) waitReady(i int) {
	select {
	case <-c.servers[i].Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		c.t.Fatalf("etcd member %d not ready after 20s", i)
	}
}

// Stop stops member i (0-based) as if its host went down.
func (c *Cluster) Stop(i int) {
	c.servers[i].Close()
	c.servers[i] = nil
}

// Restart starts a stopped member i again from its data dir.
func (c *Cluster) Restart(i int) {
	if c.servers[i] != nil {
		c.servers[i].Close()
		// Nil before a failed start ends the test: Cleanup must not
		// close it twice (embed panics on a second Close).
		c.servers[i] = nil
	}
	cfg := c.cfgs[i]
	cfg.ClusterState = embed.ClusterStateFlagExisting
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.servers[i] = e
	c.waitReady(i)
}

// ID returns member i's etcd member id.
func (c *Cluster) ID(i int) uint64 { return uint64(c.servers[i].Server.MemberID()) }

// Client is a client of the cluster as the controller connects (its
// client certificate, every member's endpoint), closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli, err := etcdclient.NewClient(context.Background(), c.Model, c.StateDir, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// LeaderIndex returns the index of the current leader, or -1.
func (c *Cluster) LeaderIndex() int {
	for i, s := range c.servers {
		if s != nil && uint64(s.Server.Leader()) == uint64(s.Server.MemberID()) {
			return i
		}
	}
	return -1
}

// freePorts picks n distinct free ports below the kernel's ephemeral
// range. A member restarted by a test rebinds its ports after they were
// free for a moment; a port from the ephemeral range could be handed in
// that moment to any process's bind of port 0 or outgoing connection (in
// CI, another test package's: "bind: address already in use"). Below the
// range only another explicit pick can take it. Every listener stays
// open until all are picked, so no port is picked twice.
func freePorts(t testing.TB, n int) []int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 2048 {
				low = v
			}
		}
	}
	base := max(1024, low-16384)
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatalf("no %d free ports in %d-%d", n, base, low-1)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+mrand.IntN(low-base)))
		if err != nil {
			continue
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func mustURL(s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return *u
}

// writePKI issues a CA, a server certificate per member (IP SAN
// 127.0.0.1) and the etcdplay client certificate into the state dir.
func writePKI(t testing.TB, pki etcd.StatePKI, model *etcd.Cluster) {
	t.Helper()
	if err := os.MkdirAll(pki.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	caKey, caCert := issue(t, nil, nil, "etcdplay test CA", true, 0)
	writePair(t, pki.CACert(), pki.CAKey(), caCert, caKey)
	srvKey, srvCert := issue(t, caCert, caKey, "server", false, x509.ExtKeyUsageServerAuth)
	// Every member can share one server pair: the SANs are the same.
	for _, m := range model.Members {
		crt, key := pki.Server(m.Name)
		writePair(t, crt, key, srvCert, srvKey)
	}
	cliKey, cliCert := issue(t, caCert, caKey, etcd.EtcdplayClientCN, false, x509.ExtKeyUsageClientAuth)
	crt, key := pki.Client(etcd.EtcdplayClientCN)
	writePair(t, crt, key, cliCert, cliKey)
}

func issue(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, ca bool, usage x509.ExtKeyUsage) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func writePair(t testing.TB, crtPath, keyPath string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crtPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}
