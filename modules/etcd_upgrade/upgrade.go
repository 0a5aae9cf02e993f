// Package etcd_upgrade is the rolling upgrade of a running cluster to
// etcd_version (or the version argument), the way operators want it done
// and the way most failed upgrades elsewhere were not:
//
//  1. preflight, before anything changes: every member healthy with one
//     leader and no alarm, and the jump one that etcd supports
//     (etcd.CheckJump: patches freely, one minor up at a time, 3.5 -> 3.6
//     only from v3.5.26); the new release must already be staged on every
//     host beside the running one (etcd_binary with stage: true);
//  2. a verified snapshot to the controller right before the first member
//     changes; if it fails, nothing changes;
//  3. member by member through the rolling primitive (followers first, the
//     leader last after handing leadership over): switch that host's links
//     to the new release, restart, wait until it serves the new version,
//     the cluster is healthy and it has caught up;
//  4. the cluster version (not only the servers') reaches the new minor,
//     read from etcd's /version endpoint.
//
// Members already on the target version are not touched again, so a run
// killed half-way finishes where it stopped.
//
// With mode: converge (site.yml), it only refuses a version change on a
// running cluster and names the runbook: site.yml never swaps binaries
// under a running cluster.
package etcd_upgrade

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/roll"
	"github.com/etcdplay/etcdplay/modules/etcd_binary"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot"
)

func init() { modules.Register("etcd_upgrade", Module{}) }

// Module is the etcd_upgrade module.
type Module struct{}

// RunsOnController marks etcd_upgrade as controller-side.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	// version overrides etcd_version.
	"version": {Kind: modules.String, Valid: etcd.ValidVersion},
	// mode: run (the upgrade), preflight (its checks only, changing
	// nothing), converge (site.yml: refuse a version change, name the
	// runbook).
	"mode": {Kind: modules.String, OneOf: []string{"run", "preflight", "converge"}},
	// snapshot takes a verified backup before the first member changes.
	"snapshot": {Kind: modules.Bool},
	// timeout bounds each member's wait (version, health, catch-up) and
	// the wait for the cluster version.
	"timeout": {Kind: modules.Duration},
}

const (
	defaultTimeout = 2 * time.Minute
	unit           = etcd.UnitName
	restartTimeout = 3 * time.Minute
)

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	return spec.Check(args)
}

// memberStep is one member to move, with the version it runs now.
type memberStep struct {
	Member etcd.Member
	From   etcd.Version
}

type job struct {
	Cluster   *etcd.Cluster
	Preflight bool // checks only: Apply changes nothing
	// Downgrade: one minor down, through etcd's downgrade API first.
	Downgrade bool
	From, To  etcd.Version
	Steps     []memberStep // followers first, the leader last (as planned)
	Snapshot  bool
	Timeout   time.Duration
	// ClusterOnly: every member already runs To; only the cluster version
	// is still to be confirmed.
	ClusterOnly bool
	Install     map[string]modules.Args // host -> etcd_install arguments that switch its links
}

