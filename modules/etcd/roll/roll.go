// Package roll is the one rolling primitive of the cluster-wide modules
// (restart, upgrade, defrag, the TLS switch): a per-member step run one
// member at a time, the way etcd-druid's quorum-aware updates do it:
//
//   - the whole roll holds etcdplay's operation lock, and once it is held
//     the members another run already did meanwhile are dropped;
//   - before each step, the cluster is checked again, against the live
//     member list (voters outside the inventory count too, probed through
//     their advertised client URLs, and down unless they answer): every
//     inventory member healthy, one leader, no alarm, and the voters left
//     healthy while the member is down still a quorum;
//   - followers go first, in the given order; the leader goes last, and
//     leadership is handed to the most caught-up follower before its step,
//     so clients see one planned election instead of an election timeout;
//   - after each step, the cluster must be healthy again and the member's
//     raft applied index must have reached the leader's, so the next step
//     never takes down the only up-to-date copy.
package roll

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/oplock"
)

// Options say which cluster to roll and how long to wait.
type Options struct {
	Cluster  *etcd.Cluster
	StateDir string
	Dial     etcdclient.DialFunc
	// Timeout bounds the wait for health and catch-up after each step
	// (default 60s).
	Timeout time.Duration
	// Verb names the step in log lines and errors ("restart", "upgrade").
	Verb string
	Log  func(format string, args ...any)
	// IgnoreAlarms are alarm types the roll runs despite (defrag cures
	// NOSPACE, so it must run while NOSPACE is raised).
	IgnoreAlarms []string
	// NoLock skips the operation lock (tests of the roll alone). Every
	// module's roll takes it: two runs never take members down at once.
	NoLock bool
	// Pending, when set, is asked for each member once the lock is held:
	// is its step still needed, and if not, why. A plan is made before the
	// lock is taken, and a run that waited for it may find another run did
	// the step meanwhile; such a member is skipped, not taken down twice.
	Pending func(ctx context.Context, m etcd.Member) (needed bool, why string, err error)
	// Reconnect, when set, is how long a member stays up, healthy and
	// caught up, before the next member's step: for steps that close the
	// member's client connections (a restart). See ClientReconnect.
	Reconnect time.Duration
}

// ClientReconnect is the Reconnect of the steps that restart a member.
// A gRPC client (clientv3, kube-apiserver) whose connection to a member
// broke tries it again after a backoff of 1s (jittered up to 1.2s, then
// 1.6x longer each time), whether or not the member is back sooner: until
// then the member takes none of that client's requests. Taking the next
// member down before that leaves a client balancing over the members
// with only the leader to talk to, and in the lab a writing client then
// stalled for 0.5-0.7s at the last member's restart; with this wait, for
// 30-90ms.
const ClientReconnect = 2 * time.Second

// Step does the work on one member. The member is not expected to answer
// while it runs; Run waits for it afterwards.
type Step func(ctx context.Context, m etcd.Member) error

// Progress is how far a roll got. Skipped members needed no step any
// more when the roll reached them (Options.Pending).
type Progress struct {
	Done, Skipped, Remaining []etcd.Member
}

// String is what an error or a result message says of the roll.
func (p Progress) String() string {
	s := "done: " + names(p.Done)
	if len(p.Done) == 0 {
		s = "no member done"
	}
	if len(p.Skipped) > 0 {
		s += "; no longer needed: " + names(p.Skipped)
	}
	return s + "; not done: " + names(p.Remaining)
}

// ErrUnsafe is wrapped when the cluster is not in a state to lose a
// member, before a step.
var ErrUnsafe = errors.New("not safe to take a member down")

