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

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd_config"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
)

// pollInterval paces the waits (catch-up, confirmation, health).
const pollInterval = 300 * time.Millisecond

type applier struct {
	p     *payload
	env   *modules.Env
	hosts map[string]modules.HostWriter
	cl    *cluster
}

// step guards one step against the cluster as it is now, carries it out
// and confirms it.
func (a *applier) step(ctx context.Context, s step) (string, error) {
	live, err := a.cl.snapshot(ctx)
	if err != nil {
		return "", err
	}
	// A resumed join's learner is in the list already; a fresh one is not.
	if err := etcd.CheckQuorum(guardView(live), guardSteps([]step{s})); err != nil {
		return "", fmt.Errorf("%w (members now: %s)", err, describeLive(live))
	}
	switch s.Kind {
	case stepRemove:
		return a.remove(ctx, s, live)
	case stepUpdate:
		return a.update(ctx, s, live)
	default:
		return a.join(ctx, s, live)
	}
}

func (a *applier) remove(ctx context.Context, s step, live []liveMember) (string, error) {
	if l, ok := leader(live); ok && l.ID == s.ID {
		a.handOver(ctx, s, live)
	}
	// The request goes to a member that stays: a member removing itself
	// stops before it can answer.
	cli, _, err := a.cl.client(ctx, live, s.ID)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	a.env.Logf("removing member %s (%s)", s.Name, hexID(s.ID))
	err = a.retryUnhealthy(ctx, func(c context.Context) error { _, err := cli.MemberRemove(c, s.ID); return err })
	if err != nil && !errors.Is(rpctypes.Error(err), rpctypes.ErrMemberNotFound) {
		return "", fmt.Errorf("remove %s: %w", s.Name, err)
	}
	if err := a.confirm(ctx, "member "+s.Name+" gone from the member list", func(ms []*etcdserverpb.Member) bool {
		return !slices.ContainsFunc(ms, func(m *etcdserverpb.Member) bool { return m.ID == s.ID })
	}); err != nil {
		return "", err
	}
	return fmt.Sprintf("removed %s (%s)", s.Name, hexID(s.ID)), a.waitQuorum(ctx, "")
}

// handOver moves leadership away from a leader about to be removed, to a
// healthy voting member that stays, so the cluster does not go through an
// election right after the change. Best effort: etcd copes without it.
func (a *applier) handOver(ctx context.Context, s step, live []liveMember) {
	var to *liveMember
	for i, l := range live {
		if l.ID != s.ID && l.Healthy && !l.Learner {
			to = &live[i]
			break
		}
	}
	if to == nil {
		return
	}
	lc, err := etcdclient.NewMemberClient(ctx, a.p.Cluster, etcd.Member{Host: s.Name, Name: s.Name, ClientURL: memberURL(live, s.ID)}, a.cl.stateDir, a.cl.dial)
	if err != nil {
		return
	}
	defer lc.Close()
	a.env.Logf("%s leads: handing leadership to %s before removing it", s.Name, to.label())
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := lc.MoveLeader(mctx, to.ID); err != nil {
		a.env.Logf("leadership hand-over failed (%v): removing the leader directly", err)
	}
}

func memberURL(live []liveMember, id uint64) string {
	for _, l := range live {
		if l.ID == id && len(l.ClientURLs) > 0 {
			return l.ClientURLs[0]
		}
	}
	return ""
}

