// Package etcd_tls is etcd_enable_tls: a running plain-HTTP cluster moved,
// without downtime, to the TLS cluster site.yml builds with etcd_tls true
// (seed 001's manual procedure, the order etcd's maintainers advise: one
// member at a time, each healthy before the next).
//
// Each member passes through the phases of etcd.TLSPhase, one restart
// each, and the cluster as a whole through three rolls:
//
//  1. off -> both: the client port serves https beside http, and the
//     member loads its peer certificate (so it can reach peers that
//     already listen over TLS); peers still listen on http;
//  2. both -> peer: the member's peer URL becomes https in the member list
//     (etcd's member update), and it restarts listening for peers over
//     TLS; between the two it is cut off from its peers for a moment,
//     which the quorum guard allows for one member only;
//  3. peer -> on: the plain-HTTP client listener goes, and the config is
//     exactly site.yml's.
//
// Every roll goes through the rolling primitive (quorum guard against the
// live member list, followers first, leadership handed over, health and
// catch-up after each member). The phase of each member is read from the
// live member list, so a run killed anywhere is finished by running it
// again; a member left cut off between its member update and its restart
// is restarted first.
package etcd_tls

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/roll"
	"github.com/etcdplay/etcdplay/modules/etcd_config"
)

func init() { modules.Register("etcd_enable_tls", Module{}) }

// Module is etcd_enable_tls.
type Module struct{}

// RunsOnController marks it controller-side: it needs every member's
// connection and the etcd API.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	// timeout bounds the wait for health and catch-up after each member.
	"timeout": {Kind: modules.Duration},
	// template is etcd.yaml's template, as etcd_config takes it.
	"template": {Kind: modules.String},
	// base_dir is the playbook's directory (set by Resolve: templates).
	"base_dir": {Kind: modules.String},
	// to is the phase to stop at: peer (clients still served over plain
	// HTTP too, so client hosts' proxies can move to TLS before it goes)
	// or on (the default).
	"to": {Kind: modules.String, OneOf: []string{"peer", "on"}},
}

const defaultTimeout = 60 * time.Second

// Resolve records the playbook's directory, where etcd.yaml's template
// is looked up first, as etcd_config does.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	out := maps.Clone(args)
	if out == nil {
		out = modules.Args{}
	}
	out["base_dir"] = rc.BaseDir
	return out, nil
}

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	return spec.Check(args)
}

// live is the cluster as its member list describes it.
type live struct {
	phase map[string]etcd.TLSPhase // by inventory host
	id    map[string]uint64
	// down are members whose peer URL is already https but that do not
	// answer: cut off between their member update and their restart.
	down []string
}

type job struct {
	tls, plain *etcd.Cluster
	args       modules.Args
	timeout    time.Duration
	to         etcd.TLSPhase
}

// Plan reads each member's phase from the live member list and shows the
// restarts and member updates left, in order.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	if !c.TLS {
		return nil, &etcd.VarError{Var: "etcd_tls", Msg: "etcd_enable_tls moves a cluster to TLS: run it with etcd_tls true (playbooks/enable-tls.yml sets it)"}
	}
	j := &job{tls: c.WithScheme(true), plain: c.WithScheme(false), args: args}
	j.timeout, _ = args.Duration("timeout", defaultTimeout)
	j.to = etcd.TLSOn
	if args.Str("to", "on") == "peer" {
		j.to = etcd.TLSPeer
	}
	l, h, err := j.read(ctx, env)
	if err != nil {
		return nil, err
	}
	ch := &modules.Change{Payload: j}
	leader := ""
	if m, ok := h.Leader(); ok {
		leader = m.Host
	}
	for _, host := range l.down {
		m, _ := c.Member(host)
		ch.Add("!", "restart "+m.Name, "resume: its peer URL is https in the member list but it does not answer; restarted with its TLS peer listener")
	}
	steps := []struct {
		from etcd.TLSPhase
		verb string
	}{
		{etcd.TLSOff, "https beside http for clients, peer certificate loaded"},
		{etcd.TLSBoth, "peer URL to https (member update), TLS peer listener"},
		{etcd.TLSPeer, "plain-HTTP client listener removed"},
	}
	for _, s := range steps {
		if s.from >= j.to {
			break
		}
		for _, m := range roll.Order(c.Members, leader) {
			if l.phase[m.Host] > s.from || slices.Contains(l.down, m.Host) {
				continue
			}
			role := ""
			if m.Host == leader {
				role = " (leader, last; leadership handed over first)"
			}
			ch.Add("!", fmt.Sprintf("restart %s %s -> %s", m.Name, s.from, s.from+1), s.verb+role)
		}
	}
	if ch.Empty() {
		env.Logf("etcd_enable_tls: every member is at phase %s or past it", j.to)
		return ch, nil
	}
	ch.Disruptive = "restarts every member up to three times, one at a time, and moves peer URLs to https"
	return ch, nil
}