// Run runs step for each member one at a time (see the package doc). It
// stops at the first failure; Progress says what was done.
func Run(ctx context.Context, o Options, members []etcd.Member, step Step) (p Progress, err error) {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Verb == "" {
		o.Verb = "step"
	}
	p = Progress{Remaining: append([]etcd.Member(nil), members...)}
	if !o.NoLock {
		cli, cerr := etcdclient.NewClient(ctx, o.Cluster, o.StateDir, o.Dial)
		if cerr != nil {
			return p, cerr
		}
		defer cli.Close()
		held, lerr := oplock.Acquire(ctx, cli, o.Verb, o.Timeout, o.Log)
		switch {
		case lerr != nil && errors.Is(lerr, rpctypes.ErrNoSpace) && slices.Contains(o.IgnoreAlarms, "NOSPACE"):
			// Under NOSPACE the cluster takes no writes, so no run can take
			// the lock: none but this cure can start a disruptive step.
			o.logf("the operation lock cannot be taken while NOSPACE is raised (the cluster takes no writes); the %s goes on without it", o.Verb)
		case lerr != nil:
			return p, lerr
		default:
			defer held.Release()
			ctx = held.Ctx
		}
		defer func() { err = oplock.Explain(ctx, err) }()
	}
	if o.Pending != nil {
		if err := p.dropDone(ctx, o); err != nil {
			return p, err
		}
	}
	total := len(p.Remaining)
	for len(p.Remaining) > 0 {
		if len(p.Done) > 0 {
			o.logf("%s: %d/%d done (%s); checking the cluster before the next", o.Verb, len(p.Done), total, names(p.Done))
		}
		h, err := etcdclient.CheckHealth(ctx, o.Cluster, o.StateDir, o.Dial, etcdclient.CheckOptions{IgnoreAlarms: o.IgnoreAlarms, Outsiders: true})
		if err != nil {
			return p, err
		}
		leader, _ := h.Leader()
		p.Remaining = Order(p.Remaining, leader.Host)
		m := p.Remaining[0]
		if err := Guard(h, m); err != nil {
			return p, err
		}
		role := "follower"
		if m.Host == leader.Host {
			role = "leader"
			if to, err := handOver(ctx, o, h, leader); err != nil {
				o.logf("could not hand leadership over before the %s of %s (%v): its step costs one election", o.Verb, m.Name, err)
			} else if to != "" {
				o.logf("leadership handed from %s to %s", m.Name, to)
				role = "former leader"
			}
		}
		o.logf("%s of %s (%d/%d, %s)", o.Verb, m.Name, len(p.Done)+1, total, role)
		if err := step(ctx, m); err != nil {
			return p, fmt.Errorf("%s of %s: %w", o.Verb, m.Name, err)
		}
		p.Done = append(p.Done, m)
		p.Remaining = p.Remaining[1:]
		if err := settle(ctx, o, m); err != nil {
			return p, fmt.Errorf("after the %s of %s: %w", o.Verb, m.Name, err)
		}
		if len(p.Remaining) > 0 && o.Reconnect > 0 {
			o.logf("%s is back; giving its clients %s to reconnect before the next %s", m.Name, o.Reconnect, o.Verb)
			select {
			case <-ctx.Done():
				return p, ctx.Err()
			case <-time.After(o.Reconnect):
			}
		}
	}
	return p, nil
}