func (a *applier) update(ctx context.Context, s step, live []liveMember) (string, error) {
	cli, _, err := a.cl.client(ctx, live)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	err = a.retryUnhealthy(ctx, func(c context.Context) error {
		_, err := cli.MemberUpdate(c, s.ID, []string{s.Member.PeerURL})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("update peer URLs of %s: %w", s.Name, err)
	}
	if err := a.confirm(ctx, s.Name+"'s new peer URL in the member list", func(ms []*etcdserverpb.Member) bool {
		return slices.ContainsFunc(ms, func(m *etcdserverpb.Member) bool {
			return m.ID == s.ID && slices.Equal(m.PeerURLs, []string{s.Member.PeerURL})
		})
	}); err != nil {
		return "", err
	}
	return fmt.Sprintf("moved %s to %s", s.Name, s.Member.PeerURL), nil
}

// join brings one member in: host ready, learner added, config written,
// etcd started, caught up, promoted, healthy.
func (a *applier) join(ctx context.Context, s step, live []liveMember) (string, error) {
	m := s.Member
	r := a.hosts[m.Host]
	if r == nil || !r.Reachable() {
		return "", fmt.Errorf("host %s of joining member %s is not reachable", m.Host, m.Name)
	}
	if !s.Started {
		// Never add a learner whose etcd cannot start: the playbook's
		// earlier tasks install it (etcd_binary, etcd_pki, etcd_service).
		st, err := probeHost(ctx, r, a.p.Cluster)
		if err != nil {
			return "", fmt.Errorf("look at %s: %w", m.Host, err)
		}
		if st.Loaded != "loaded" {
			return "", fmt.Errorf("etcd is not installed on %s (unit %s: %s): run etcd_binary, etcd_pki and etcd_service (state: present) on it first",
				m.Host, unit, st.Loaded)
		}
		jh := a.p.Joiners[m.Host]
		if jh.Stop {
			a.env.Logf("stopping a stray etcd on %s", m.Host)
			if _, err := command.Run(ctx, r, "systemctl", "stop", unit); err != nil {
				return "", err
			}
		}
		if len(jh.MoveAside) > 0 {
			a.env.Logf("moving %v on %s aside (suffix .%s)", jh.MoveAside, m.Host, a.p.Suffix)
			if err := etcd_install.MoveAside(ctx, r, a.p.Suffix, "etcd", dataDirs(a.p.Cluster)...); err != nil {
				return "", fmt.Errorf("move the data dir of %s aside: %w", m.Host, err)
			}
		}
	}
	cli, _, err := a.cl.client(ctx, live)
	if err != nil {
		return "", err
	}
	defer cli.Close()

	id := s.ID
	list := make([]*etcdserverpb.Member, 0, len(live))
	for _, l := range live {
		list = append(list, &etcdserverpb.Member{ID: l.ID, Name: l.Name, PeerURLs: l.PeerURLs, IsLearner: l.Learner})
	}
	if !s.Added {
		a.env.Logf("adding %s as a learner at %s", m.Name, m.PeerURL)
		var resp *clientv3.MemberAddResponse
		err := a.retryUnhealthy(ctx, func(c context.Context) error {
			var err error
			resp, err = cli.MemberAddAsLearner(c, []string{m.PeerURL})
			return err
		})
		if err != nil {
			return "", fmt.Errorf("add %s as a learner: %w", m.Name, err)
		}
		id, list = resp.Member.ID, resp.Members
		if err := a.confirm(ctx, "learner "+m.Name+" in the member list", func(ms []*etcdserverpb.Member) bool {
			return slices.ContainsFunc(ms, func(x *etcdserverpb.Member) bool { return x.ID == id })
		}); err != nil {
			return "", err
		}
	}
	if !s.Started {
		content, err := joinConfig(a.p, m, id, list)
		if err != nil {
			return "", err
		}
		if err := writeConfig(ctx, r, a.p.Cluster, a.p.TmplName, content); err != nil {
			return "", fmt.Errorf("configure %s: %w", m.Host, err)
		}
	}
	// Idempotent: a learner whose etcd already runs is left as it is.
	if _, err := command.Run(ctx, r, "systemctl", "start", "--no-block", unit); err != nil {
		return "", err
	}
	if s.Learner {
		if err := a.promote(ctx, cli, m, id); err != nil {
			return "", err
		}
	}
	if err := a.waitQuorum(ctx, m.Name); err != nil {
		return "", err
	}
	return fmt.Sprintf("joined %s (%s)", m.Name, hexID(id)), nil
}

// joinConfig renders the joiner's etcd.yaml: initial-cluster-state
// existing and an initial-cluster of exactly the members the cluster has
// now (itself included), which is what etcd checks a joiner against.
func joinConfig(p *payload, m *etcd.Member, id uint64, list []*etcdserverpb.Member) (string, error) {
	jc := *p.Cluster
	jc.Members = nil
	for _, x := range list {
		if x.ID == id {
			jc.Members = append(jc.Members, *m)
			continue
		}
		if x.Name == "" {
			return "", fmt.Errorf("member %s (peer URL %v) was added but never started: the joiner's initial-cluster cannot name it; remove it first", hexID(x.ID), x.PeerURLs)
		}
		for _, u := range x.PeerURLs {
			jc.Members = append(jc.Members, etcd.Member{Name: x.Name, PeerURL: u})
		}
	}
	return etcd_config.Render(p.TmplName, p.TmplText, &jc, m.Host, p.Opts)
}

// retire stops and disables etcd on a removed member's host and moves its
// data aside (never deleting it).
func (a *applier) retire(ctx context.Context, rt retire) error {
	r := a.hosts[rt.Host]
	if r == nil {
		return fmt.Errorf("no connection to %s", rt.Host)
	}
	if rt.Stop {
		a.env.Logf("stopping and disabling etcd on %s", rt.Host)
		if _, err := command.Run(ctx, r, "systemctl", "disable", "--now", "--quiet", unit); err != nil {
			return err
		}
	}
	if len(rt.MoveAside) > 0 {
		a.env.Logf("moving %v on %s aside (suffix .%s)", rt.MoveAside, rt.Host, a.p.Suffix)
		return etcd_install.MoveAside(ctx, r, a.p.Suffix, "", rt.MoveAside...)
	}
	return nil
}
