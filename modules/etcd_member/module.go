// Package etcd_member is the etcd_member module: it changes an etcd
// cluster's membership to match the inventory, one quorum-safe step at a
// time. A new member joins as a learner, its host is configured with
// initial-cluster-state existing and an initial-cluster of the current
// members plus itself (an old data dir moved aside, never deleted), its
// etcd is started, and it is promoted once it has caught up; members named
// in remove are taken out and their hosts retired (etcd stopped and
// disabled, data moved aside); members named in replace are removed and
// joined afresh when they are not healthy at their inventory address.
//
// Before every step the quorum guard (etcd.CheckQuorum) runs against the
// live member list and each member's health, and a step that would run
// without, or leave the cluster without, a quorum is refused before
// anything is touched. Each step is confirmed in the member list before
// the next. A run that stopped half-way (a learner added, not promoted) is
// finished by the next run, which finds the learner in the member list.
//
// It runs on the controller, once for the play (run_once), with every
// member's connection in Env.Hosts.
package etcd_member

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd_config"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot"
	tmplmod "github.com/etcdplay/etcdplay/modules/template"
)

func init() { modules.Register("etcd_member", Module{}) }

// Module is the etcd_member module.
type Module struct{}

// RunsOnController marks etcd_member as controller-side.
func (Module) RunsOnController() {}

// Arguments Resolve adds: the joiner config template, loaded on the
// controller at compile time like etcd_config's.
const (
	argTemplateName = "_template_name"
	argTemplateText = "_template_text"
)

var spec = modules.Spec{
	// snapshot takes a verified snapshot (to the controller and the
	// store, like backup.yml) before a member is removed (scale in,
	// replacement); default true. The run stops if it fails.
	"snapshot": {Kind: modules.Bool},
	// members: inventory hosts that should be members (default: the etcd
	// group minus remove).
	"members": {Kind: modules.Any},
	// remove: member names (or inventory hosts, or hex ids) to take out, as
	// a list or a comma-separated string (-e remove=etcd4,etcd5).
	"remove": {Kind: modules.Any},
	// replace: members to replace when they are not a healthy voting
	// member at their inventory peer URL (replace-node.yml).
	"replace": {Kind: modules.Any},
	// update_peer_urls: move a member whose inventory peer URL changed
	// instead of refusing. This is the membership half of an address move
	// (etcdctl member update): the member itself must then run with the new
	// URLs (etcd_config and a restart), as enable-tls does.
	"update_peer_urls": {Kind: modules.Bool},
	// preflight: plan and run the quorum guard only; never change
	// anything (a runbook's first task, so a refusal comes before any
	// host is prepared).
	"preflight": {Kind: modules.Bool},
	// timeout bounds each wait: a learner catching up, a new member
	// becoming healthy, a change showing in the member list.
	"timeout": {Kind: modules.Duration},
	// template: the etcd.yaml template for joiners (as etcd_config).
	"template":           {Kind: modules.String},
	"heartbeat_interval": {Kind: modules.Int},
	"election_timeout":   {Kind: modules.Int},
	argTemplateName:      {Kind: modules.String},
	argTemplateText:      {Kind: modules.String},
}

const defaultTimeout = 2 * time.Minute

// Resolve loads the joiner's config template on the controller: the
// playbook's templates/ first, then the built-in one.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	if _, done := args[argTemplateText]; done {
		return args, nil
	}
	if err := spec.Check(args); err != nil {
		return nil, err
	}
	// A replacement that is not an inventory member is bad input (exit
	// 4, nothing reached), not a failed run. (A model that does not
	// build is reported by the variables' own checks.)
	if c, err := etcd.FromVars(rc.Vars); err == nil {
		for _, r := range names(args, "replace") {
			if _, err := c.Select([]string{r}); err != nil {
				return nil, &modules.ArgError{Arg: "replace", Msg: fmt.Sprintf("%q: the node to replace must be a host of the inventory's etcd group (%v)", r, err)}
			}
		}
	}
	name, text, err := tmplmod.Load(rc.BaseDir, args.Str("template", etcd_config.DefaultTemplate))
	if err != nil {
		return nil, &modules.ArgError{Arg: "template", Msg: err.Error()}
	}
	out := modules.Args{}
	for k, v := range args {
		out[k] = v
	}
	out[argTemplateName], out[argTemplateText] = name, text
	return out, nil
}

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	return spec.Check(args)
}