// dropDone moves the members whose step is no longer needed from
// Remaining to Skipped. The lock is held: no other run changes them now.
func (p *Progress) dropDone(ctx context.Context, o Options) error {
	var still []etcd.Member
	for _, m := range p.Remaining {
		needed, why, err := o.Pending(ctx, m)
		if err != nil {
			return fmt.Errorf("before the %s of %s: %w", o.Verb, m.Name, err)
		}
		if needed {
			still = append(still, m)
			continue
		}
		o.logf("%s: %s; no %s needed any more", m.Name, why, o.Verb)
		p.Skipped = append(p.Skipped, m)
	}
	p.Remaining = still
	return nil
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// Order puts followers first, in their given order, and the leader last.
func Order(ms []etcd.Member, leaderHost string) []etcd.Member {
	return OrderBy(ms, func(m etcd.Member) string { return m.Host }, leaderHost)
}

// OrderBy is Order for anything that names a member's host.
func OrderBy[T any](xs []T, host func(T) string, leaderHost string) []T {
	out := make([]T, 0, len(xs))
	var last []T
	for _, x := range xs {
		if leaderHost != "" && host(x) == leaderHost {
			last = append(last, x)
			continue
		}
		out = append(out, x)
	}
	return append(out, last...)
}

// Guard refuses to take m down unless every probed member is healthy with
// one leader and no alarm, and the live member list keeps a quorum of
// healthy voters without m. Voters the inventory does not name count as
// up only when they were probed healthy (CheckOptions.Outsiders).
func Guard(h *etcdclient.Health, m etcd.Member) error {
	if probs := h.Problems(); len(probs) > 0 {
		return fmt.Errorf("%w (%s): the cluster is not healthy: %s", ErrUnsafe, m.Name, strings.Join(probs, "; "))
	}
	if _, ok := h.Leader(); !ok {
		return fmt.Errorf("%w (%s): no member reports a leader", ErrUnsafe, m.Name)
	}
	healthy := map[uint64]bool{}
	for _, mh := range h.Members {
		if mh.Healthy {
			healthy[mh.ID] = true
		}
	}
	outsider := map[uint64]etcdclient.MemberHealth{}
	for _, mh := range h.Outsiders {
		outsider[mh.ID] = mh
		if mh.Healthy {
			healthy[mh.ID] = true
		}
	}
	voters, up := 0, 0
	var unknown []string
	for _, lm := range h.List {
		if lm.IsLearner {
			continue
		}
		voters++
		switch {
		case lm.Name == m.Name:
			// down during the step
		case healthy[lm.ID]:
			up++
		default:
			n := lm.Name
			if n == "" {
				n = fmt.Sprintf("%x (not started)", lm.ID)
			} else if o, ok := outsider[lm.ID]; ok {
				n += " (" + o.Error + ")"
			}
			unknown = append(unknown, n)
		}
	}
	if voters <= 1 {
		// A one-member cluster has no quorum to keep: its clients wait
		// for the step, as they would for any change to it.
		return nil
	}
	if need := etcd.Quorum(voters); up < need {
		msg := fmt.Sprintf("with it down, %d of %d voting members would be up, a quorum needs %d", up, voters, need)
		if len(unknown) > 0 {
			msg += "; not healthy or outside the inventory: " + strings.Join(unknown, ", ")
		}
		return fmt.Errorf("%w (%s): %s", ErrUnsafe, m.Name, msg)
	}
	return nil
}

// handOver moves leadership from the leader to the healthy voting follower
// with the highest applied index. It returns the new leader's name ("" when
// no follower can take it: a one-member cluster).
func handOver(ctx context.Context, o Options, h *etcdclient.Health, leader etcdclient.MemberHealth) (string, error) {
	var best *etcdclient.MemberHealth
	for i := range h.Members {
		mh := &h.Members[i]
		if mh.Healthy && !mh.IsLearner && mh.ID != leader.ID && (best == nil || mh.RaftAppliedIndex > best.RaftAppliedIndex) {
			best = mh
		}
	}
	if best == nil {
		return "", nil
	}
	lm, err := o.Cluster.Select([]string{leader.Host})
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// MoveLeader must reach the leader itself.
	cli, err := etcdclient.NewMemberClient(cctx, o.Cluster, lm[0], o.StateDir, o.Dial)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	if _, err := cli.MoveLeader(cctx, best.ID); err != nil {
		return "", err
	}
	return best.Name, nil
}

// settle waits until the cluster is healthy and m has applied what the
// leader had applied when the cluster was first healthy again.
func settle(ctx context.Context, o Options, m etcd.Member) error {
	deadline := time.Now().Add(o.Timeout)
	h, err := etcdclient.WaitHealthy(ctx, o.Cluster, o.StateDir, o.Dial, etcdclient.WaitOptions{CheckOptions: etcdclient.CheckOptions{IgnoreAlarms: o.IgnoreAlarms, Outsiders: true}, Timeout: o.Timeout, Log: o.Log})
	if err != nil {
		return err
	}
	leader, ok := h.Leader()
	if !ok {
		return fmt.Errorf("no leader after the %s", o.Verb)
	}
	target := leader.RaftAppliedIndex
	if target == 0 {
		// A leader outside the inventory that did not answer its probe:
		// catch up with the most advanced member that did.
		for _, mh := range h.Members {
			if mh.Healthy && mh.Host != m.Host {
				target = max(target, mh.RaftAppliedIndex)
			}
		}
	}
	for {
		for _, mh := range h.Members {
			if mh.Host == m.Host && mh.Healthy && mh.RaftAppliedIndex >= target {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has not caught up with the leader's applied index %d within %s", m.Name, target, o.Timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if h, err = etcdclient.CheckHealth(ctx, o.Cluster, o.StateDir, o.Dial, etcdclient.CheckOptions{Members: []string{m.Host}, IgnoreAlarms: o.IgnoreAlarms}); err != nil {
			return err
		}
	}
}

func names(ms []etcd.Member) string {
	if len(ms) == 0 {
		return "none"
	}
	n := make([]string, len(ms))
	for i, m := range ms {
		n[i] = m.Name
	}
	return strings.Join(n, ", ")
}
