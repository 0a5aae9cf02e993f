// Package etcdclient is how the controller talks to a cluster the model
// (modules/etcd) describes: clients over the hosts' SSH connections with
// etcdplay's client certificate, the health check every disruptive step
// gates on, the certificate a member serves, a client through a proxy.
// The model stays free of network I/O, so the compiler can build and
// check it before any connection.
package etcdclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// DialFunc opens a TCP connection to addr ("host:port").
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// ClientTLS loads the etcdplay client certificate, its key and the cluster
// CA from the controller state directory (written by etcd_pki). It returns
// nil, nil for a plain-HTTP cluster.
func ClientTLS(c *etcd.Cluster, stateDir string) (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	pki := c.PKI(stateDir)
	crt, key := pki.Client(etcd.EtcdplayClientCN)
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("etcdplay client certificate (run etcd_pki first): %w", err)
	}
	caPEM, err := os.ReadFile(pki.CACert())
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster CA %s holds no PEM certificate", pki.CACert())
	}
	// In a CA rotation, members serve certificates of either CA.
	if next, err := os.ReadFile(pki.NextCACert()); err == nil {
		pool.AppendCertsFromPEM(next)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// NewClient connects to every member's client URL. dial (may be nil for
// direct connections) carries each connection, typically RemoteDialer so
// the client port need not be reachable from the controller.
func NewClient(ctx context.Context, c *etcd.Cluster, stateDir string, dial DialFunc) (*clientv3.Client, error) {
	return newClient(ctx, c, stateDir, dial, c.Endpoints())
}

// NewMemberClient connects to one member only: what health and status
// need, since a multi-endpoint client answers from whichever member it
// picked.
func NewMemberClient(ctx context.Context, c *etcd.Cluster, m etcd.Member, stateDir string, dial DialFunc) (*clientv3.Client, error) {
	return newClient(ctx, c, stateDir, dial, []string{m.ClientURL})
}

func newClient(ctx context.Context, c *etcd.Cluster, stateDir string, dial DialFunc, endpoints []string) (*clientv3.Client, error) {
	tlsCfg, err := ClientTLS(c, stateDir)
	if err != nil {
		return nil, err
	}
	cfg := clientv3.Config{
		Endpoints: endpoints,
		TLS:       tlsCfg,
		Context:   ctx,
		// The client logs every retry at warn level to stderr by default,
		// which would interleave with etcdplay's own output.
		Logger: zap.NewNop(),
		// Non-blocking: a down member shows up as a failed request with
		// its dial error, not as a constructor that hangs.
		DialTimeout: 0,
	}
	if dial != nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(dial)}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// RemoteDialer routes a connection to a member's client address through
// that member's own host (its SSH connection), and anything else directly.
// Going through the member's host works whatever the firewall between the
// controller and the cluster allows, and it is the same path on the lab
// and in production.
func RemoteDialer(c *etcd.Cluster, hosts map[string]modules.Host) DialFunc {
	byAddr := map[string]modules.Host{}
	for _, m := range c.Members {
		r, ok := hosts[m.Host]
		if !ok || r == nil {
			continue
		}
		// The peer URL too: checking what certificate a member serves
		// there must not depend on the controller reaching port 2380.
		for _, raw := range []string{m.ClientURL, m.PeerURL} {
			if u, err := url.Parse(raw); err == nil {
				byAddr[u.Host] = r
			}
		}
	}
	// A client host reaches every member (its proxy must): a play of
	// client hosts only talks to the cluster through one of them.
	var via modules.Host
	for _, px := range c.Proxies {
		if r, ok := hosts[px.Host]; ok && r != nil {
			via = r
			break
		}
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if r, ok := byAddr[addr]; ok {
			// The remote names the address and the host in its errors.
			return r.Dial(ctx, "tcp", addr)
		}
		if via != nil && len(byAddr) == 0 {
			return via.Dial(ctx, "tcp", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// dialRecorder remembers the last dial error, so a request that timed out
// waiting for a connection can say why ("connection refused") instead of
// "context deadline exceeded".
type dialRecorder struct {
	dial DialFunc
	mu   sync.Mutex
	err  error
	// onErr, when set, runs after a failed dial: the probe gives up at
	// once instead of letting gRPC retry until its deadline.
	onErr func()
}

// arm readies d for a probe: a failed dial from now on ends it (onErr),
// and explain speaks of this probe's dials only. A kept client's dialer
// is armed anew by every probe that uses it.
func (d *dialRecorder) arm(onErr func()) {
	d.mu.Lock()
	d.onErr, d.err = onErr, nil
	d.mu.Unlock()
}

func (d *dialRecorder) Dial(ctx context.Context, addr string) (net.Conn, error) {
	dial := d.dial
	if dial == nil {
		var nd net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return nd.DialContext(ctx, "tcp", addr) }
	}
	conn, err := dial(ctx, addr)
	d.mu.Lock()
	d.err = err
	onErr := d.onErr
	d.mu.Unlock()
	if err != nil && onErr != nil {
		onErr()
	}
	return conn, err
}

func (d *dialRecorder) explain(err error) error {
	if err == nil {
		return nil
	}
	d.mu.Lock()
	derr := d.err
	d.mu.Unlock()
	if derr != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || isUnavailable(err)) {
		return derr
	}
	return err
}

// defaultProbeTimeout bounds one health probe of one member.
const defaultProbeTimeout = 3 * time.Second

// VersionInfo is what a member's /version endpoint says: its own server
// version and the cluster version (the minor every member speaks; it moves
// up only when all members run the new minor).
type VersionInfo struct {
	Server  string `json:"etcdserver"`
	Cluster string `json:"etcdcluster"`
}

// MemberVersion reads m's /version over its client URL (through dial, with
// the etcdplay client certificate on a TLS cluster). clientv3 has no call
// for the cluster version; etcdctl reads the same endpoint.
func MemberVersion(ctx context.Context, c *etcd.Cluster, m etcd.Member, stateDir string, dial DialFunc) (VersionInfo, error) {
	var v VersionInfo
	tlsCfg, err := ClientTLS(c, stateDir)
	if err != nil {
		return v, err
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}
	if dial != nil {
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(m.ClientURL, "/")+"/version", nil)
	if err != nil {
		return v, err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("GET %s/version: %s", m.ClientURL, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v); err != nil {
		return v, fmt.Errorf("GET %s/version: %w", m.ClientURL, err)
	}
	return v, nil
}
