// Package etcd_health is the wait-until-healthy task: it passes once every
// member (or the listed ones) answers a linearizable read through its own
// client URL, the members agree on a leader and no alarm is raised, and
// fails after a timeout naming each unhealthy member and why. It never
// changes anything, so it always reports ok.
package etcd_health

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

func init() { modules.Register("etcd_health", Module{}) }

// Module is the etcd_health module.
type Module struct{}

// RunsOnController marks etcd_health as controller-side: it talks to the
// etcd API with the etcdplay client certificate, which stays on the
// controller.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	"members":       {Kind: modules.List},
	"timeout":       {Kind: modules.Duration},
	"probe_timeout": {Kind: modules.Duration},
}

const defaultTimeout = 60 * time.Second

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	return spec.Check(args)
}

// Plan waits for the cluster. Under --check it looks once instead: on bare
// hosts nothing is running yet, and a dry run must not fail for that.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	timeout, _ := args.Duration("timeout", defaultTimeout)
	probe, _ := args.Duration("probe_timeout", 3*time.Second)
	opt := etcdclient.CheckOptions{Members: args.Strings("members"), ProbeTimeout: probe}
	if _, err := c.Select(opt.Members); err != nil {
		return nil, fmt.Errorf("etcd_health: %w", err)
	}
	dial := etcdclient.Dialer(c, env)
	if env.Check {
		h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, dial, opt)
		switch {
		case err != nil:
			env.Logf("etcd_health (check mode): not checked: %v", err)
		case !h.Healthy():
			env.Logf("etcd_health (check mode): not healthy now (%s); apply waits up to %s", strings.Join(h.Problems(), "; "), timeout)
		}
		return &modules.Change{}, nil
	}
	h, err := etcdclient.WaitHealthy(ctx, c, env.StateDir, dial, etcdclient.WaitOptions{CheckOptions: opt, Timeout: timeout, Log: env.Log})
	if err != nil {
		return nil, fmt.Errorf("etcd_health: %w", err)
	}
	if l, ok := h.Leader(); ok {
		env.Logf("etcd healthy: %d members, leader %s", len(h.Members), l.Name)
	}
	return &modules.Change{}, nil
}

// Apply is never called: Plan never returns actions.
func (Module) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	return &modules.Result{Status: modules.StatusOK}, nil
}
