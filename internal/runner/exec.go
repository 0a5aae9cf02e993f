package runner

import (
	"context"
	"errors"
	"fmt"
	"github.com/etcdplay/etcdplay/internal/transport"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/etcdplay/etcdplay/internal/dag"
	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/internal/playbook"
	"github.com/etcdplay/etcdplay/modules"
)

// Options control one run of a compiled playbook.
type Options struct {
	// Forks bounds how many nodes run at once (and how many hosts connect
	// at once).
	Forks int
	// Check plans every node and applies none.
	Check bool
	// Connect is passed to Connect for every host.
	Connect transport.ConnectOptions
	// StateDir is the controller-side state directory handed to
	// controller-side modules.
	StateDir string
	// Sink receives live events; nil discards them.
	Sink Sink
	// Confirm, when set, is asked before a task applies a disruptive plan
	// (modules.Change.Disruptive); an error refuses that step and fails
	// the task with it. Nil applies without asking (--yes).
	Confirm func(ctx context.Context, task, host string, c *modules.Change) error
}

// Summary is the outcome of a run.
type Summary struct {
	Recap []HostRecap
	// Timeline is where the time went: the connections, then each task
	// from its first host's start to its last host's end.
	Timeline    []Span
	Failed      bool // some task failed on some host
	Unreachable bool // some host could not be reached
	Elapsed     time.Duration
}

// errPlayAborted marks a node that did not run because of its play's failure
// policy; its dependents are skipped too.
var errPlayAborted = errors.New("play aborted by its failure policy (any_errors_fatal or max_fail_percentage)")

// run is the state of one walk. Readers and writers of the maps hold mu.
type run struct {
	opts  Options
	start time.Time
	graph *dag.Graph[*playbook.Node]
	inv   *inventory.Inventory

	mu          sync.Mutex
	conns       map[string]*transport.Conn // reachable hosts only
	unreachable map[string]string          // host -> why
	recap       map[string]*HostRecap
	notified    map[string]map[string]bool        // "play/handler" -> hosts
	failedHosts map[failureDomain]map[string]bool // hosts with a failure
	aborted     map[failureDomain]bool
	registered  map[string]map[string]any // host -> register name -> result
	futures     map[string]*future        // node id -> speculative plan
	converging  map[string]bool           // hosts whose last task changed them

	gen atomic.Int64 // bumped whenever a task may have changed a host

	timeline *timeline
}

// Run connects to every host the compiled playbook needs (one SSH
// connection and one agent session each), walks the graph with at most
// opts.Forks nodes at a time and reports every outcome to opts.Sink.
func Run(ctx context.Context, c *playbook.Compiled, inv *inventory.Inventory, opts Options) (*Summary, error) {
	if opts.Forks <= 0 {
		opts.Forks = 50
	}
	if opts.Sink == nil {
		opts.Sink = SinkFunc(func(Event) {})
	}
	start := time.Now()
	r := &run{
		opts:        opts,
		start:       start,
		timeline:    newTimeline(start),
		graph:       c.Graph,
		inv:         inv,
		conns:       map[string]*transport.Conn{},
		unreachable: map[string]string{},
		recap:       map[string]*HostRecap{},
		notified:    map[string]map[string]bool{},
		failedHosts: map[failureDomain]map[string]bool{},
		aborted:     map[failureDomain]bool{},
		registered:  map[string]map[string]any{},
		futures:     map[string]*future{},
		converging:  map[string]bool{},
	}
	hosts := hostsOf(c)
	for _, h := range hosts {
		r.recap[h] = &HostRecap{Host: h}
	}
	pctx, stopPreparing := context.WithCancel(ctx)
	prepared := r.prepare(pctx, c)
	r.connectAll(ctx, inv, c, hosts)
	defer r.closeAll()

	walkErr := c.Graph.Walk(ctx, opts.Forks, r.node, r.skipped)
	_ = walkErr // every failure has been reported as an event already
	// Preparation no task is left to use (every host unreachable, say) is
	// not waited for: a slow download would hold the run's end.
	stopPreparing()
	prepared.Wait()

	s := &Summary{Elapsed: time.Since(r.start), Timeline: r.timeline.list()}
	for _, h := range hosts {
		rc := *r.recap[h]
		s.Recap = append(s.Recap, rc)
		s.Failed = s.Failed || rc.Failed > 0
		s.Unreachable = s.Unreachable || rc.Unreachable > 0
	}
	opts.Sink.Emit(Event{Time: time.Now(), Type: EventRecap, Recap: s.Recap, Timeline: s.Timeline, Elapsed: s.Elapsed.Seconds()})
	if err := ctx.Err(); err != nil {
		return s, fmt.Errorf("run interrupted: %w", err)
	}
	return s, nil
}

// prepare starts the controller-side preparation of every task whose
// module has some (modules.Preparer), to run while hosts connect. The
// returned group is done when all of it has finished.
func (r *run) prepare(ctx context.Context, c *playbook.Compiled) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, id := range c.Graph.IDs() {
		n, _ := c.Graph.Node(id)
		if n.Skip || n.Handler || n.Task.WhenAtRuntime {
			continue
		}
		m, ok := modules.Lookup(n.Task.Module)
		p, isPreparer := m.(modules.Preparer)
		if !ok || !isPreparer || !modules.OnController(m) {
			continue
		}
		env := &modules.Env{Host: n.Host, Vars: n.Vars, Check: r.opts.Check, StateDir: r.opts.StateDir}
		wg.Go(func() { p.Prepare(ctx, env, n.Args) })
	}
	return &wg
}

