package etcd_proxy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/hostprobe"
)

// inputs are the files a proxy reads when it starts and only then: its
// unit, the binary, its certificates (the grpc-proxy loads them once),
// and the endpoints file unless the proxy follows membership itself.
func inputs(c *etcd.Cluster, px etcd.Proxy) []string {
	out := []string{etcd.ProxyUnitPath, path.Join(c.Paths.BinDir, "etcd")}
	if !px.AutoSync(c.Version) {
		out = append(out, etcd.ProxyEndpointsFile)
	}
	for _, f := range []string{"ca.crt", "client.crt", "server.crt"} {
		out = append(out, path.Join(etcd.ProxyPKIDir, f))
	}
	return out
}

type restartStep struct {
	Host, Reason string
}

type restartPlan struct {
	cluster *etcd.Cluster
	steps   []restartStep
	timeout time.Duration
}

// planRestart picks the notified proxies (every proxy of the play, as a
// plain task) that started before one of their inputs last changed: only
// those serve something stale. A run killed half-way finds the rest still
// stale and restarts them when run again. Under --check the inputs have
// not changed yet, so every notified running proxy is listed.
func planRestart(ctx context.Context, env *modules.Env, c *etcd.Cluster, args modules.Args) (*modules.Change, error) {
	timeout, _ := args.Duration("timeout", defaultTimeout)
	var targets []etcd.Proxy
	notified := map[string]bool{}
	for _, h := range env.Notified {
		notified[h] = true
	}
	hosts := env.Remotes()
	for _, px := range c.Proxies {
		if _, inPlay := hosts[px.Host]; inPlay && (env.Notified == nil || notified[px.Host]) {
			targets = append(targets, px)
		}
	}
	facts := make([]*hostprobe.Facts, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, px := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			facts[i], errs[i] = hostprobe.Ask(ctx, hosts[px.Host], hostprobe.Query{Units: []string{etcd.ProxyUnit}, Paths: inputs(c, px)})
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", px.Host, errs[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("etcd_proxy restart: %w", err)
	}
	p := &restartPlan{cluster: c, timeout: timeout}
	for i, px := range targets {
		u := facts[i].Units[etcd.ProxyUnit]
		newest, what := facts[i].Newest(inputs(c, px))
		switch {
		case !u.Running():
			env.Logf("%s: the proxy is %s, nothing to restart", px.Host, u.Active)
		case env.Check:
			p.steps = append(p.steps, restartStep{px.Host, "notified: its unit, binary, certificates or (gateway) member list change"})
		case !u.Started.IsZero() && newest.After(u.Started):
			p.steps = append(p.steps, restartStep{px.Host, what + " changed after the proxy started"})
		default:
			env.Logf("%s: the proxy started after its last input change, no restart needed", px.Host)
		}
	}
	if len(p.steps) == 0 {
		return &modules.Change{}, nil
	}
	ch := &modules.Change{Payload: p, Disruptive: "restarts client proxies one at a time (their local clients reconnect)"}
	for i, s := range p.steps {
		ch.Add("!", "restart "+etcd.ProxyUnit+" on "+s.Host, fmt.Sprintf("%d/%d: %s", i+1, len(p.steps), s.Reason))
	}
	return ch, nil
}

// applyRestart restarts one proxy at a time and waits until it serves
// again before the next, so a host's clients lose their proxy only while
// it restarts and never two hosts at once.
func applyRestart(ctx context.Context, env *modules.Env, ch *modules.Change, p *restartPlan) (*modules.Result, error) {
	var done []string
	for _, s := range p.steps {
		px, err := p.cluster.Proxy(s.Host)
		if err != nil {
			return nil, err
		}
		w, err := env.Writer(s.Host)
		if err != nil {
			return nil, fmt.Errorf("etcd_proxy restart: %w", err)
		}
		env.Logf("restarting the %s on %s (%s)", px.Mode, s.Host, s.Reason)
		if _, err := command.Run(ctx, w, "systemctl", "restart", etcd.ProxyUnit); err != nil {
			return nil, fmt.Errorf("etcd_proxy restart on %s: %w (done: %s)", s.Host, err, list(done))
		}
		if err := waitServing(ctx, env, w, p.cluster, *px, p.timeout); err != nil {
			return nil, fmt.Errorf("etcd_proxy restart on %s: %w (done: %s; the rest are left as they were)", s.Host, err, list(done))
		}
		done = append(done, s.Host)
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch,
		Msg: "restarted the proxies on " + list(done) + " one at a time", Data: map[string]any{"restarted": done}}, nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
