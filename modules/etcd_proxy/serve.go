package etcd_proxy

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// waitServing polls Serving until it passes or timeout ends.
func waitServing(ctx context.Context, env *modules.Env, h modules.Host, c *etcd.Cluster, px etcd.Proxy, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := etcdclient.ProxyServing(ctx, c, px, env.StateDir, h)
		if err == nil {
			env.Logf("%s on %s serves at %s", px.Mode, px.Host, px.DialAddr())
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the %s at %s does not serve after %s: %w (journalctl -u %s on %s says why)", px.Mode, px.DialAddr(), timeout, err, etcd.ProxyUnit, px.Host)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
