// Package etcd_tune is the preflight of an etcd deployment and the
// measurement behind `etcd_heartbeat_interval: auto`. Put it first in a
// play: every check fails the task, and the play stops before any host
// changes.
//
// Checks, on every member (in parallel):
//   - clock: each host's clock is read through the agent and compared with
//     the controller's, compensating half the round trip (the best of three
//     reads, as NTP does); the members must be within etcd_max_clock_skew
//     (default 1s) of each other. A host far from the controller only
//     warns: etcd itself compares members, not the controller.
//   - free disk in the data dir's filesystem: at least etcd_min_free_disk
//     (default 1GiB; a warning when below etcd_quota_backend_bytes).
//   - fsync latency: n (default 10) 2 KiB append+fdatasync in the data dir,
//     like etcd's WAL; a median above etcd_max_fsync_latency (default
//     100ms) fails, a p99 above 10ms warns (etcd's guidance for a healthy
//     WAL). With so few samples the p99 is the slowest one: it only warns.
//     Members whose data dir holds a member already are not sampled unless
//     fsync_samples is given.
//   - ports: the client and peer ports (and the metrics port) are free, or
//     held by our own etcd (/usr/local/bin/etcd, /opt/etcd/*, or a process
//     of etcd.service); anything else fails, naming the port and process.
//   - peer round trips (when the heartbeat is auto, or measure_rtt: true):
//     TCP connects from each member to every other member's peer address.
//
// With etcd_heartbeat_interval: auto it derives the heartbeat (the largest
// round trip rounded up to 10ms, at least 100ms) and the election timeout
// (ten times that), as etcd's tuning guide says, and records them in the
// controller state dir (<state>/<cluster>/tuning.json, see
// etcd.Cluster.EffectiveTiming) for etcd_config. A change of less than 25%
// keeps the recorded values, so noise never rewrites etcd.yaml.
package etcd_tune

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

func init() { modules.Register("etcd_tune", Module{}) }

// Module is the etcd_tune module.
type Module struct{}

// RunsOnController marks etcd_tune as controller-side: it compares hosts
// with each other and with the controller's clock.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	"max_clock_skew":    {Kind: modules.String},
	"min_free_disk":     {Kind: modules.String},
	"max_fsync_latency": {Kind: modules.String},
	"fsync_samples":     {Kind: modules.Int},
	"measure_rtt":       {Kind: modules.Bool},
	"rtt_samples":       {Kind: modules.Int},
	"check_ports":       {Kind: modules.Bool},
}

// limits are the thresholds, from args, then host vars, then defaults.
type limits struct {
	MaxSkew      time.Duration
	MinFree      int64
	MaxFsync     time.Duration
	WarnFsync    time.Duration
	FsyncSamples int
	// FsyncNewOnly skips the fsync samples on members that hold data
	// already: a converged cluster's disk was measured when it was new,
	// and ten syncs beside a live WAL on every run only add to its load.
	// An explicit fsync_samples measures every member.
	FsyncNewOnly bool
	MeasureRTT   bool
	RTTSamples   int
	CheckPorts   bool
}

const warnFsync = 10 * time.Millisecond

func readLimits(args modules.Args, vars map[string]any, auto bool) (limits, error) {
	l := limits{WarnFsync: warnFsync}
	pick := func(arg, v string) modules.Args {
		if _, ok := args[arg]; ok {
			return modules.Args{"x": args[arg]}
		}
		if val, ok := vars[v]; ok && val != nil {
			return modules.Args{"x": val}
		}
		return modules.Args{}
	}
	var err error
	if l.MaxSkew, err = pick("max_clock_skew", "etcd_max_clock_skew").Duration("x", time.Second); err != nil {
		return l, fmt.Errorf("max_clock_skew / etcd_max_clock_skew: %w", err)
	}
	if l.MaxFsync, err = pick("max_fsync_latency", "etcd_max_fsync_latency").Duration("x", 100*time.Millisecond); err != nil {
		return l, fmt.Errorf("max_fsync_latency / etcd_max_fsync_latency: %w", err)
	}
	l.MinFree = 1 << 30
	if v, ok := pick("min_free_disk", "etcd_min_free_disk")["x"]; ok {
		if l.MinFree, err = etcd.ParseSize(v); err != nil {
			return l, fmt.Errorf("min_free_disk / etcd_min_free_disk: %w", err)
		}
	}
	l.FsyncSamples = args.Int("fsync_samples", 10)
	_, explicit := args["fsync_samples"]
	l.FsyncNewOnly = !explicit
	l.RTTSamples = args.Int("rtt_samples", 5)
	l.MeasureRTT = args.Bool("measure_rtt", auto)
	l.CheckPorts = args.Bool("check_ports", true)
	if l.FsyncSamples < 0 || l.RTTSamples < 1 {
		return l, errors.New("fsync_samples must be >= 0 and rtt_samples >= 1")
	}
	return l, nil
}

