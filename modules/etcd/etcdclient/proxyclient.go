package etcdclient

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// ProxyClient is an etcd client that goes through the proxy, connecting
// from the proxy's own host (its SSH connection), as a local application
// would. It presents the etcdplay client certificate: a TLS grpc-proxy
// checks it, and behind a gateway the members do.
func ProxyClient(ctx context.Context, c *etcd.Cluster, px etcd.Proxy, stateDir string, h modules.Host) (*clientv3.Client, error) {
	var tlsCfg *tls.Config
	if px.TLS || (px.Mode == etcd.ProxyGateway && c.TLS) {
		var err error
		if tlsCfg, err = ClientTLS(c, stateDir); err != nil {
			return nil, err
		}
	}
	scheme := "http://"
	if tlsCfg != nil {
		scheme = "https://"
	}
	return clientv3.New(clientv3.Config{
		Endpoints: []string{scheme + px.DialAddr()},
		TLS:       tlsCfg,
		Context:   ctx,
		Logger:    zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return h.Dial(ctx, "tcp", addr)
		})},
	})
}

// ProxyServing reads one key through the proxy: a linearizable read, so it
// passes only when the proxy reaches a member with a leader.
func ProxyServing(ctx context.Context, c *etcd.Cluster, px etcd.Proxy, stateDir string, h modules.Host) error {
	cli, err := ProxyClient(ctx, c, px, stateDir, h)
	if err != nil {
		return err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = cli.Get(rctx, "etcdplay-proxy-probe")
	return err
}