// Plan reads the live cluster and lays out the upgrade. It changes nothing.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := cluster(env, args)
	if err != nil {
		return nil, err
	}
	mode := args.Str("mode", "run")
	timeout, _ := args.Duration("timeout", defaultTimeout)
	dial := etcdclient.Dialer(c, env)
	var h *etcdclient.Health
	if mode == "run" {
		// A rerun right after a killed upgrade finds the member it was
		// restarting still on its way back: wait for it, then judge.
		h, err = etcdclient.Preflight(ctx, c, env, etcdclient.CheckOptions{}, timeout)
	} else {
		h, err = etcdclient.CheckHealth(ctx, c, env.StateDir, dial, etcdclient.CheckOptions{})
	}
	if mode == "converge" {
		if err := schemeGuard(ctx, env, c, h); err != nil {
			return nil, err
		}
	}
	if err != nil {
		if mode == "converge" {
			return &modules.Change{}, nil // no cluster to guard yet (no client certificate)
		}
		return nil, fmt.Errorf("etcd_upgrade: %w", err)
	}
	running := map[string]etcd.Version{}
	for _, mh := range h.Members {
		if mh.Version == "" {
			continue
		}
		v, err := etcd.ParseVersion("v" + mh.Version)
		if err != nil {
			return nil, fmt.Errorf("etcd_upgrade: %s reports version %q: %w", mh.Name, mh.Version, err)
		}
		running[mh.Host] = v
	}
	to := c.Version
	if mode == "converge" {
		return converge(c, running, to)
	}
	if probs := h.Problems(); len(probs) > 0 {
		return nil, fmt.Errorf("etcd_upgrade: preflight failed, nothing was changed: the cluster is not healthy: %s; "+
			"every member must be up with one leader and no alarm before an upgrade", strings.Join(probs, "; "))
	}
	// The jump is judged from the oldest member, or from the newest when
	// any member is newer than the target (a downgrade).
	from, newest := to, to
	for i, m := range c.Members {
		v, ok := running[m.Host]
		if !ok {
			continue
		}
		if i == 0 || v.Less(from) {
			from = v
		}
		if newest.Less(v) {
			newest = v
		}
	}
	if to.Less(newest) {
		from = newest
	}
	downgrade := to.Major == from.Major && to.Minor < from.Minor
	var why string
	if downgrade && modules.Args(env.Vars).Bool("allow_downgrade", false) {
		why, err = etcd.CheckDowngrade(from, to)
	} else {
		why, err = etcd.CheckJump(from, to)
	}
	if err != nil {
		return nil, fmt.Errorf("etcd_upgrade: preflight failed, nothing was changed: %w", err)
	}
	leader, _ := h.Leader()
	var steps []memberStep
	for _, m := range roll.Order(c.Members, leader.Host) {
		if v := running[m.Host]; v != to {
			steps = append(steps, memberStep{Member: m, From: v})
		}
	}
	j := &job{Cluster: c, Preflight: mode == "preflight", Downgrade: downgrade, From: from, To: to, Steps: steps, Snapshot: args.Bool("snapshot", true), Timeout: timeout, Install: map[string]modules.Args{}}
	ch := &modules.Change{Payload: j}
	if len(steps) == 0 {
		v, err := clusterVersion(ctx, c, env.StateDir, dial)
		if err != nil {
			return nil, fmt.Errorf("etcd_upgrade: %w", err)
		}
		if reached(v, to) {
			return &modules.Change{}, nil
		}
		j.ClusterOnly = true
		ch.Add("!", "cluster version "+minor(to), fmt.Sprintf("every member runs %s; the cluster version is %s: wait for it", to, v))
		return ch, nil
	}
	verb := "upgrade"
	if downgrade {
		verb = "downgrade"
	}
	ch.Add("!", fmt.Sprintf("%s etcd %s -> %s", verb, from, to), "allowed: "+why)
	if mode == "preflight" {
		// The release is fetched and verified on the controller now; the
		// staging task after this one pushes it.
		if _, err := etcd_binary.Fetch(ctx, c, env.StateDir, env.Logf); err != nil {
			return nil, fmt.Errorf("etcd_upgrade: preflight failed, nothing was changed: %w", err)
		}
		return ch, nil
	}
	if err := checkStaged(ctx, env, c, j); err != nil {
		return nil, fmt.Errorf("etcd_upgrade: preflight failed, nothing was changed: %w", err)
	}
	if j.Snapshot {
		if err := etcd_snapshot.PlanBefore(ctx, ch, env, c, "the first member changes"); err != nil {
			return nil, fmt.Errorf("etcd_upgrade: %w", err)
		}
	}
	if downgrade {
		ch.Add("!", "downgrade enable "+minor(to), fmt.Sprintf("etcd's downgrade API (validate, then enable); wait until the cluster version and every member's storage version are %s.0", minor(to)))
	}
	bins := filepath.Join(c.Paths.BinDir, "{"+strings.Join(etcd.Binaries, ",")+"}")
	for i, s := range steps {
		role := "follower"
		if s.Member.Host == leader.Host {
			role = "leader, last, leadership handed over first"
		}
		ch.Add("~", s.Member.Name, fmt.Sprintf("%d/%d, %s: %s links %s -> %s, restart, wait until it serves %s and has caught up",
			i+1, len(steps), role, bins, c.Paths.InstallDir(s.From), c.Paths.InstallDir(to), to))
	}
	ch.Add("!", "cluster version "+minor(to), "checked through the API once every member runs "+to.String())
	ch.Disruptive = fmt.Sprintf("%ss and restarts members one at a time", verb)
	return ch, nil
}