// Validate checks the arguments (host variables are checked at run time).
func (Module) Validate(args modules.Args) error {
	if err := spec.Check(args); err != nil {
		return err
	}
	_, err := readLimits(args, nil, false)
	return err
}

// hostReport is everything measured on one member.
type hostReport struct {
	Member      etcd.Member
	Offset      time.Duration // host clock - controller clock
	Uncertainty time.Duration
	Probe       probeResult
	Err         error
}

// Plan runs every check (read-only on the hosts) and fails on any
// preflight problem. Its only possible change is the recorded tuning.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	lim, err := readLimits(args, env.Vars, c.HeartbeatAuto)
	if err != nil {
		return nil, fmt.Errorf("etcd_tune: %w", err)
	}
	hosts := env.Remotes()
	reports := make([]hostReport, len(c.Members))
	var wg sync.WaitGroup
	for i, m := range c.Members {
		reports[i].Member = m
		r := hosts[m.Host]
		if r == nil {
			reports[i].Err = fmt.Errorf("no connection to %s in this play (etcd_tune must run for the whole etcd group)", m.Host)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i] = probeMember(ctx, r, c, m, lim)
		}()
	}
	wg.Wait()

	v := evaluate(reports, lim, c.QuotaBackendBytes)
	for _, w := range v.Warnings {
		env.Logf("etcd_tune: warning: %s", w)
	}
	if len(v.Failures) > 0 {
		return nil, &PreflightError{Failures: v.Failures}
	}
	env.Logf("etcd_tune: %s", v.Summary)

	ch := &modules.Change{}
	if !c.HeartbeatAuto || !lim.MeasureRTT {
		return ch, nil
	}
	path := c.TuningFile(env.StateDir)
	prev, err := etcd.LoadAutoTuning(path)
	if err != nil {
		return nil, fmt.Errorf("etcd_tune: %w", err)
	}
	next, err := deriveTiming(v.MaxRTT)
	if err != nil {
		return nil, fmt.Errorf("etcd_tune: %w", err)
	}
	var prevT *Timing
	if prev != nil {
		prevT = &Timing{Heartbeat: prev.HeartbeatInterval, Election: prev.ElectionTimeout}
	}
	t := stable(prevT, next)
	if prevT != nil && t == *prevT {
		return ch, nil
	}
	op, detail := "+", ""
	if prevT != nil {
		op, detail = "~", fmt.Sprintf("heartbeat %dms->%dms, election timeout %dms->%dms", prevT.Heartbeat, t.Heartbeat, prevT.Election, t.Election)
	} else {
		detail = fmt.Sprintf("heartbeat %dms, election timeout %dms", t.Heartbeat, t.Election)
	}
	ch.Add(op, path, fmt.Sprintf("%s (largest peer round trip %s)", detail, v.MaxRTT.Round(10*time.Microsecond)))
	ch.Payload = &tunePayload{Path: path, Tuning: etcd.AutoTuning{
		HeartbeatInterval: t.Heartbeat, ElectionTimeout: t.Election,
		MaxRTT: v.MaxRTT.Round(10 * time.Microsecond).String(), MeasuredAt: time.Now().UTC(),
	}}
	return ch, nil
}

type tunePayload struct {
	Path   string
	Tuning etcd.AutoTuning
}