// names reads a list argument written as a YAML list or a comma-separated
// string (what -e can carry).
func names(args modules.Args, name string) []string {
	var out []string
	for _, s := range args.Strings(name) {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// desiredFrom reads what the task asks for against the inventory model.
func desiredFrom(c *etcd.Cluster, args modules.Args) (desired, error) {
	d := desired{Remove: names(args, "remove"), Replace: names(args, "replace"), UpdatePeerURLs: args.Bool("update_peer_urls", false)}
	for _, r := range d.Replace {
		if _, err := c.Select([]string{r}); err != nil {
			return d, &PlanError{fmt.Sprintf("replace %s: the replacement must be an inventory host of group etcd (%v)", r, err)}
		}
		if slices.Contains(d.Remove, r) {
			return d, &PlanError{fmt.Sprintf("%s is both to be replaced and removed", r)}
		}
	}
	removed := func(m etcd.Member) bool {
		return slices.Contains(d.Remove, m.Name) || slices.Contains(d.Remove, m.Host)
	}
	if want := names(args, "members"); len(want) > 0 {
		sel, err := c.Select(want)
		if err != nil {
			return d, &PlanError{"members: " + err.Error()}
		}
		for _, m := range sel {
			if removed(m) {
				return d, &PlanError{fmt.Sprintf("%s is both in members and in remove", m.Name)}
			}
		}
		d.Members = sel
		return d, nil
	}
	for _, m := range c.Members {
		if !removed(m) {
			d.Members = append(d.Members, m)
		}
	}
	if len(d.Members) == 0 {
		return d, &PlanError{"removing every member of the etcd group would leave no cluster"}
	}
	return d, nil
}

// joinHost is a joiner's host as Plan found it.
type joinHost struct {
	Stop      bool     // a stray etcd runs there: stop it first
	MoveAside []string // data dirs to move aside
}

// retire is what to do on the host of a removed member.
type retire struct {
	Host      string
	Name      string
	Stop      bool
	MoveAside []string
}

type payload struct {
	// Snapshot says to take a snapshot before the first step.
	Snapshot bool
	Cluster  *etcd.Cluster
	Desired  desired
	Steps    []step
	Joiners  map[string]joinHost // by inventory host
	Retire   []retire
	Suffix   string // UTC timestamp for moved-aside dirs
	TmplName string
	TmplText string
	Opts     etcd_config.Options
	Timeout  time.Duration
}

// Plan reads the live member list and health, decides the steps, runs the
// quorum guard over all of them, and looks at the hosts that would join or
// retire. It changes nothing.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, fmt.Errorf("etcd_member: %w", err)
	}
	d, err := desiredFrom(c, args)
	if err != nil {
		return nil, fmt.Errorf("etcd_member: %w", err)
	}
	timeout, err := args.Duration("timeout", defaultTimeout)
	if err != nil {
		return nil, err
	}
	cl := &cluster{model: c, stateDir: env.StateDir, dial: etcdclient.Dialer(c, env)}
	live, err := cl.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd_member: member list: %w", err)
	}
	steps, notes, err := planSteps(d, live)
	if err != nil {
		return nil, fmt.Errorf("etcd_member: %w", err)
	}
	for _, n := range notes {
		env.Logf("%s", n)
	}
	if err := etcd.CheckQuorum(guardView(live), guardSteps(steps)); err != nil {
		return nil, fmt.Errorf("etcd_member: %w (members: %s)", err, describeLive(live))
	}

	if n := votersAfter(live, steps); len(steps) > 0 && n%2 == 0 {
		env.Logf("note: the cluster will have %d voting members; an even size tolerates no more failures than %d (quorum %d)", n, n-1, etcd.Quorum(n))
	}
	p := &payload{
		Cluster: c, Desired: d, Steps: steps, Joiners: map[string]joinHost{}, Suffix: time.Now().UTC().Format("20060102T150405Z"),
		TmplName: args.Str(argTemplateName, ""), TmplText: args.Str(argTemplateText, ""), Timeout: timeout,
		Opts: etcd_config.Options{State: "existing",
			HeartbeatInterval: args.Int("heartbeat_interval", 0), ElectionTimeout: args.Int("election_timeout", 0)},
	}
	if p.TmplText == "" {
		if p.TmplName, p.TmplText, err = tmplmod.Load("", etcd_config.DefaultTemplate); err != nil {
			return nil, fmt.Errorf("etcd_member: %w", err)
		}
	}
	ch := &modules.Change{Payload: p}
	if args.Bool("snapshot", true) && removes(steps) && !args.Bool("preflight", false) {
		if err := etcd_snapshot.PlanBefore(ctx, ch, env, c, "a member is removed"); err != nil {
			return nil, fmt.Errorf("etcd_member: %w", err)
		}
		p.Snapshot = true
	}
	if err := planActions(ctx, env, p, ch); err != nil {
		return nil, fmt.Errorf("etcd_member: %w", err)
	}
	if args.Bool("preflight", false) {
		// Under --check the membership task itself shows these lines.
		if !env.Check {
			for _, a := range ch.Actions {
				env.Logf("membership plan: %s", a)
			}
		}
		return &modules.Change{}, nil
	}
	if ch.Empty() {
		return &modules.Change{}, nil
	}
	ch.Disruptive = "changes the cluster's membership"
	return ch, nil
}