// schemeGuard is site.yml's other guard: a running cluster on plain HTTP
// while etcd_tls is true (or the reverse) is refused before anything, since
// rewriting and restarting members onto the other scheme cuts each one off
// from its peers. h is the check through the model's scheme (nil or
// without a member list when nothing answered that way).
func schemeGuard(ctx context.Context, env *modules.Env, c *etcd.Cluster, h *etcdclient.Health) error {
	var list []*etcdserverpb.Member
	if h != nil && h.ListError == "" {
		list = h.List
	} else {
		other := c.WithScheme(!c.TLS)
		if oh, err := etcdclient.CheckHealth(ctx, other, env.StateDir, etcdclient.Dialer(other, env), etcdclient.CheckOptions{}); err == nil && oh.ListError == "" {
			list = oh.List
		}
	}
	wrong := "http://"
	if !c.TLS {
		wrong = "https://"
	}
	var off []string
	for _, m := range list {
		if slices.ContainsFunc(append(slices.Clone(m.ClientURLs), m.PeerURLs...), func(u string) bool { return strings.HasPrefix(u, wrong) }) {
			off = append(off, fmt.Sprintf("%s (%s)", m.Name, etcd.PhaseOf(m.ClientURLs, m.PeerURLs)))
		}
	}
	if len(off) == 0 {
		return nil
	}
	if c.TLS {
		return &etcd.VarError{Var: "etcd_tls", Msg: fmt.Sprintf("is true but members of the running cluster still use plain HTTP: %s; nothing was changed. "+
			"A running cluster moves to TLS with `etcdplay apply playbooks/enable-tls.yml` (one member at a time, no downtime; a killed run is resumed by running it again)",
			strings.Join(off, ", "))}
	}
	return &etcd.VarError{Var: "etcd_tls", Msg: fmt.Sprintf("is false but members of the running cluster use TLS: %s; nothing was changed. "+
		"Set etcd_tls: true (etcdplay does not move a cluster back to plain HTTP)", strings.Join(off, ", "))}
}

// converge is site.yml's guard: a running member on another version than
// etcd_version is a version change, and those go through upgrade.yml.
func converge(c *etcd.Cluster, running map[string]etcd.Version, to etcd.Version) (*modules.Change, error) {
	var other []string
	for _, m := range c.Members {
		if v, ok := running[m.Host]; ok && v != to {
			other = append(other, m.Name+" runs "+v.String())
		}
	}
	if len(other) == 0 {
		return &modules.Change{}, nil
	}
	return nil, fmt.Errorf("etcd_upgrade: etcd_version is %s but %s: nothing was changed. A version change of a running cluster goes through "+
		"`etcdplay apply playbooks/upgrade.yml -e etcd_version=%s` (upgrade path checked, snapshot first, one member at a time)",
		to, strings.Join(other, ", "), to)
}

// checkStaged makes sure every host to upgrade has the new release
// unpacked and verified beside the running one, and keeps the arguments
// that will switch its links. Under --check the staging task before this
// one has not run: it is reported, not refused.
func checkStaged(ctx context.Context, env *modules.Env, c *etcd.Cluster, j *job) error {
	rel, err := etcd_binary.Fetch(ctx, c, env.StateDir, env.Logf)
	if err != nil {
		return err
	}
	hosts := env.Remotes()
	var missing []string
	for _, s := range j.Steps {
		r := hosts[s.Member.Host]
		if r == nil || !r.Reachable() {
			return fmt.Errorf("%s is not reachable in this play", s.Member.Host)
		}
		args := etcd_install.InstallArgs{
			Version: c.Version.String(), Tarball: filepath.Join(c.Paths.UploadDir, rel.HostName()), SHA256: rel.Files,
			InstallRoot: c.Paths.InstallRoot, BinDir: c.Paths.BinDir,
		}.Args()
		res, err := r.Plan(ctx, "etcd_install", args)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Member.Host, err)
		}
		if res.Status == modules.StatusFailed {
			return fmt.Errorf("%s: %s", s.Member.Host, res.Msg)
		}
		if res.Change != nil {
			for _, a := range res.Change.Actions {
				if a.Target == c.Paths.InstallDir(c.Version) {
					missing = append(missing, s.Member.Host)
				}
			}
		}
		j.Install[s.Member.Host] = args
	}
	if len(missing) > 0 {
		if env.Check {
			env.Logf("check mode: %s not staged on %s yet (the staging task does it)", c.Version, strings.Join(missing, ", "))
			return nil
		}
		return fmt.Errorf("etcd %s is not staged in %s on %s: run etcd_binary with stage: true first (upgrade.yml does)",
			c.Version, c.Paths.InstallDir(c.Version), strings.Join(missing, ", "))
	}
	return nil
}