// Apply records the derived tuning for etcd_config.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	p, ok := ch.Payload.(*tunePayload)
	if !ok {
		return nil, errors.New("etcd_tune: plan payload missing")
	}
	if err := etcd.SaveAutoTuning(p.Path, &p.Tuning); err != nil {
		return nil, fmt.Errorf("etcd_tune: %w", err)
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch, Data: map[string]any{
		"heartbeat_interval": p.Tuning.HeartbeatInterval,
		"election_timeout":   p.Tuning.ElectionTimeout,
		"max_rtt":            p.Tuning.MaxRTT,
	}}, nil
}

// PreflightError lists every failed check, one per line.
type PreflightError struct{ Failures []string }

func (e *PreflightError) Error() string {
	return "etcd_tune: preflight failed, nothing was changed:\n  - " + strings.Join(e.Failures, "\n  - ")
}

func probeMember(ctx context.Context, r modules.Host, c *etcd.Cluster, m etcd.Member, lim limits) hostReport {
	rep := hostReport{Member: m}
	var samples []clockSample
	for range 3 {
		sent := time.Now()
		var pr probeResult
		err := r.Probe(ctx, probeName, modules.Args{"mode": "time"}, &pr)
		recv := time.Now()
		if err != nil {
			rep.Err = fmt.Errorf("%s: %w", m.Host, err)
			return rep
		}
		samples = append(samples, clockSample{Sent: sent, Received: recv, Host: pr.Now})
	}
	rep.Offset, rep.Uncertainty, _ = offset(samples)

	args := modules.Args{
		"mode":           "full",
		"data_dir":       c.DataDir,
		"address":        m.Address,
		"install_root":   c.Paths.InstallRoot,
		"binary":         c.Paths.BinDir + "/etcd",
		"fsync_samples":  lim.FsyncSamples,
		"fsync_new_only": lim.FsyncNewOnly,
		"rtt_samples":    lim.RTTSamples,
	}
	if lim.CheckPorts {
		ports := []any{m.ClientPort, m.PeerPort}
		if p := metricsPort(m.MetricsURL); p > 0 {
			ports = append(ports, p)
		}
		args["ports"] = ports
	}
	if lim.MeasureRTT {
		var peers []any
		for _, o := range c.Members {
			if o.Host != m.Host {
				peers = append(peers, net.JoinHostPort(strings.Trim(o.Address, "[]"), strconv.Itoa(o.PeerPort)))
			}
		}
		if len(peers) > 0 {
			args["peers"] = peers
		}
	}
	if err := r.Probe(ctx, probeName, args, &rep.Probe); err != nil {
		rep.Err = fmt.Errorf("%s: %w", m.Host, err)
	}
	return rep
}

func metricsPort(u string) int {
	if u == "" {
		return 0
	}
	_, p, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimRight(p, "/"))
	return n
}

// verdict is the outcome of all checks.
type verdict struct {
	Failures []string
	Warnings []string
	Summary  string
	MaxRTT   time.Duration
}

