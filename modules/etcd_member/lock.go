package etcd_member

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/etcdplay/etcdplay/modules/etcd"
)

// LockPrefix is where the membership lock lives in the cluster's own
// keyspace: a key under it exists, bound to a lease, while an etcdplay run
// changes membership. It keeps two runs (two operators, or a rerun while a
// stuck one is still alive) from interleaving their changes.
const LockPrefix = "/etcdplay/locks/membership"

// lockTTL is the lease of the lock, in seconds: how long the lock outlives
// a controller that died holding it.
const lockTTL = 10

// lock takes the membership lock, waiting up to timeout for another run to
// release it (or for its lease to expire). It talks to the healthy voting
// members of live only (a learner refuses leases and transactions). The
// returned function releases it.
func (cl *cluster) lock(ctx context.Context, live []liveMember, timeout time.Duration, logf func(string, ...any)) (func(), error) {
	voters := *cl.model
	voters.Members = nil
	for _, l := range live {
		if l.Healthy && !l.Learner && len(l.ClientURLs) > 0 {
			voters.Members = append(voters.Members, etcd.Member{Host: l.Host, Name: l.label(), ClientURL: l.ClientURLs[0]})
		}
	}
	if len(voters.Members) == 0 {
		return nil, fmt.Errorf("membership lock: no healthy voting member: %s", describeLive(live))
	}
	cli, err := etcd.NewClient(ctx, &voters, cl.stateDir, cl.dial)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(lockTTL), concurrency.WithContext(ctx))
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("membership lock: %w", err)
	}
	mu := concurrency.NewMutex(sess, LockPrefix)
	err = mu.TryLock(sctx)
	if errors.Is(err, concurrency.ErrLocked) {
		logf("waiting: another etcdplay run holds the membership lock (%s; it expires %ds after that run dies)", LockPrefix, lockTTL)
		err = mu.Lock(sctx)
	}
	if err != nil {
		sess.Close()
		cli.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("membership lock %s still held by another run after %s", LockPrefix, timeout)
		}
		return nil, fmt.Errorf("membership lock: %w", err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx)
		_ = sess.Close()
		_ = cli.Close()
	}, nil
}
