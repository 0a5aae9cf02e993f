// Package etcd_restart is the rolling restart of etcd members: the handler
// that config, certificate, binary and unit changes notify. It restarts one
// member at a time, followers first and the leader last, and waits after
// each until the whole cluster is healthy again, so a quorum is never at
// risk and clients see at most one leader change.
//
// It runs on the controller: it needs every member's connection (to probe
// and restart) and the etcd API (to find the leader and gate on health).
package etcd_restart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/roll"
)

func init() { modules.Register("etcd_restart", Module{}) }

// Module is the etcd_restart module.
type Module struct{}

// RunsOnController marks etcd_restart as controller-side.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	// members limits the roll to these hosts; by default the hosts that
	// notified the handler (or, as a plain task, every member).
	"members": {Kind: modules.List},
	// timeout bounds the wait for a healthy cluster after each restart.
	"timeout": {Kind: modules.Duration},
	// restart_timeout bounds `systemctl restart` itself.
	"restart_timeout": {Kind: modules.Duration},
}

const (
	defaultTimeout        = 60 * time.Second
	defaultRestartTimeout = 3 * time.Minute
)

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	return spec.Check(args)
}

// step is one member to restart.
type step struct {
	Host, Name string
	Reason     string
}

type payload struct {
	Cluster        *etcd.Cluster
	Steps          []step // in planned order; Apply re-checks the leader
	Timeout        time.Duration
	RestartTimeout time.Duration
}

