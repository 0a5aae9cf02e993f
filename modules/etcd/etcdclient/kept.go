package etcdclient

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// A run's health checks share their clients of each member while the run
// changes nothing: a converged re-apply of site.yml asks the preflight,
// the version guard and the health gate in turn, and each made a client
// of every member (TLS and HTTP/2 set up through SSH) for a few requests,
// about half of each check's time.
//
// What keeps this safe:
//   - Any change to any host (modules.Changes moves: an Apply, an
//     upload) drops every kept client, so a check after a member
//     restarted dials it anew, as it always did.
//   - A kept client is used only while its connection is ready. One that
//     broke (the member went away by itself) is dropped, not left to
//     gRPC's reconnect backoff, and the member is probed with a new one.
//   - A kept client's dialer is armed by each probe that uses it, so a
//     failed redial ends that probe at once and explains its error, as
//     for a new client.
//   - Only a client of a member that proved healthy is kept.
var kept struct {
	mu      sync.Mutex
	changes uint64
	clients map[keptKey]keptClient
}

type keptClient struct {
	cli *clientv3.Client
	rec *dialRecorder
}

// keptKey names a member's client: the state dir and cluster give its
// certificates, the host the SSH connection its dials go through.
type keptKey struct{ stateDir, cluster, host, url string }

// keptLimit bounds the clients kept at once: more are closed rather than
// held (a process that checks many clusters).
const keptLimit = 64

// take returns k's kept client, if it has one whose connection is ready,
// and no longer keeps it (the caller gives it back with keep, or closes
// it): two checks never share one.
func take(k keptKey) (keptClient, bool) {
	kept.mu.Lock()
	defer kept.mu.Unlock()
	dropStale()
	kc, ok := kept.clients[k]
	if !ok {
		return kc, false
	}
	delete(kept.clients, k)
	if kc.cli.ActiveConnection().GetState() != connectivity.Ready {
		kc.cli.Close()
		return kc, false
	}
	return kc, true
}

// keep holds kc, made or last used when modules.Changes was changes, for
// the next check, and reports whether it did: a client from before a
// change is not kept (the caller closes it).
func keep(k keptKey, kc keptClient, changes uint64) bool {
	kept.mu.Lock()
	defer kept.mu.Unlock()
	dropStale()
	if changes != kept.changes || len(kept.clients) >= keptLimit {
		return false
	}
	if _, ok := kept.clients[k]; ok {
		return false // a concurrent check kept its own first
	}
	if kept.clients == nil {
		kept.clients = map[keptKey]keptClient{}
	}
	kept.clients[k] = kc
	return true
}

// dropStale closes every kept client once a change has been noted since
// they were kept. kept.mu is held.
func dropStale() {
	now := modules.Changes()
	if now == kept.changes {
		return
	}
	for _, kc := range kept.clients {
		kc.cli.Close()
	}
	kept.clients, kept.changes = nil, now
}

// probeKept probes m with its kept client when it has a ready one, else
// with a new one, as probe does; the client of a healthy member is kept.
func probeKept(ctx context.Context, c *etcd.Cluster, m etcd.Member, stateDir string, dial DialFunc, timeout time.Duration, onHealthy healthyHook) MemberHealth {
	k := keptKey{stateDir, c.Name, m.Host, m.ClientURL}
	changes := modules.Changes()
	if kc, ok := take(k); ok {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		kc.rec.arm(cancel)
		mh := probeWith(pctx, kc.cli, m, timeout, kc.rec, onHealthy)
		kc.rec.arm(nil)
		cancel()
		if mh.Healthy && keep(k, kc, changes) {
			return mh
		}
		kc.cli.Close()
		if mh.Healthy || mh.Took >= timeout || ctx.Err() != nil {
			return mh // out of time: a new client would only wait again
		}
		// Whatever happened to the kept client, a new one says it in
		// the words a first probe would.
	}
	return probe(ctx, c, m, stateDir, dial, timeout, onHealthy, func(cli *clientv3.Client, rec *dialRecorder) bool {
		return keep(k, keptClient{cli, rec}, changes)
	})
}