// Apply takes the snapshot, then moves one member at a time.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	j, ok := ch.Payload.(*job)
	if !ok {
		return nil, errors.New("etcd_upgrade: plan payload missing")
	}
	c, dial, hosts := j.Cluster, etcdclient.Dialer(j.Cluster, env), env.Writers()
	data := map[string]any{"from": j.From.String(), "to": j.To.String()}
	if j.Preflight {
		return &modules.Result{Status: modules.StatusOK, Msg: ch.Actions[0].Target + ": " + ch.Actions[0].Detail}, nil
	}
	if !j.ClusterOnly {
		if j.Snapshot {
			b, err := etcd_snapshot.Before(ctx, env, c, "the upgrade")
			if err != nil {
				return nil, fmt.Errorf("etcd_upgrade: no member was changed: %w", err)
			}
			data["snapshot"] = b.Path
		}
		if j.Downgrade {
			if err := enableDowngrade(ctx, env, c, dial, j); err != nil {
				return nil, fmt.Errorf("etcd_upgrade: %w; no member's binary was changed", err)
			}
		}
		members := make([]etcd.Member, len(j.Steps))
		for i, s := range j.Steps {
			members[i] = s.Member
		}
		verb := "upgrade to "
		if j.Downgrade {
			verb = "downgrade to "
		}
		opt := roll.Options{Cluster: c, StateDir: env.StateDir, Dial: dial, Timeout: j.Timeout, Verb: verb + j.To.String(), Log: env.Log, Reconnect: roll.ClientReconnect,
			Pending: func(ctx context.Context, m etcd.Member) (bool, string, error) {
				if j.servesTarget(etcdclient.CheckHealth(ctx, c, env.StateDir, dial, etcdclient.CheckOptions{Members: []string{m.Host}})) {
					return false, "it already runs " + j.To.String() + " (another run did it)", nil
				}
				return true, "", nil
			}}
		prog, err := roll.Run(ctx, opt, members, func(ctx context.Context, m etcd.Member) error {
			return upgradeMember(ctx, env, hosts[m.Host], j, m, dial)
		})
		if err != nil {
			return nil, fmt.Errorf("etcd_upgrade: stopped: %w (%s); the members not done still run their old version: "+
				"fix the cause and run upgrade.yml again, it continues from here", err, prog)
		}
		done := make([]string, len(prog.Done))
		for i, m := range prog.Done {
			done[i] = m.Name
		}
		data["upgraded"] = done
	}
	v, err := waitClusterVersion(ctx, c, env.StateDir, dial, j.To, j.Timeout)
	if err != nil {
		return nil, fmt.Errorf("etcd_upgrade: every member runs %s but %w", j.To, err)
	}
	data["cluster_version"] = v
	return &modules.Result{Status: modules.StatusChanged, Change: ch, Data: data,
		Msg: fmt.Sprintf("etcd %s -> %s, one member at a time; cluster version %s", j.From, j.To, v)}, nil
}