// hostsOf lists every host some node runs on, in play order.
func hostsOf(c *playbook.Compiled) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range c.Plays {
		for _, h := range p.Hosts {
			if !seen[h] {
				seen[h] = true
				out = append(out, h)
			}
		}
	}
	return out
}

// connectAll opens one connection per host, at most Forks at once. A host
// that cannot be reached is recorded; its nodes report unreachable.
func (r *run) connectAll(ctx context.Context, inv *inventory.Inventory, c *playbook.Compiled, hosts []string) {
	become, full := agentNeeds(c)
	sem := make(chan struct{}, r.opts.Forks)
	var wg sync.WaitGroup
	for _, name := range hosts {
		h, ok := inv.Host(name)
		if !ok {
			r.markUnreachable(name, "not in the inventory")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t := TargetFor(h)
			t.Become = t.Become || become[name]
			t.FullAgent = full[name]
			o := r.opts.Connect
			o.OnRetry = func(host string, attempt int, err error) {
				r.opts.Sink.Emit(Event{Time: time.Now(), Type: EventLog, Host: name,
					Msg: fmt.Sprintf("connection attempt %d dropped by the server (%v); trying again", attempt, err)})
			}
			o.OnProgress = func(tr transport.Transfer) {
				r.opts.Sink.Emit(Event{Time: time.Now(), Type: EventProgress, Host: name, Transfer: &tr})
			}
			began := time.Now()
			conn, err := transport.Connect(ctx, t, o)
			if err != nil {
				r.markUnreachable(name, err.Error())
				r.opts.Sink.Emit(Event{Time: time.Now(), Type: EventHostConnect, Host: name, Status: modules.StatusUnreachable, Msg: err.Error()})
				return
			}
			up := time.Now()
			r.timeline.add("", "connect", began, up)
			r.opts.Sink.Emit(Event{Time: up, Type: EventHostConnect, Host: name, Status: modules.StatusOK,
				Msg: conn.Describe() + fmt.Sprintf(", agent session up in %s", up.Sub(began).Round(time.Millisecond)), Elapsed: up.Sub(began).Seconds()})
			r.mu.Lock()
			r.conns[name] = conn
			r.mu.Unlock()
		}()
	}
	wg.Wait()
}

// TargetFor turns an inventory host into an SSH target.
func TargetFor(h *inventory.Host) transport.Target {
	return transport.Target{
		Name:       h.Name,
		Addr:       h.Address(),
		Port:       h.ExplicitPort(),
		User:       h.User(),
		KeyFile:    h.KeyFile(),
		Become:     h.Become(),
		BecomeUser: h.BecomeUser(),
		JumpHost:   h.JumpHost(),
	}
}

// agentNeeds reads from the graph, in one pass, what each host's one
// agent session must be: under sudo where some task asks for become, and
// etcdplay whole (not the lean agent) where some task's module only the
// full agent serves (modules.FullAgentOnly), whatever its `when` may
// decide at run time.
func agentNeeds(c *playbook.Compiled) (become, full map[string]bool) {
	become, full = map[string]bool{}, map[string]bool{}
	for _, id := range c.Graph.IDs() {
		n, _ := c.Graph.Node(id)
		if n.Task.Become != nil && *n.Task.Become {
			become[n.Host] = true
		}
		if m, ok := modules.LookupHostSide(n.Task.Module); ok && modules.NeedsFullAgent(m) {
			full[n.Host] = true
		}
	}
	return become, full
}

func (r *run) markUnreachable(host, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[host] = why
}

func (r *run) closeAll() {
	r.mu.Lock()
	conns := r.conns
	r.conns = map[string]*transport.Conn{}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
}

// remotes returns the handles of the reachable hosts among names.
func (r *run) remotes(names []string) map[string]modules.HostWriter {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]modules.HostWriter, len(names))
	for _, n := range names {
		if c, ok := r.conns[n]; ok {
			out[n] = c
		}
	}
	return out
}

func (r *run) conn(host string) (*transport.Conn, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[host], r.unreachable[host]
}

// notify records that host's task changed and so wants the play's handler.
func (r *run) notify(play int, handler, host string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := fmt.Sprintf("%d/%s", play, handler)
	if r.notified[k] == nil {
		r.notified[k] = map[string]bool{}
	}
	r.notified[k][host] = true
}

// notifiedHosts lists, sorted, the hosts that notified a play's handler.
func (r *run) notifiedHosts(play int, handler string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for h := range r.notified[fmt.Sprintf("%d/%s", play, handler)] {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

func (r *run) count(host string, st modules.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rc := r.recap[host]
	if rc == nil {
		rc = &HostRecap{Host: host}
		r.recap[host] = rc
	}
	switch st {
	case modules.StatusOK:
		rc.OK++
	case modules.StatusChanged:
		rc.OK++
		rc.Changed++
	case modules.StatusFailed:
		rc.Failed++
	case modules.StatusSkipped:
		rc.Skipped++
	case modules.StatusUnreachable:
		rc.Unreachable = 1
	}
	rc.Elapsed = time.Since(r.start).Seconds()
}