// Plan finds which notified members run an etcd older than its inputs,
// checks the cluster is healthy enough to lose one member at a time, and
// orders them followers first, leader last.
//
// Under --check the inputs have not changed yet, so every notified running
// member is planned: that is what apply would restart. As a plain task it
// restarts only members already on older inputs: what a run stopped
// mid-roll leaves, with nothing left to notify the handler.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	timeout, _ := args.Duration("timeout", defaultTimeout)
	rtimeout, _ := args.Duration("restart_timeout", defaultRestartTimeout)
	targets, err := targetMembers(c, args.Strings("members"), env.Notified)
	if err != nil {
		return nil, fmt.Errorf("etcd_restart: %w", err)
	}
	hosts := env.Remotes()
	if env.Notified == nil && len(args.Strings("members")) == 0 {
		// As a plain task: members on hosts this play could not reach
		// are not checked (the roll's guard still counts them).
		var reachable []etcd.Member
		for _, m := range targets {
			if hosts[m.Host] == nil {
				env.Logf("%s: not reachable in this play, not checked for a pending restart", m.Name)
				continue
			}
			reachable = append(reachable, m)
		}
		targets = reachable
	}

	probes := make([]hostProbe, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, m := range targets {
		r := hosts[m.Host]
		if r == nil {
			errs[i] = fmt.Errorf("%s: no connection to the host in this play", m.Host)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			probes[i], errs[i] = probeHost(ctx, r, c)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", m.Host, errs[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("etcd_restart: %w", err)
	}

	var todo []step
	for i, m := range targets {
		if needed, why := probes[i].restartNeeded(env.Check && env.Notified != nil); needed {
			todo = append(todo, step{Host: m.Host, Name: m.Name, Reason: why})
		} else {
			env.Logf("%s: %s, no restart needed", m.Name, why)
		}
	}
	if len(todo) == 0 {
		return &modules.Change{}, nil
	}

	// Quorum guard: never take a member down from a cluster that is not
	// fully healthy; the restart could be the failure that loses quorum.
	// A member a killed roll left restarting is waited for, not refused.
	h, err := etcdclient.Preflight(ctx, c, env, etcdclient.CheckOptions{}, timeout)
	if err != nil {
		return nil, fmt.Errorf("etcd_restart: %w", err)
	}
	if !h.Healthy() {
		probs := strings.Join(h.Problems(), "; ")
		if !env.Check {
			return nil, fmt.Errorf("etcd_restart: refusing to start a rolling restart of %s: the cluster is not healthy: %s", names(todo), probs)
		}
		// Under --check, earlier tasks have not started stopped members
		// yet: apply checks again before the first restart.
		env.Logf("check mode: the cluster is not healthy now (%s); apply refuses the rolling restart unless it is by then", probs)
	}
	leader := ""
	if l, ok := h.Leader(); ok {
		leader = l.Host
	}
	todo = order(todo, leader)
	ch := &modules.Change{Payload: &payload{Cluster: c, Steps: todo, Timeout: timeout, RestartTimeout: rtimeout},
		Disruptive: "restarts members one at a time"}
	for i, s := range todo {
		role := "follower"
		if s.Host == leader {
			role = "leader, last"
		}
		ch.Add("!", "restart "+s.Name, fmt.Sprintf("%d/%d, %s: %s", i+1, len(todo), role, s.Reason))
	}
	return ch, nil
}

// Apply restarts the members one at a time through the rolling primitive:
// it re-checks the cluster and the leader before each restart (the leader
// can move during the roll) and hands leadership over before the leader's.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	p, ok := ch.Payload.(*payload)
	if !ok {
		return nil, errors.New("etcd_restart: plan payload missing")
	}
	c := p.Cluster
	hostNames := make([]string, len(p.Steps))
	for i, s := range p.Steps {
		hostNames[i] = s.Host
	}
	members, err := c.Select(hostNames)
	if err != nil {
		return nil, fmt.Errorf("etcd_restart: %w", err)
	}
	opt := roll.Options{Cluster: c, StateDir: env.StateDir, Dial: etcdclient.Dialer(c, env), Timeout: p.Timeout, Verb: "restart", Log: env.Log, Reconnect: roll.ClientReconnect,
		Pending: func(ctx context.Context, m etcd.Member) (bool, string, error) {
			r, err := env.Writer(m.Host)
			if err != nil {
				return false, "", err
			}
			pr, err := probeHost(ctx, r, c)
			if err != nil {
				return false, "", err
			}
			needed, why := pr.restartNeeded(false)
			return needed, why, nil
		}}
	prog, err := roll.Run(ctx, opt, members, func(ctx context.Context, m etcd.Member) error {
		r, err := env.Writer(m.Host)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, p.RestartTimeout)
		defer cancel()
		if _, err := command.Run(rctx, r, "systemctl", "restart", unitName); err != nil {
			return fmt.Errorf("%w%s", err, journal(ctx, r))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("etcd_restart: stopped the rolling restart: %w (%s)", err, prog)
	}
	done := make([]string, len(prog.Done))
	for i, m := range prog.Done {
		done[i] = m.Name
	}
	if len(done) == 0 {
		return &modules.Result{Status: modules.StatusOK, Change: ch,
			Msg:  "no member needed a restart any more (" + prog.String() + ")",
			Data: map[string]any{"restarted": done}}, nil
	}
	return &modules.Result{
		Status: modules.StatusChanged,
		Change: ch,
		Msg:    "restarted " + strings.Join(done, ", ") + " one at a time",
		Data:   map[string]any{"restarted": done},
	}, nil
}

// journal fetches the end of etcd's log on r, for a failed restart's error.
func journal(ctx context.Context, r modules.HostWriter) string {
	jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := command.Run(jctx, r, "journalctl", "-u", unitName, "-n", "10", "--no-pager", "-o", "cat")
	if err != nil || strings.TrimSpace(out) == "" {
		return ""
	}
	return "\nlast lines of etcd's journal:\n" + out
}

// order puts followers first, in their given order, and the leader last.
func order(steps []step, leaderHost string) []step {
	return roll.OrderBy(steps, func(s step) string { return s.Host }, leaderHost)
}

// targetMembers picks the members to consider: args.members, else the
// notifying hosts, else (a plain task) every member; always in inventory
// order. Notifying hosts outside the etcd group are ignored.
func targetMembers(c *etcd.Cluster, explicit, notified []string) ([]etcd.Member, error) {
	if len(explicit) > 0 {
		sel, err := c.Select(explicit)
		if err != nil {
			return nil, err
		}
		return inInventoryOrder(c, sel), nil
	}
	if notified == nil {
		return append([]etcd.Member(nil), c.Members...), nil
	}
	set := map[string]bool{}
	for _, h := range notified {
		set[h] = true
	}
	var out []etcd.Member
	for _, m := range c.Members {
		if set[m.Host] {
			out = append(out, m)
		}
	}
	return out, nil
}

func inInventoryOrder(c *etcd.Cluster, sel []etcd.Member) []etcd.Member {
	set := map[string]bool{}
	for _, m := range sel {
		set[m.Host] = true
	}
	var out []etcd.Member
	for _, m := range c.Members {
		if set[m.Host] {
			out = append(out, m)
		}
	}
	return out
}

func names(steps []step) string {
	if len(steps) == 0 {
		return "none"
	}
	n := make([]string, len(steps))
	for i, s := range steps {
		n[i] = s.Name
	}
	return strings.Join(n, ", ")
}
