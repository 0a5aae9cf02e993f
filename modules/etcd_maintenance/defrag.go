package etcd_maintenance

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/roll"
)

// defragModule is etcd_defrag.
type defragModule struct{ controllerSide }

var defragSpec = modules.Spec{
	// free_above: defragment a member whose db holds more free space than
	// this (dbSize - dbSizeInUse; default 200MiB, what ahrtr/etcd-defrag
	// and etcd-druid use).
	"free_above": {Kind: modules.String},
	// quota_fraction: ... or whose db is above this fraction of
	// etcd_quota_backend_bytes (default 0.8).
	"quota_fraction": {Kind: modules.String},
	// force: every member, whatever the rule says.
	"force": {Kind: modules.Bool},
	// timeout bounds one member's defrag, and the wait after it.
	"timeout": {Kind: modules.Duration},
}

const defaultDefragTimeout = 5 * time.Minute

func (defragModule) Validate(args modules.Args) error {
	if err := defragSpec.Check(args); err != nil {
		return err
	}
	if _, err := etcd.DefragRuleOf(args, &etcd.Cluster{}); err != nil {
		return err
	}
	return nil
}

type defragJob struct {
	Cluster *etcd.Cluster
	Members []etcd.Member
	Before  map[string]int64 // host -> db size before
	Timeout time.Duration
}

// Plan shows every member's db size, in-use size and verdict, and orders
// the ones to defragment followers first, the leader last.
func (defragModule) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	r, err := etcd.DefragRuleFor(args, env.Vars, env.Host, c)
	if err != nil {
		return nil, err
	}
	h, err := healthFor(ctx, env, c, "etcd_defrag")
	if err != nil {
		return nil, err
	}
	leader, _ := h.Leader()
	j := &defragJob{Cluster: c, Before: map[string]int64{}, Timeout: timeoutArg(args, defaultDefragTimeout)}
	reasons := map[string]string{}
	for _, mh := range h.Members {
		why := r.Why(mh.DBSize, mh.DBSizeInUse)
		sizes := fmt.Sprintf("db %s, in use %s", mib(mh.DBSize), mib(mh.DBSizeInUse))
		if why == "" {
			env.Logf("etcd_defrag: %s: %s: no defrag needed", mh.Name, sizes)
			continue
		}
		reasons[mh.Host] = sizes + ": " + why
		j.Before[mh.Host] = mh.DBSize
	}
	ch := &modules.Change{Payload: j}
	for _, m := range roll.Order(c.Members, leader.Host) {
		if reasons[m.Host] == "" {
			continue
		}
		j.Members = append(j.Members, m)
		role := "follower"
		if m.Host == leader.Host {
			role = "leader, last"
		}
		ch.Add("~", "defrag "+m.Name, fmt.Sprintf("%d, %s: %s", len(j.Members), role, reasons[m.Host]))
	}
	if !ch.Empty() {
		ch.Disruptive = "blocks each defragmented member's reads and writes while it runs"
	}
	return ch, nil
}

// Apply defragments one member at a time; each must answer and catch up
// before the next. It reports the bytes reclaimed.
func (defragModule) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	j := ch.Payload.(*defragJob)
	c, dial := j.Cluster, etcdclient.Dialer(j.Cluster, env)
	opt := roll.Options{Cluster: c, StateDir: env.StateDir, Dial: dial, Timeout: j.Timeout, Verb: "defrag", Log: env.Log, IgnoreAlarms: []string{nospace}}
	prog, err := roll.Run(ctx, opt, j.Members, func(ctx context.Context, m etcd.Member) error {
		dctx, cancel := context.WithTimeout(ctx, j.Timeout)
		defer cancel()
		cli, err := etcdclient.NewMemberClient(dctx, c, m, env.StateDir, dial)
		if err != nil {
			return err
		}
		defer cli.Close()
		_, err = cli.Defragment(dctx, m.ClientURL)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("etcd_defrag: stopped: %w (%s)", err, prog)
	}
	h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, dial, etcdclient.CheckOptions{IgnoreAlarms: []string{nospace}})
	if err != nil {
		return nil, err
	}
	var reclaimed int64
	per := map[string]any{}
	for _, mh := range h.Members {
		if b, ok := j.Before[mh.Host]; ok && mh.DBSize > 0 {
			reclaimed += b - mh.DBSize
			per[mh.Name] = b - mh.DBSize
		}
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch,
		Data: map[string]any{"reclaimed_bytes": reclaimed, "reclaimed": per},
		Msg:  fmt.Sprintf("defragmented %d member(s) one at a time, %s reclaimed", len(prog.Done), mib(reclaimed))}, nil
}
