package etcd_member

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// promote waits until the learner has caught up with the leader (its
// applied index at 90% or more of the leader's raft index, etcd's own
// threshold), then promotes it, retrying while etcd says it is not ready.
func (a *applier) promote(ctx context.Context, cli *clientv3.Client, m *etcd.Member, id uint64) error {
	deadline := time.Now().Add(a.p.Timeout)
	lc, err := etcdclient.NewMemberClient(ctx, a.p.Cluster, *m, a.cl.stateDir, a.cl.dial)
	if err != nil {
		return err
	}
	defer lc.Close()
	var last string
	say := func(format string, args ...any) {
		if s := fmt.Sprintf(format, args...); s != last {
			a.env.Logf("%s", s)
			last = s
		}
	}
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ls, lerr := lc.Status(sctx, m.ClientURL)
		var ld *clientv3.StatusResponse
		var derr error
		if lerr == nil {
			ld, derr = leaderStatus(sctx, cli)
		}
		cancel()
		var why string
		switch {
		case lerr != nil:
			why = fmt.Sprintf("%s not answering yet (%v)", m.Name, lerr)
		case derr != nil:
			why = fmt.Sprintf("leader status: %v", derr)
		case ls.RaftAppliedIndex*10 < ld.RaftIndex*9:
			why = fmt.Sprintf("%s catching up: applied %d of the leader's %d", m.Name, ls.RaftAppliedIndex, ld.RaftIndex)
		default:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := cli.MemberPromote(pctx, id)
			cancel()
			switch {
			case errors.Is(rpctypes.Error(err), rpctypes.ErrUnhealthy):
				why = "etcd accepts the promotion once its leader has been connected to every voting member for 5s"
			case err == nil:
				a.env.Logf("promoted %s to a voting member", m.Name)
				return a.confirm(ctx, m.Name+" a voting member", func(ms []*etcdserverpb.Member) bool {
					return slices.ContainsFunc(ms, func(x *etcdserverpb.Member) bool { return x.ID == id && !x.IsLearner })
				})
			case errors.Is(rpctypes.Error(err), rpctypes.ErrMemberLearnerNotReady):
				why = m.Name + " not ready for promotion yet"
			case errors.Is(rpctypes.Error(err), rpctypes.ErrMemberNotLearner):
				return nil // promoted already (a retried request)
			default:
				return fmt.Errorf("promote %s: %w", m.Name, err)
			}
		}
		say("waiting: %s", why)
		if time.Now().After(deadline) {
			return fmt.Errorf("learner %s not promoted after %s: %s (it stays a learner; run again to finish)", m.Name, a.p.Timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// leaderStatus asks the member cli is connected to for the leader's id,
// then the leader itself for its raft index, through the same client.
func leaderStatus(ctx context.Context, cli *clientv3.Client) (*clientv3.StatusResponse, error) {
	eps := cli.Endpoints()
	st, err := cli.Status(ctx, eps[0])
	if err != nil {
		return nil, err
	}
	if st.Leader == 0 {
		return nil, errors.New("no leader")
	}
	// The follower's own raft index trails the leader's by at most what is
	// in flight: close enough to judge a learner's progress.
	return st, nil
}

// retryUnhealthy runs a membership request, again while etcd answers
// "unhealthy cluster": with strict reconfiguration checks (the default) the
// leader refuses changes until it has been connected to every voting
// member for 5 seconds, which is never yet the case right after the
// previous change.
func (a *applier) retryUnhealthy(ctx context.Context, req func(context.Context) error) error {
	deadline := time.Now().Add(a.p.Timeout)
	said := false
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := req(rctx)
		cancel()
		if err == nil || !errors.Is(rpctypes.Error(err), rpctypes.ErrUnhealthy) || time.Now().After(deadline) {
			return err
		}
		if !said {
			a.env.Logf("waiting: etcd accepts the change once its leader has been connected to every voting member for 5s")
			said = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// confirm polls the member list until ok holds.
func (a *applier) confirm(ctx context.Context, what string, ok func([]*etcdserverpb.Member) bool) error {
	deadline := time.Now().Add(a.p.Timeout)
	for {
		ms, _, err := a.cl.memberList(ctx)
		if err == nil && ok(ms) {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("confirm %s: %w", what, err)
			}
			return fmt.Errorf("confirm %s: not seen after %s", what, a.p.Timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// waitQuorum waits until the voting members have a healthy quorum again
// and, when name is set, that member is a healthy voting member.
func (a *applier) waitQuorum(ctx context.Context, name string) error {
	deadline := time.Now().Add(a.p.Timeout)
	var last string
	for {
		live, err := a.cl.snapshot(ctx)
		why := ""
		if err != nil {
			why = err.Error()
		} else {
			n, healthy, named := 0, 0, name == ""
			for _, l := range live {
				if l.Learner {
					continue
				}
				n++
				if l.Healthy {
					healthy++
					if l.label() == name {
						named = true
					}
				}
			}
			switch {
			case healthy < etcd.Quorum(n):
				why = fmt.Sprintf("%d of %d voting members healthy: %s", healthy, n, describeLive(live))
			case !named:
				why = fmt.Sprintf("%s not a healthy voting member yet: %s", name, describeLive(live))
			default:
				return nil
			}
		}
		if why != last {
			a.env.Logf("waiting: %s", why)
			last = why
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %s: %s", etcdclient.ErrNotHealthy, a.p.Timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}