// evaluate turns measurements into failures and warnings. Pure, so every
// threshold is table-tested.
func evaluate(reps []hostReport, lim limits, quota int64) verdict {
	var v verdict
	offsets, unc := map[string]time.Duration{}, map[string]time.Duration{}
	var worstFsync time.Duration
	worstFsyncOn, skipped := "", 0
	minFree := int64(-1)
	for _, r := range reps {
		name := r.Member.Name
		if r.Err != nil {
			v.Failures = append(v.Failures, fmt.Sprintf("%s: could not run the checks: %v", name, r.Err))
			continue
		}
		offsets[name], unc[name] = r.Offset, r.Uncertainty
		if abs(r.Offset)-r.Uncertainty > lim.MaxSkew {
			v.Warnings = append(v.Warnings, fmt.Sprintf("%s: clock is %s off the controller's (certificates are issued with the controller's clock)", name, r.Offset.Round(time.Millisecond)))
		}
		p := r.Probe
		free := int64(p.FreeBytes)
		if minFree < 0 || free < minFree {
			minFree = free
		}
		switch {
		case free < lim.MinFree:
			v.Failures = append(v.Failures, fmt.Sprintf("%s: only %s free in %s, etcd_min_free_disk is %s", name, size(free), p.DiskPath, size(lim.MinFree)))
		case quota > 0 && free < quota:
			v.Warnings = append(v.Warnings, fmt.Sprintf("%s: %s free in %s is less than etcd_quota_backend_bytes %s", name, size(free), p.DiskPath, size(quota)))
		}
		if p.FsyncSkipped {
			skipped++
		}
		if p.FsyncErr != "" {
			v.Failures = append(v.Failures, fmt.Sprintf("%s: fsync test in %s failed: %s", name, p.DiskPath, p.FsyncErr))
		} else if len(p.Fsync) > 0 {
			p99 := percentile(p.Fsync, 99)
			if p99 > worstFsync {
				worstFsync, worstFsyncOn = p99, name
			}
			// A handful of samples cannot measure a real p99 (it is just the
			// slowest one, and one slow sync on a busy disk would fail a
			// healthy cluster), so the gate is the median: a disk whose
			// typical fdatasync is that slow cannot keep etcd's leader alive.
			median := percentile(p.Fsync, 50)
			switch {
			case median > lim.MaxFsync:
				v.Failures = append(v.Failures, fmt.Sprintf("%s: fdatasync median %s (p99 %s) in %s is above etcd_max_fsync_latency %s: etcd needs a faster disk (local SSD) for its WAL", name, median.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), p.DiskPath, lim.MaxFsync))
			case p99 > lim.WarnFsync:
				v.Warnings = append(v.Warnings, fmt.Sprintf("%s: fdatasync p99 %s in %s is above %s: expect slow commits and leader changes under load", name, p99.Round(100*time.Microsecond), p.DiskPath, lim.WarnFsync))
			}
		}
		for _, pr := range p.Ports {
			if pr.Busy && !pr.Ours {
				v.Failures = append(v.Failures, fmt.Sprintf("%s: port %d is in use by %s (listening on %s): free it or choose another etcd_client_port/etcd_peer_port", name, pr.Port, pr.Holder, pr.Listen))
			}
		}
		peers := make([]string, 0, len(p.RTT))
		for peer := range p.RTT {
			peers = append(peers, peer)
		}
		sort.Strings(peers)
		for _, peer := range peers {
			if e := p.RTTErr[peer]; e != "" {
				v.Failures = append(v.Failures, fmt.Sprintf("%s: cannot reach peer address %s: %s", name, peer, e))
				continue
			}
			if m := percentile(p.RTT[peer], 50); m > v.MaxRTT {
				v.MaxRTT = m
			}
		}
	}
	if len(offsets) > 1 {
		spread, u, ahead, behind := skewSpread(offsets, unc)
		if spread-u > lim.MaxSkew {
			v.Failures = append(v.Failures, fmt.Sprintf("clocks of %s and %s are %s apart, above etcd_max_clock_skew %s: synchronise them (chrony or systemd-timesyncd)", ahead, behind, spread.Round(time.Millisecond), lim.MaxSkew))
		}
		v.Summary = fmt.Sprintf("clocks within %s", spread.Round(time.Millisecond))
	} else {
		v.Summary = "clock checked"
	}
	if skipped > 0 && worstFsyncOn == "" {
		v.Summary += ", fdatasync sampled on new members only (fsync_samples: 10 samples every member)"
	}
	if worstFsyncOn != "" {
		v.Summary += fmt.Sprintf(", fdatasync p99 %s (worst: %s)", worstFsync.Round(10*time.Microsecond), worstFsyncOn)
	}
	if minFree >= 0 {
		v.Summary += fmt.Sprintf(", at least %s free", size(minFree))
	}
	if lim.CheckPorts {
		v.Summary += ", ports free or ours"
	}
	if lim.MeasureRTT && len(reps) > 1 {
		v.Summary += fmt.Sprintf(", largest peer round trip %s", v.MaxRTT.Round(10*time.Microsecond))
	}
	return v
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func size(b int64) string {
	const gi, mi = 1 << 30, 1 << 20
	switch {
	case b >= gi:
		return fmt.Sprintf("%.1f GiB", float64(b)/gi)
	case b >= mi:
		return fmt.Sprintf("%.0f MiB", float64(b)/mi)
	}
	return fmt.Sprintf("%d B", b)
}
