package etcd_member

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/oplock"
)

// LockPrefix is where the lock lives: the one operation lock every
// disruptive etcdplay step takes (oplock), so a membership change never
// interleaves with another run's change, rolling restart or upgrade.
const LockPrefix = oplock.Key

// lock takes the operation lock, waiting up to timeout for another run to
// release it (or for its lease to expire). It talks to the healthy voting
// members of live only (a learner refuses leases and transactions). The
// returned context is cancelled when the lock is lost; the function
// releases it.
func (cl *cluster) lock(ctx context.Context, live []liveMember, timeout time.Duration, logf func(string, ...any)) (context.Context, func(), error) {
	voters := *cl.model
	voters.Members = nil
	for _, l := range live {
		if l.Healthy && !l.Learner && len(l.ClientURLs) > 0 {
			voters.Members = append(voters.Members, etcd.Member{Host: l.Host, Name: l.label(), ClientURL: l.ClientURLs[0]})
		}
	}
	if len(voters.Members) == 0 {
		return nil, nil, fmt.Errorf("membership lock: no healthy voting member: %s", describeLive(live))
	}
	cli, err := etcdclient.NewClient(ctx, &voters, cl.stateDir, cl.dial)
	if err != nil {
		return nil, nil, err
	}
	held, err := oplock.Acquire(ctx, cli, "membership change", timeout, logf)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return held.Ctx, func() {
		held.Release()
		_ = cli.Close()
	}, nil
}