// read finds the member list through whichever scheme answers (TLS
// first), maps it to the inventory and reads each member's phase, then
// checks health through the scheme every member serves in those phases
// (plain HTTP while any member is still off, TLS after). It refuses,
// before anything, a member list that is not the inventory's and an
// unhealthy cluster, except for the one member a killed run can leave cut
// off between its member update and its restart.
func (j *job) read(ctx context.Context, env *modules.Env) (*live, *etcdclient.Health, error) {
	var list []*etcdserverpb.Member
	var errs []string
	for _, c := range []*etcd.Cluster{j.tls, j.plain} {
		h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, etcdclient.Dialer(c, env), etcdclient.CheckOptions{})
		switch {
		case err != nil:
			errs = append(errs, err.Error())
		case h.ListError != "":
			errs = append(errs, h.ListError)
		default:
			list = h.List
		}
		if list != nil {
			break
		}
	}
	if list == nil {
		return nil, nil, fmt.Errorf("etcd_enable_tls: no member answered over https or http: %s", strings.Join(errs, "; "))
	}
	l := &live{phase: map[string]etcd.TLSPhase{}, id: map[string]uint64{}}
	byName := map[string]*etcdserverpb.Member{}
	for _, m := range list {
		byName[m.Name] = m
	}
	var problems []string
	lowest := etcd.TLSOn
	for _, m := range j.tls.Members {
		lm := byName[m.Name]
		if lm == nil {
			problems = append(problems, fmt.Sprintf("%s is in the inventory but not in the member list (scale-out.yml adds it)", m.Name))
			continue
		}
		delete(byName, m.Name)
		l.phase[m.Host] = etcd.PhaseOf(lm.ClientURLs, lm.PeerURLs)
		l.id[m.Host] = lm.ID
		lowest = min(lowest, l.phase[m.Host])
	}
	for name := range byName {
		problems = append(problems, fmt.Sprintf("member %q is not in the inventory", name))
	}
	if len(problems) > 0 {
		return nil, nil, fmt.Errorf("etcd_enable_tls: refusing, nothing was changed: %s", strings.Join(problems, "; "))
	}
	c := j.tls
	if lowest == etcd.TLSOff {
		c = j.plain
	}
	h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, etcdclient.Dialer(c, env), etcdclient.CheckOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("etcd_enable_tls: %w", err)
	}
	if l.cutOff(h) == nil && !h.Healthy() {
		// A run killed during a restart leaves that member starting:
		// the health a rolling module's plan judges waits for it (a
		// member stopped for good is judged at once, --check never waits).
		if h, err = etcdclient.Preflight(ctx, c, env, etcdclient.CheckOptions{}, j.timeout); err != nil {
			return nil, nil, fmt.Errorf("etcd_enable_tls: %w", err)
		}
	}
	l.down = l.cutOff(h)
	if probs := h.Problems(); len(probs) > 0 && l.down == nil {
		return nil, nil, fmt.Errorf("etcd_enable_tls: refusing, nothing was changed: the cluster is not healthy: %s", strings.Join(probs, "; "))
	}
	return l, h, nil
}

// cutOff is the one member a killed run can leave cut off from its peers
// (its peer URL already https in the member list, its listener not yet),
// when it is the cluster's only problem; else nil.
func (l *live) cutOff(h *etcdclient.Health) []string {
	var down []string
	for _, mh := range h.Members {
		if !mh.Healthy && l.phase[mh.Host] >= etcd.TLSPeer {
			down = append(down, mh.Host)
		}
	}
	if len(down) != 1 || len(h.Unhealthy()) != 1 {
		return nil
	}
	return down
}

