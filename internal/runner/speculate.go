package runner

import (
	"context"
	"github.com/etcdplay/etcdplay/internal/transport"

	"github.com/etcdplay/etcdplay/internal/playbook"
	"github.com/etcdplay/etcdplay/modules"
)

// Speculative plans hide the round trip to the agent on long chains of
// tasks, which is what a warm no-op run is made of. When a host-side task
// starts, the runner also asks the agent to plan the next few tasks of the
// same host in check mode, concurrently. A plan only reads, so asking early
// is harmless; it is only *valid* if nothing changed on any host between
// the moment it was asked and the moment its task's turn comes. A global
// generation counter, bumped by every task that changed (or failed), says
// whether that holds: a valid "nothing to do" plan is the task's result; any
// other one is dropped and the task runs normally. Under --check nothing is
// ever applied, so every speculative plan is exactly the task's result.

// speculateAhead bounds how many tasks of one host are planned ahead.
const speculateAhead = 16

// future is a speculative plan in flight or done.
type future struct {
	gen  int64 // the generation when it was asked
	done chan struct{}
	res  *modules.Result
	err  error
}

// speculatable reports whether a node's result can come from an early plan:
// a plain host-side task whose outcome depends on nothing decided at run
// time.
func speculatable(n *playbook.Node) bool {
	t := n.Task
	if n.Skip || n.Handler || t.RunOnce || t.WhenAtRuntime || t.Until != "" || t.Retries > 0 || len(t.ChangedWhenList) > 0 {
		return false
	}
	m, ok := modules.Lookup(t.Module)
	return ok && !modules.OnController(m)
}

// changed records that something may have changed on some host: every plan
// asked before now is stale. It also notes whether host is converging:
// its last task changed it, so the tasks after it will most likely change
// it too, and every plan asked ahead would be thrown away. A cold run of
// 30 hosts asked systemd about one unit eight times per host that way.
func (r *run) changed(host string, st modules.Status) {
	if r.opts.Check || st == modules.StatusSkipped {
		return
	}
	r.mu.Lock()
	r.converging[host] = st != modules.StatusOK
	r.mu.Unlock()
	if st == modules.StatusOK {
		return
	}
	r.gen.Add(1)
}

// speculating says whether to plan ahead for host: not while it is
// converging (see changed).
func (r *run) speculating(host string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.converging[host]
}

// prefetch asks the agent to plan the tasks that follow n on n's host.
func (r *run) prefetch(ctx context.Context, n *playbook.Node, conn *transport.Conn) {
	gen := r.gen.Load()
	id := n.ID
	for range speculateAhead {
		next, ok := r.nextOnHost(id, n.Host)
		if !ok || !speculatable(next) {
			return
		}
		id = next.ID
		r.mu.Lock()
		f, have := r.futures[id]
		if have && f.gen == gen {
			r.mu.Unlock()
			continue
		}
		f = &future{gen: gen, done: make(chan struct{})}
		r.futures[id] = f
		r.mu.Unlock()
		go func(next *playbook.Node) {
			f.res, f.err = conn.Do(ctx, next.Task.Module, next.Args, true)
			close(f.done)
		}(next)
	}
}

// nextOnHost is the task node that runs right after id on host, when there
// is exactly one.
func (r *run) nextOnHost(id, host string) (*playbook.Node, bool) {
	var found *playbook.Node
	for _, d := range r.graph.Dependents(id) {
		n, ok := r.graph.Node(d)
		if !ok || n.Host != host || n.Handler || n.Task.RunOnce {
			continue
		}
		if found != nil {
			return nil, false
		}
		found = n
	}
	return found, found != nil
}

// speculated returns n's result from a valid early plan, if there is one.
func (r *run) speculated(ctx context.Context, n *playbook.Node) (*modules.Result, bool) {
	r.mu.Lock()
	f, ok := r.futures[n.ID]
	delete(r.futures, n.ID)
	r.mu.Unlock()
	if !ok || f.gen != r.gen.Load() {
		return nil, false
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, false
	}
	if f.err != nil || f.gen != r.gen.Load() {
		return nil, false
	}
	if r.opts.Check || f.res.Status == modules.StatusOK {
		return f.res, true
	}
	return nil, false
}
