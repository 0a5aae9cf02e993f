package modules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync/atomic"
)

// Run is the one way a module runs, wherever it runs: the agent (host-side
// modules), the runner (controller-side modules) and the in-process test
// host all call it. It validates args, plans, stops there under env.Check
// or when there is nothing to do, and otherwise applies the plan.
//
// Plan sees the hosts only through read-only handles (env.Remote and
// env.Hosts are wrapped with ReadOnly here, whatever the caller put in
// them). writers, the handles that can change hosts, are handed over only
// for Apply and taken back after it, so a dry run cannot write: under
// check nothing ever receives them.
//
// The Result is never nil. A failure is a failed Result; err is its cause
// when it came from an error (the caller tells an unreachable host from a
// failed module with it). A failed Apply keeps its partial Data and the
// plan it was carrying out.
func Run(ctx context.Context, name string, m Module, env *Env, args Args, writers map[string]HostWriter) (res *Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(os.Stderr, "etcdplay: panic in module %s on %s: %v\n%s", name, env.Host, p, debug.Stack())
			err = fmt.Errorf("module %s panicked: %v", name, p)
			res = &Result{Status: StatusFailed, Msg: err.Error()}
		}
	}()
	if args == nil {
		args = Args{}
	}
	env.Remote = ReadOnly(env.Remote)
	if env.Hosts != nil {
		ro := make(map[string]Host, len(env.Hosts))
		for h, r := range env.Hosts {
			ro[h] = ReadOnly(r)
		}
		env.Hosts = ro
	}
	env.writers = nil

	if err := m.Validate(args); err != nil {
		err = fmt.Errorf("%s: %w", name, err)
		return failure(ctx, nil, err), err
	}
	c, err := m.Plan(ctx, env, args)
	if err != nil {
		return failure(ctx, nil, err), err
	}
	if c.Empty() {
		return &Result{Status: StatusOK, Change: c}, nil
	}
	if env.Check {
		return &Result{Status: StatusChanged, Change: c}, nil
	}
	if err := ctx.Err(); err != nil {
		return failure(ctx, &Result{Change: c}, err), err
	}
	if c.Disruptive != "" && env.Confirm != nil {
		if err := env.Confirm(ctx, c); err != nil {
			return failure(ctx, &Result{Change: c}, err), err
		}
	}
	env.writers = writers
	if env.writers == nil {
		env.writers = map[string]HostWriter{}
	}
	NoteChange()
	defer func() { env.writers = nil; NoteChange() }()
	r, err := m.Apply(ctx, env, c)
	if r == nil {
		r = &Result{}
	}
	if r.Change == nil {
		r.Change = c
	}
	if err != nil {
		return failure(ctx, r, err), err
	}
	if r.Status == "" {
		r.Status = StatusChanged
	}
	return r, nil
}

// changes counts the Applies this process has run or asked an agent for
// that changed, or may have changed, a host (NoteChange).
var changes atomic.Uint64

// NoteChange records that a host is being changed: Run calls it around
// every Apply, and the transport after every agent Apply that was not a
// no-op and every upload. What the process keeps about hosts on the
// strength of nothing having changed (etcd clients shared by a run's
// checks) is dropped when Changes moves.
func NoteChange() { changes.Add(1) }

// Changes is how many changes NoteChange has recorded.
func Changes() uint64 { return changes.Load() }

// failure turns err into a failed Result, keeping what partial carries
// (the module's own message first, its Data, the plan).
func failure(ctx context.Context, partial *Result, err error) *Result {
	msg := err.Error()
	if ctx.Err() != nil {
		msg = "interrupted: " + msg
	}
	out := &Result{Status: StatusFailed, Msg: msg}
	if partial != nil {
		if partial.Msg != "" {
			out.Msg = partial.Msg + ": " + msg
		}
		out.Data, out.Change = partial.Data, partial.Change
	}
	return out
}

// RunProbe answers the probe registered under name, wherever it runs (the
// agent, the in-process test host). The answer travels as JSON in
// Data["answer"] (see DecodeAnswer); a failure is a failed Result.
func RunProbe(ctx context.Context, name string, args Args) (res *Result) {
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(os.Stderr, "etcdplay: panic in probe %s: %v\n%s", name, p, debug.Stack())
			res = &Result{Status: StatusFailed, Msg: fmt.Sprintf("probe %s panicked: %v", name, p)}
		}
	}()
	p, ok := LookupProbe(name)
	if !ok {
		return &Result{Status: StatusFailed, Msg: fmt.Sprintf("unknown probe %q", name)}
	}
	if args == nil {
		args = Args{}
	}
	answer, err := p.Probe(ctx, args)
	if err != nil {
		return &Result{Status: StatusFailed, Msg: fmt.Sprintf("probe %s: %v", name, err)}
	}
	b, err := json.Marshal(answer)
	if err != nil {
		return &Result{Status: StatusFailed, Msg: fmt.Sprintf("probe %s: encode answer: %v", name, err)}
	}
	return &Result{Status: StatusOK, Data: map[string]any{"answer": string(b)}}
}

// DecodeAnswer decodes a probe's Result (from RunProbe) into out.
func DecodeAnswer(name string, res *Result, out any) error {
	if res == nil {
		return fmt.Errorf("probe %s: no answer", name)
	}
	if res.Status == StatusFailed {
		return errors.New(res.Msg)
	}
	s, _ := res.Data["answer"].(string)
	if err := json.Unmarshal([]byte(s), out); err != nil {
		return fmt.Errorf("probe %s: bad answer %q: %w", name, s, err)
	}
	return nil
}
