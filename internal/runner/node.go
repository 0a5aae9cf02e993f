package runner

import (
	"context"
	"errors"
	"fmt"
	"github.com/etcdplay/etcdplay/internal/transport"
	"slices"
	"time"

	"github.com/etcdplay/etcdplay/internal/playbook"
	"github.com/etcdplay/etcdplay/modules"
)

// errUnreachable is returned for nodes of a host that could not be reached,
// so the walker skips the host's later nodes.
var errUnreachable = errors.New("host unreachable")

// node runs one (task, host) node: it is the walker's callback.
func (r *run) node(ctx context.Context, _ string, n *playbook.Node) error {
	began := time.Now()
	emit := func(st modules.Status, res *modules.Result, msg string) {
		r.count(n.Host, st)
		ended := time.Now()
		if st != modules.StatusSkipped {
			r.timeline.add(n.Play.Name, taskTitle(n.Task), began, ended)
		}
		ev := Event{Time: ended, Type: EventNodeDone, Play: n.Play.Name, Task: taskTitle(n.Task),
			Module: n.Task.Module, Host: n.Host, Node: n.ID, Status: st, Msg: msg, Elapsed: ended.Sub(began).Seconds()}
		if res != nil {
			ev.Change = res.Change
			ev.Data = res.Data
		}
		if n.Task.NoLog {
			ev = hidden(ev)
		}
		r.opts.Sink.Emit(ev)
	}
	if n.Skip {
		emit(modules.StatusSkipped, nil, n.SkipReason)
		return nil
	}
	if r.isAborted(n) {
		emit(modules.StatusSkipped, nil, errPlayAborted.Error())
		return errPlayAborted
	}
	if n.Task.WhenAtRuntime {
		ok, err := playbook.Holds("when", n.Task.WhenList, r.varsWithResults(n, nil))
		if err != nil {
			emit(modules.StatusFailed, nil, err.Error())
			return &taskFailed{task: taskTitle(n.Task), host: n.Host, msg: err.Error()}
		}
		if !ok {
			r.register(n, &modules.Result{Status: modules.StatusSkipped})
			emit(modules.StatusSkipped, nil, "when: "+n.Task.When+" is false")
			return nil
		}
	}
	var notified []string
	if n.Handler {
		notified = r.notifiedHosts(n.Play.Index, n.Task.Name)
		if n.Play.Parts != nil {
			// A partition is a copy of the play of its own: its handlers
			// answer its own hosts' notifications only.
			notified = slices.DeleteFunc(notified, func(h string) bool { return !slices.Contains(n.PlayHosts(), h) })
		}
		if n.Task.RunOnce {
			if len(notified) == 0 {
				return nil // not notified: Ansible stays silent too
			}
		} else if !slices.Contains(notified, n.Host) {
			return nil
		}
	}
	host := r.pickHost(n)
	conn, why := r.conn(host)
	if conn == nil {
		if why == "" {
			why = "not connected"
		}
		emit(modules.StatusUnreachable, nil, why)
		return fmt.Errorf("%s: %w: %s", n.Host, errUnreachable, why)
	}

	res, err := r.withRetries(ctx, n, func() (*modules.Result, error) {
		return r.execute(ctx, n, conn, notified)
	})
	switch {
	case err != nil && transport.IsUnreachable(err):
		r.markUnreachable(n.Host, err.Error())
		emit(modules.StatusUnreachable, nil, err.Error())
		return err
	case err != nil && ctx.Err() != nil:
		res = &modules.Result{Status: modules.StatusFailed, Msg: "interrupted: " + err.Error()}
	case err != nil:
		res = &modules.Result{Status: modules.StatusFailed, Msg: err.Error()}
	}
	if len(n.Task.ChangedWhenList) > 0 && res.Status != modules.StatusFailed {
		changed, err := playbook.Holds("changed_when", n.Task.ChangedWhenList, r.varsWithResults(n, res))
		switch {
		case err != nil:
			res.Status, res.Msg = modules.StatusFailed, err.Error()
		case changed:
			res.Status = modules.StatusChanged
		default:
			res.Status = modules.StatusOK
		}
	}
	r.register(n, res)
	r.changed(n.Host, res.Status)
	emit(res.Status, res, res.Msg)
	if res.Status == modules.StatusChanged {
		for _, h := range n.Task.Notify {
			for _, on := range forHosts(n) {
				r.notify(n.Play.Index, h, on)
			}
		}
	}
	if res.Status == modules.StatusFailed {
		r.recordFailure(n)
		if n.Task.IgnoreErrors {
			return nil
		}
		return &taskFailed{task: taskTitle(n.Task), host: n.Host, msg: res.Msg}
	}
	return nil
}

// taskFailed is the root cause the walker hands to the skipped dependents
// of a failed node.
type taskFailed struct{ task, host, msg string }