// Apply resumes a member left cut off, then runs the three rolls, each
// over the members still before its phase.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	j, ok := ch.Payload.(*job)
	if !ok {
		return nil, errors.New("etcd_enable_tls: plan payload missing")
	}
	l, _, err := j.read(ctx, env)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, host := range l.down {
		if err := j.restartAt(ctx, env, host, l.phase[host]); err != nil {
			return nil, fmt.Errorf("etcd_enable_tls: resuming %s: %w", host, err)
		}
		if _, err := etcdclient.WaitHealthy(ctx, j.tls, env.StateDir, etcdclient.Dialer(j.tls, env), etcdclient.WaitOptions{Timeout: j.timeout, Log: env.Logf}); err != nil {
			return nil, fmt.Errorf("etcd_enable_tls: %s restarted with its TLS peer listener: %w", host, err)
		}
		done = append(done, host+" resumed")
	}
	for _, from := range []etcd.TLSPhase{etcd.TLSOff, etcd.TLSBoth, etcd.TLSPeer} {
		if from >= j.to {
			break
		}
		if l, _, err = j.read(ctx, env); err != nil {
			return nil, err
		}
		var members []etcd.Member
		for _, m := range j.tls.Members {
			if l.phase[m.Host] == from {
				members = append(members, m)
			}
		}
		if len(members) == 0 {
			continue
		}
		// Off -> both: every member still serves http. From both on, every
		// member serves https.
		c := j.tls
		if from == etcd.TLSOff {
			c = j.plain
		}
		opt := roll.Options{Cluster: c, StateDir: env.StateDir, Dial: etcdclient.Dialer(c, env), Timeout: j.timeout,
			Verb: fmt.Sprintf("TLS %s -> %s", from, from+1), Log: env.Log, Reconnect: roll.ClientReconnect}
		prog, err := roll.Run(ctx, opt, members, func(ctx context.Context, m etcd.Member) error {
			if from == etcd.TLSBoth {
				if err := j.updatePeerURL(ctx, env, m, l.id[m.Host]); err != nil {
					return err
				}
			}
			return j.restartAt(ctx, env, m.Host, from+1)
		})
		if err != nil {
			return nil, fmt.Errorf("etcd_enable_tls: stopped in phase %s -> %s: %w (%s); run it again to go on", from, from+1, err, prog)
		}
		for _, m := range prog.Done {
			done = append(done, fmt.Sprintf("%s %s->%s", m.Name, from, from+1))
		}
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch,
		Msg:  fmt.Sprintf("every member at phase %s: %s", j.to, strings.Join(done, ", ")),
		Data: map[string]any{"steps": done}}, nil
}

// updatePeerURL moves m's peer URL to https through the membership API.
func (j *job) updatePeerURL(ctx context.Context, env *modules.Env, m etcd.Member, id uint64) error {
	cli, err := etcdclient.NewClient(ctx, j.tls, env.StateDir, etcdclient.Dialer(j.tls, env))
	if err != nil {
		return err
	}
	defer cli.Close()
	uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.MemberUpdate(uctx, id, []string{m.HTTPSPeerURL()}); err != nil {
		return fmt.Errorf("member update %s to %s: %w", m.Name, m.HTTPSPeerURL(), err)
	}
	env.Logf("%s: peer URL is now %s in the member list", m.Name, m.HTTPSPeerURL())
	return nil
}

// restartAt writes host's etcd.yaml for phase p and restarts etcd. The
// restart happens even when the file was already so: a run killed between
// the two left etcd on the old one.
func (j *job) restartAt(ctx context.Context, env *modules.Env, host string, p etcd.TLSPhase) error {
	c, err := j.tls.AtPhase(host, p)
	if err != nil {
		return err
	}
	if p == etcd.TLSOn {
		c = j.tls // site.yml's own model: the config it then finds converged
	}
	args, err := etcd_config.HostArgs(c, host, j.args.Str("base_dir", ""), env.StateDir, env.Vars,
		modules.Args{"template": j.args.Str("template", etcd_config.DefaultTemplate)})
	if err != nil {
		return err
	}
	w, err := env.Writer(host)
	if err != nil {
		return err
	}
	res, err := w.Apply(ctx, "etcd_config", args)
	if err != nil {
		return err
	}
	if res.Status == modules.StatusFailed {
		return fmt.Errorf("etcd.yaml for phase %s: %s", p, res.Msg)
	}
	if _, err := command.Run(ctx, w, "systemctl", "restart", etcd.UnitName); err != nil {
		return fmt.Errorf("restart in phase %s: %w", p, err)
	}
	return nil
}