// upgradeMember switches m's links to the new release, restarts it and
// waits until it serves the new version.
func upgradeMember(ctx context.Context, env *modules.Env, r modules.HostWriter, j *job, m etcd.Member, dial etcdclient.DialFunc) error {
	if r == nil {
		return fmt.Errorf("no connection to %s", m.Host)
	}
	res, err := r.Apply(ctx, "etcd_install", j.Install[m.Host])
	if err != nil {
		return err
	}
	if res.Status == modules.StatusFailed {
		return errors.New(res.Msg)
	}
	rctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	if _, err := command.Run(rctx, r, "systemctl", "restart", unit); err != nil {
		return fmt.Errorf("restart: %w (its links now point at %s: run upgrade.yml again once the cause is fixed)", err, j.To)
	}
	deadline := time.Now().Add(j.Timeout)
	for {
		h, err := etcdclient.CheckHealth(ctx, j.Cluster, env.StateDir, dial, etcdclient.CheckOptions{Members: []string{m.Host}})
		if j.servesTarget(h, err) {
			return nil
		}
		if time.Now().After(deadline) {
			got := "no answer"
			if err == nil && len(h.Members) == 1 {
				got = "version " + h.Members[0].Version + " " + h.Members[0].Error
			}
			return fmt.Errorf("%s does not serve %s %s after its restart (%s)", m.Name, j.To, j.Timeout, got)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// enableDowngrade asks the cluster to downgrade to j.To's minor (unless a
// run before this one already did) and waits until the cluster version and
// every member's storage version are there, so an older binary can read
// what the members wrote.
func enableDowngrade(ctx context.Context, env *modules.Env, c *etcd.Cluster, dial etcdclient.DialFunc, j *job) error {
	target := minor(j.To)
	cctx, cancel := context.WithTimeout(ctx, j.Timeout)
	defer cancel()
	cli, err := etcdclient.NewClient(cctx, c, env.StateDir, dial)
	if err != nil {
		return err
	}
	defer cli.Close()
	st, err := cli.Status(cctx, c.Members[0].ClientURL)
	if err != nil {
		return fmt.Errorf("downgrade: status: %w", err)
	}
	if di := st.DowngradeInfo; di == nil || !di.Enabled || !strings.HasPrefix(di.TargetVersion, target) {
		if _, err := cli.Downgrade(cctx, clientv3.DowngradeValidate, target); err != nil {
			return fmt.Errorf("downgrade validate %s refused: %w", target, err)
		}
		if _, err := cli.Downgrade(cctx, clientv3.DowngradeEnable, target); err != nil {
			return fmt.Errorf("downgrade enable %s refused: %w", target, err)
		}
		env.Logf("downgrade: enabled to %s; waiting for the cluster and storage versions", target)
	}
	for {
		var behind []string
		for _, m := range c.Members {
			s, err := cli.Status(cctx, m.ClientURL)
			switch {
			case err != nil:
				behind = append(behind, m.Name+": "+err.Error())
			case s.StorageVersion != target+".0":
				behind = append(behind, m.Name+" storage version "+s.StorageVersion)
			}
		}
		if v, err := clusterVersion(cctx, c, env.StateDir, dial); err != nil || v != target+".0" {
			behind = append(behind, "cluster version "+v)
		}
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-cctx.Done():
			return fmt.Errorf("downgrade enabled, but after %s: %s (`etcdctl downgrade cancel` undoes it)", j.Timeout, strings.Join(behind, "; "))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func clusterVersion(ctx context.Context, c *etcd.Cluster, stateDir string, dial etcdclient.DialFunc) (string, error) {
	var errs []error
	for _, m := range c.Members {
		v, err := etcdclient.MemberVersion(ctx, c, m, stateDir, dial)
		if err == nil {
			return v.Cluster, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
	}
	return "", fmt.Errorf("no member said its cluster version: %w", errors.Join(errs...))
}

func waitClusterVersion(ctx context.Context, c *etcd.Cluster, stateDir string, dial etcdclient.DialFunc, to etcd.Version, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		v, err := clusterVersion(ctx, c, stateDir, dial)
		if err == nil && reached(v, to) {
			return v, nil
		}
		if time.Now().After(deadline) {
			return v, fmt.Errorf("the cluster version is %q, not %s, after %s (%v)", v, minor(to), timeout, err)
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// reached reports whether cluster version v ("3.6.0") is to's minor.
func reached(v string, to etcd.Version) bool {
	return v == minor(to)+".0"
}

func minor(v etcd.Version) string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

func cluster(env *modules.Env, args modules.Args) (*etcd.Cluster, error) {
	c, err := etcd.FromVarsAt(env.Vars, args.Str("version", ""))
	if err != nil {
		return nil, fmt.Errorf("etcd_upgrade: %w", err)
	}
	return c, nil
}

// servesTarget says the one member a health check probed serves j.To.
func (j *job) servesTarget(h *etcdclient.Health, err error) bool {
	return err == nil && len(h.Members) == 1 && h.Members[0].Version == strings.TrimPrefix(j.To.String(), "v")
}