func (e *taskFailed) Error() string { return fmt.Sprintf("%s on %s: %s", e.task, e.host, e.msg) }

// forHosts is the set of hosts a node acts for.
func forHosts(n *playbook.Node) []string {
	if n.Task.RunOnce && len(n.Hosts) > 0 {
		return n.Hosts
	}
	return []string{n.Host}
}

// pickHost returns the host a node runs on: its own, or for a run_once node
// whose first host is down, the first reachable host it acts for.
func (r *run) pickHost(n *playbook.Node) string {
	if !n.Task.RunOnce {
		return n.Host
	}
	for _, h := range append([]string{n.Host}, n.Hosts...) {
		if c, _ := r.conn(h); c != nil {
			return h
		}
	}
	return n.Host
}

// execute plans the node and, unless in check mode, applies the plan.
// Host-side modules do both in the agent in one round trip.
func (r *run) execute(ctx context.Context, n *playbook.Node, conn *transport.Conn, notified []string) (*modules.Result, error) {
	m, ok := modules.Lookup(n.Task.Module)
	if !ok {
		return nil, fmt.Errorf("module %q is not built into this etcdplay", n.Task.Module)
	}
	if !modules.OnController(m) {
		if speculatable(n) {
			if r.speculating(n.Host) {
				r.prefetch(ctx, n, conn)
			}
			if res, ok := r.speculated(ctx, n); ok {
				return res, nil
			}
		}
		return conn.Do(ctx, n.Task.Module, n.Args, r.opts.Check)
	}
	writers := r.remotes(n.PlayHosts())
	hosts := make(map[string]modules.Host, len(writers))
	for h, w := range writers {
		hosts[h] = w
	}
	writers[conn.Name()] = conn
	env := &modules.Env{
		Host:     conn.Name(),
		Vars:     n.Vars,
		Check:    r.opts.Check,
		Remote:   conn,
		Hosts:    hosts,
		Notified: notified,
		StateDir: r.opts.StateDir,
		Log: func(format string, args ...any) {
			if n.Task.NoLog {
				return
			}
			r.opts.Sink.Emit(Event{Time: time.Now(), Type: EventLog, Play: n.Play.Name, Task: taskTitle(n.Task),
				Host: n.Host, Node: n.ID, Msg: fmt.Sprintf(format, args...)})
		},
	}
	if confirm := r.opts.Confirm; confirm != nil {
		env.Confirm = func(ctx context.Context, c *modules.Change) error {
			if n.Task.NoLog {
				c = hiddenChange(c)
			}
			return confirm(ctx, taskTitle(n.Task), n.Host, c)
		}
	}
	res, err := modules.Run(ctx, n.Task.Module, m, env, n.Args, writers)
	if err != nil && transport.IsUnreachable(err) {
		return nil, err
	}
	if at := r.valuePos(err, n.Host); at != "" && res != nil && res.Status == modules.StatusFailed {
		res.Msg = at + ": " + res.Msg
	}
	return res, nil
}

// valuePos is where the inventory wrote the value a run-time variable
// error is about (a listen address the host does not have, say), so the
// failure names the line to fix as a compile error would.
func (r *run) valuePos(err error, host string) string {
	var ve modules.VariableError
	if err == nil || r.inv == nil || !errors.As(err, &ve) {
		return ""
	}
	if h, ok := ve.(interface{ VarHost() string }); ok && h.VarHost() != "" {
		host = h.VarHost()
	}
	ih, ok := r.inv.Host(host)
	if !ok {
		return ""
	}
	if p, ok := ih.VarPos(ve.Variable()); ok {
		return p.String()
	}
	return ""
}

