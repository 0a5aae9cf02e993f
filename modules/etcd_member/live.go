package etcd_member

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// listTimeout bounds one member-list attempt against one member.
const listTimeout = 3 * time.Second

// ErrNoMemberAnswered is returned when no inventory member could list the
// cluster's members at all.
var ErrNoMemberAnswered = errors.New("no member of the etcd group answered")

// cluster is what the module talks to: the inventory model, the controller
// state dir (client certificate) and the dialer through the SSH
// connections.
type cluster struct {
	model    *etcd.Cluster
	stateDir string
	dial     etcdclient.DialFunc
}

// memberList asks the inventory members, all at once, for the member list.
// It prefers a linearizable answer (from a member that is part of a
// quorum); when none can give one it falls back to a serializable answer,
// so that a cluster without a quorum can still be described.
func (cl *cluster) memberList(ctx context.Context) ([]*etcdserverpb.Member, bool, error) {
	try := func(opts ...clientv3.OpOption) ([]*etcdserverpb.Member, error) {
		type answer struct {
			ms  []*etcdserverpb.Member
			err error
		}
		ch := make(chan answer, len(cl.model.Members))
		lctx, cancel := context.WithTimeout(ctx, listTimeout)
		defer cancel()
		for _, m := range cl.model.Members {
			go func() {
				cli, err := etcdclient.NewMemberClient(lctx, cl.model, m, cl.stateDir, cl.dial)
				if err != nil {
					ch <- answer{err: err}
					return
				}
				defer cli.Close()
				resp, err := cli.MemberList(lctx, opts...)
				if err != nil {
					ch <- answer{err: fmt.Errorf("%s: %w", m.Name, err)}
					return
				}
				ch <- answer{ms: resp.Members}
			}()
		}
		var errs []error
		for range cl.model.Members {
			a := <-ch
			if a.err == nil {
				return a.ms, nil
			}
			errs = append(errs, a.err)
		}
		return nil, errors.Join(errs...)
	}
	ms, err := try()
	if err == nil {
		return ms, true, nil
	}
	if ctx.Err() != nil {
		return nil, false, ctx.Err()
	}
	ms, err2 := try(clientv3.WithSerializable())
	if err2 == nil {
		return ms, false, nil
	}
	if _, terr := etcdclient.ClientTLS(cl.model, cl.stateDir); terr != nil {
		return nil, false, terr
	}
	return nil, false, fmt.Errorf("%w: %v", ErrNoMemberAnswered, err)
}

// snapshot is the live member list with every member's health, each
// matched to its inventory host where there is one.
func (cl *cluster) snapshot(ctx context.Context) ([]liveMember, error) {
	list, _, err := cl.memberList(ctx)
	if err != nil {
		return nil, err
	}
	live := make([]liveMember, len(list))
	for i, pm := range list {
		l := liveMember{ID: pm.ID, Name: pm.Name, PeerURLs: pm.PeerURLs, ClientURLs: pm.ClientURLs, Learner: pm.IsLearner}
		for _, m := range cl.model.Members {
			if slices.Contains(pm.PeerURLs, m.PeerURL) && (pm.Name == "" || pm.Name == m.Name) {
				l.Host, l.InvName = m.Host, m.Name
			}
		}
		live[i] = l
	}
	cl.probe(ctx, live)
	return live, nil
}

// probe fills in each member's health, through its own client URL: an
// inventory member through its host's SSH connection, any other directly.
func (cl *cluster) probe(ctx context.Context, live []liveMember) {
	var wg sync.WaitGroup
	for i := range live {
		l := &live[i]
		if len(l.ClientURLs) == 0 {
			l.Err = "has not started (no client URL yet)"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			probe := *cl.model
			probe.Members = []etcd.Member{{Host: l.Host, Name: l.label(), ClientURL: l.ClientURLs[0]}}
			h, err := etcdclient.CheckHealth(ctx, &probe, cl.stateDir, cl.dial, etcdclient.CheckOptions{})
			if err != nil {
				l.Err = err.Error()
				return
			}
			mh := h.Members[0]
			l.Up = mh.ID != 0
			l.Applied, l.Index = mh.RaftAppliedIndex, mh.RaftIndex
			l.Leader = mh.IsLeader()
			switch {
			case mh.Healthy:
				l.Healthy = true
			case mh.IsLearner && mh.ID != 0 && mh.Leader != 0:
				// CheckHealth counts a learner as not (yet) healthy; for
				// the guard a learner that answers with a leader is up.
				l.Healthy = true
			default:
				l.Err = mh.Error
			}
		}()
	}
	wg.Wait()
}

// leader returns the member that leads, if one answered as leader.
func leader(live []liveMember) (liveMember, bool) {
	for _, l := range live {
		if l.Leader && l.Healthy {
			return l, true
		}
	}
	return liveMember{}, false
}

// client connects to one healthy voting member other than those in
// except, the leader when it answered: membership changes go through it.
func (cl *cluster) client(ctx context.Context, live []liveMember, except ...uint64) (*clientv3.Client, liveMember, error) {
	cand, ok := leader(live)
	if ok && slices.Contains(except, cand.ID) {
		ok = false
	}
	if !ok {
		for _, l := range live {
			if l.Healthy && !l.Learner && !slices.Contains(except, l.ID) {
				cand, ok = l, true
				break
			}
		}
	}
	if !ok {
		return nil, liveMember{}, fmt.Errorf("no healthy voting member to send the change to: %s", describeLive(live))
	}
	m := etcd.Member{Host: cand.Host, Name: cand.label(), ClientURL: cand.ClientURLs[0]}
	cli, err := etcdclient.NewMemberClient(ctx, cl.model, m, cl.stateDir, cl.dial)
	return cli, cand, err
}

// describeLive is the member list in one line, for errors and logs.
func describeLive(live []liveMember) string {
	parts := make([]string, len(live))
	for i, l := range live {
		s := l.label()
		switch {
		case l.Learner && l.Healthy:
			s += " (learner)"
		case l.Learner:
			s += " (learner, " + orUnknown(l.Err) + ")"
		case l.Healthy && l.Leader:
			s += " (leader)"
		case !l.Healthy:
			s += " (" + orUnknown(l.Err) + ")"
		}
		parts[i] = s
	}
	return strings.Join(parts, ", ")
}
