// Package oplock is the one cluster-wide lock of etcdplay's disruptive
// steps (membership changes, rolling restarts and upgrades): the key Key in
// the cluster's own keyspace, bound to a lease that the holder renews. Two
// runs (two operators, a CI job and a person, a rerun while a stuck run
// still lives) never take members down at the same time; a run that dies
// releases it within TTL seconds; and a holder that loses it (its lease
// expired while it was cut off from the cluster) is told through Held.Ctx,
// so it stops before its next step instead of carrying on unguarded.
//
// The lease is renewed with unary KeepAliveOnce calls rather than a
// keep-alive stream: a stream stays on one member, and a member shutting
// down for its rolling restart waits for its open streams before it stops.
package oplock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// Key is where the lock lives.
const Key = etcd.OpLockKey

// TTL is the lease, in seconds: how long the lock outlives a dead holder.
const TTL = 10

// attemptTimeout bounds one attempt at the lock (a lease grant and a
// transaction, milliseconds on a healthy cluster).
const attemptTimeout = 5 * time.Second

// ErrLost is the cause of Held.Ctx's cancellation when the lease is lost.
var ErrLost = errors.New("lost the etcdplay operation lock (its lease expired: the controller was cut off from the cluster for longer than the lease)")

// ErrHeld is wrapped when another run held the lock for the whole wait.
var ErrHeld = errors.New("the operation lock is held by another run")

// Held is a taken lock. Ctx is cancelled (cause ErrLost) when the lock is
// lost; run the guarded work under it.
type Held struct {
	Ctx     context.Context
	release func()
	stop    func()
}

// Explain names the lost lock in err when that is why ctx, a Held.Ctx or
// one derived from it, ended: the step's own error ("context canceled")
// would hide it.
func Explain(ctx context.Context, err error) error {
	if c := context.Cause(ctx); err != nil && errors.Is(c, ErrLost) && !errors.Is(err, ErrLost) {
		return fmt.Errorf("%w: %v", ErrLost, err)
	}
	return err
}

// Release gives the lock back (and cancels Ctx).
func (h *Held) Release() { h.release() }

// Abandon stops renewing the lock without giving it back, for a holder
// that has just stopped the cluster holding it (a restore): there is no
// member left to answer, and the lease dies with that cluster's data.
func (h *Held) Abandon() { h.stop() }

// holder says who holds the lock, for the operator who finds it taken.
func holder(what string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s by etcdplay pid %d on %s since %s", what, os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
}

// Acquire takes the lock through cli for what ("rolling restart"), waiting
// up to timeout for another holder; logf says when it waits. The client
// stays the caller's and must outlive the lock.
//
// The cluster may be between leaders while Acquire waits: the holder's
// rolling restart hands leadership over, and the leader drops proposals
// meanwhile. Such an error is retried for up to the lease's TTL, a
// transition's length many times over; one that outlasts it is the
// cluster's state (no quorum), and the error says so.
func Acquire(ctx context.Context, cli *clientv3.Client, what string, timeout time.Duration, logf func(string, ...any)) (*Held, error) {
	deadline := time.Now().Add(timeout)
	logged := false
	var failing time.Time // since when every attempt failed transiently
	for {
		held, by, err := try(ctx, cli, what)
		switch {
		case held != nil:
			return held, nil
		case err != nil && ctx.Err() == nil && (etcdclient.Transient(err) || errors.Is(err, context.DeadlineExceeded)):
			if failing.IsZero() {
				failing = time.Now()
			}
			if time.Since(failing) >= TTL*time.Second || time.Now().After(deadline) {
				return nil, fmt.Errorf("operation lock for the %s: the cluster did not take it for %s (no leader, or no quorum?): check `etcdplay status`: %w",
					what, time.Since(failing).Round(time.Second), err)
			}
		case err != nil:
			return nil, fmt.Errorf("operation lock for the %s: %w", what, err)
		default:
			failing = time.Time{}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("the %s waited %s for the operation lock %s, still held by another run (%s): let it finish, or wait %ds after it died: %w",
					what, timeout, Key, by, TTL, ErrHeld)
			}
			if !logged && logf != nil {
				logf("waiting: the operation lock %s is held (%s); it is released %ds after that run dies", Key, by, TTL)
				logged = true
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// try makes one attempt at the lock: it is held, or another run holds it
// (by says who), or the cluster answered with err. A failed attempt
// revokes its lease, so a put applied before an ambiguous error (a
// timeout) does not leave the key behind for longer than an attempt.
func try(ctx context.Context, cli *clientv3.Client, what string) (held *Held, by string, err error) {
	// Without a leader a member neither answers nor fails a proposal: it
	// holds it until etcd's request timeout, which clientv3 then retries
	// a hundred times. Requiring a leader makes a leaderless member say
	// so at once, and the attempt's own deadline bounds the rest.
	actx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), attemptTimeout)
	defer cancel()
	lease, err := cli.Grant(actx, TTL)
	if err != nil {
		return nil, "", err
	}
	resp, err := cli.Txn(actx).
		If(clientv3.Compare(clientv3.CreateRevision(Key), "=", 0)).
		Then(clientv3.OpPut(Key, holder(what), clientv3.WithLease(lease.ID))).
		Else(clientv3.OpGet(Key)).
		Commit()
	if err == nil && resp.Succeeded {
		return hold(ctx, cli, lease.ID), "", nil
	}
	rctx, rcancel := context.WithTimeout(clientv3.WithRequireLeader(context.WithoutCancel(ctx)), attemptTimeout)
	_, _ = cli.Revoke(rctx, lease.ID)
	rcancel()
	if err != nil {
		return nil, "", err
	}
	by = "another run"
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) == 1 {
		by = string(kvs[0].Value)
	}
	return nil, by, nil
}

// hold renews the lease every third of its TTL until released; when the
// lease is gone, or renewals fail for longer than the TTL, Ctx is
// cancelled with ErrLost.
func hold(ctx context.Context, cli *clientv3.Client, id clientv3.LeaseID) *Held {
	hctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := time.Now()
		tick := time.NewTicker(TTL * time.Second / 3)
		defer tick.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-tick.C:
			}
			rctx, rcancel := context.WithTimeout(hctx, TTL*time.Second/3)
			resp, err := cli.KeepAliveOnce(rctx, id)
			rcancel()
			switch {
			case err == nil && resp.TTL > 0:
				last = time.Now()
			case hctx.Err() != nil:
				return
			case err == nil, errors.Is(err, rpctypes.ErrLeaseNotFound), time.Since(last) >= TTL*time.Second:
				// The lease is gone, or may be: the lock is not ours.
				cancel(ErrLost)
				return
			}
			// Otherwise a failed renewal within the TTL (a member
			// restarting, a slow answer): try again at the next tick.
		}
	}()
	stop := func() {
		cancel(context.Canceled)
		<-done
	}
	return &Held{Ctx: hctx, stop: stop, release: func() {
		stop()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer rcancel()
		_, _ = cli.Revoke(rctx, id)
	}}
}