// withRetries runs try until it succeeds (or until its `until` condition
// holds), at most retries+1 times, waiting delay between tries.
func (r *run) withRetries(ctx context.Context, n *playbook.Node, try func() (*modules.Result, error)) (*modules.Result, error) {
	t := n.Task
	for attempt := 0; ; attempt++ {
		res, err := try()
		done := err == nil && res.Status != modules.StatusFailed
		if err == nil && t.Until != "" {
			ok, uerr := playbook.Holds("until", []string{t.Until}, r.varsWithResults(n, res))
			if uerr != nil {
				return nil, fmt.Errorf("until: %w", uerr)
			}
			done = ok
		}
		if done || attempt >= t.Retries || (err != nil && transport.IsUnreachable(err)) {
			if !done && err == nil && t.Until != "" && res.Status != modules.StatusFailed {
				res.Status = modules.StatusFailed
				res.Msg = fmt.Sprintf("until %q still false after %d tries", t.Until, attempt+1)
			}
			return res, err
		}
		delay := time.Duration(t.Delay * float64(time.Second))
		if delay <= 0 {
			delay = time.Second
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// resultVar is a task result as later templates see it through register
// (and as until and changed_when see it): Ansible's shape, with the
// module's data (rc, stdout, ...) at the top level.
func resultVar(res *modules.Result) map[string]any {
	v := map[string]any{}
	for k, d := range res.Data {
		v[k] = d
	}
	v["status"] = string(res.Status)
	v["msg"] = res.Msg
	v["data"] = res.Data
	v["changed"] = res.Status == modules.StatusChanged
	v["failed"] = res.Status == modules.StatusFailed
	v["skipped"] = res.Status == modules.StatusSkipped
	return v
}

// varsWithResults is the data conditions render against: the node's vars,
// the results its host registered so far, and (for until and changed_when)
// this task's own result as "result" and under its register name.
func (r *run) varsWithResults(n *playbook.Node, res *modules.Result) map[string]any {
	data := make(map[string]any, len(n.Vars)+4)
	for k, v := range n.Vars {
		data[k] = v
	}
	r.mu.Lock()
	for k, v := range r.registered[n.Host] {
		data[k] = v
	}
	r.mu.Unlock()
	if res != nil {
		rv := resultVar(res)
		data["result"] = rv
		if n.Task.Register != "" {
			data[n.Task.Register] = rv
		}
	}
	return data
}

// register records a result under the task's register name for every host
// the node acts for.
func (r *run) register(n *playbook.Node, res *modules.Result) {
	if n.Task.Register == "" {
		return
	}
	rv := resultVar(res)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range forHosts(n) {
		if r.registered[h] == nil {
			r.registered[h] = map[string]any{}
		}
		r.registered[h][n.Task.Register] = rv
	}
}

// recordFailure applies the play's failure policy after a failed node.
func (r *run) recordFailure(n *playbook.Node) {
	if n.Task.IgnoreErrors {
		return
	}
	p, d, hosts := n.Play, domainOf(n), n.PlayHosts()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failedHosts[d] == nil {
		r.failedHosts[d] = map[string]bool{}
	}
	r.failedHosts[d][n.Host] = true
	failed := len(r.failedHosts[d])
	switch {
	case p.AnyErrorsFatal:
		r.aborted[d] = true
	case p.MaxFailPercentage >= 0 && len(hosts) > 0 &&
		float64(failed)*100/float64(len(hosts)) > float64(p.MaxFailPercentage):
		r.aborted[d] = true
	}
}

// failureDomain is what a play's failure policy (any_errors_fatal,
// max_fail_percentage) acts on: the play, or one partition of it, since
// partitions are independent (one etcd cluster's failure does not stop
// another's roll).
type failureDomain struct{ play, part int }

func domainOf(n *playbook.Node) failureDomain { return failureDomain{n.Play.Index, n.Part} }

func (r *run) isAborted(n *playbook.Node) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aborted[domainOf(n)]
}

// skipped is the walker's callback for nodes whose dependency failed.
func (r *run) skipped(id string, cause error) {
	n, ok := r.graph.Node(id)
	if !ok || n.Handler {
		return // handlers that were never going to run stay silent
	}
	r.count(n.Host, modules.StatusSkipped)
	r.opts.Sink.Emit(Event{Time: time.Now(), Type: EventNodeDone, Play: n.Play.Name, Task: taskTitle(n.Task),
		Module: n.Task.Module, Host: n.Host, Node: n.ID, Status: modules.StatusSkipped,
		Msg: skipReason(cause)})
}

// skipReason names the root cause briefly: the failure itself was reported
// once, on its own line.
func skipReason(cause error) string {
	var tf *taskFailed
	switch {
	case errors.As(cause, &tf):
		return fmt.Sprintf("not run: %q failed on %s", tf.task, tf.host)
	case errors.Is(cause, errUnreachable):
		return "not run: host unreachable"
	case errors.Is(cause, errPlayAborted):
		return "not run: " + errPlayAborted.Error()
	}
	return "not run: " + cause.Error()
}

// hiddenMsg stands for everything a no_log task would have printed.
const hiddenMsg = "output hidden (no_log: true)"

// hidden is ev as a no_log task shows it: its status, and how many
// changes it plans, nothing of what they are.
func hidden(ev Event) Event {
	if ev.Msg != "" {
		ev.Msg = hiddenMsg
	}
	ev.Data = nil
	ev.Change = hiddenChange(ev.Change)
	return ev
}

func hiddenChange(c *modules.Change) *modules.Change {
	if c == nil || (len(c.Actions) == 0 && len(c.Diffs) == 0) {
		return c
	}
	return &modules.Change{
		Actions:    []modules.Action{{Op: "~", Target: fmt.Sprintf("%d planned changes", len(c.Actions)), Detail: hiddenMsg}},
		Disruptive: c.Disruptive,
	}
}

func taskTitle(t *playbook.Task) string {
	if t.Name != "" {
		return t.Name
	}
	return t.Module
}