// Apply carries out the steps one at a time, guarding and confirming each.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	p, ok := ch.Payload.(*payload)
	if !ok {
		return nil, errors.New("etcd_member: plan payload missing")
	}
	a := &applier{p: p, env: env, hosts: env.Writers(),
		cl: &cluster{model: p.Cluster, stateDir: env.StateDir, dial: etcdclient.Dialer(p.Cluster, env)}}
	live, err := a.cl.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd_member: member list: %w", err)
	}
	lctx, unlock, err := a.cl.lock(ctx, live, p.Timeout, env.Logf)
	if err != nil {
		return nil, fmt.Errorf("etcd_member: %w", err)
	}
	defer unlock()
	// Every step runs under the lock: when it is lost, the next stops.
	ctx = lctx
	// Under the lock, the plan must still hold: another run may have
	// changed the membership between this run's plan and its lock.
	live, err = a.cl.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd_member: member list: %w", err)
	}
	if now, _, err := planSteps(p.Desired, live); err != nil || stepsKey(now) != stepsKey(p.Steps) {
		return nil, fmt.Errorf("etcd_member: the membership changed since the plan (now: %s); nothing done, run again", describeLive(live))
	}
	var done []string
	if p.Snapshot {
		b, err := etcd_snapshot.Before(ctx, env, p.Cluster, "a member is removed")
		if err != nil {
			return nil, fmt.Errorf("etcd_member: nothing done: %w", err)
		}
		done = append(done, "snapshot "+b.Path)
	}
	for i, s := range p.Steps {
		what, err := a.step(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("etcd_member: step %d of %d: %w (done: %s)", i+1, len(p.Steps), err, orNone(done))
		}
		done = append(done, what)
	}
	for _, rt := range p.Retire {
		if err := a.retire(ctx, rt); err != nil {
			return nil, fmt.Errorf("etcd_member: retire %s: %w (done: %s)", rt.Host, err, orNone(done))
		}
		done = append(done, "retired "+rt.Host)
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch, Msg: strings.Join(done, "; "),
		Data: map[string]any{"done": done}}, nil
}

// removes says a step takes a member out of the cluster.
func removes(steps []step) bool {
	for _, s := range steps {
		if s.Kind == stepRemove {
			return true
		}
	}
	return false
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, "; ")
}
