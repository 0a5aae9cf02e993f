package playbook

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/etcdplay/etcdplay/internal/tmpl"
	"github.com/etcdplay/etcdplay/modules"
)

// batchRef names a serial batch of a play's partition (both 1-based in
// node ids, where the first of either is left out).
type batchRef struct{ part, batch int }

func (b batchRef) suffix() string {
	s := ""
	if b.part > 0 {
		s = fmt.Sprintf(".c%d", b.part+1)
	}
	if b.batch > 1 {
		s += fmt.Sprintf(".b%d", b.batch)
	}
	return s
}

// batch adds the nodes and edges of one serial batch of a play.
func (c *compiler) batch(ps *PlaySpec, play *Play, b batchRef, hosts []string, vars map[string]map[string]any) {
	g := c.out.Graph
	first := g.Len()
	suffix := b.suffix()
	// Create every node first, so needs may name a later task.
	type slot struct {
		once string   // run_once node id
		ids  []string // else one node per host, in the order of hosts
	}
	hostIndex := make(map[string]int, len(hosts))
	for i, h := range hosts {
		hostIndex[h] = i
	}
	nodeOf := func(s slot, h string) string {
		if i, ok := hostIndex[h]; ok && s.ids != nil {
			return s.ids[i]
		}
		return ""
	}
	// Tasks are built concurrently (see node); the graph and the problems
	// take them in task order, as if built one by one.
	all := make([]*Task, 0, len(play.Tasks)+len(play.Handlers))
	all = append(append(all, play.Tasks...), play.Handlers...)
	built := inChunks(len(all), func(lo, hi int) [][]builtNode {
		out := make([][]builtNode, 0, hi-lo)
		for i, t := range all[lo:hi] {
			out = append(out, c.taskNodes(ps, play, t, b.part, suffix, hosts, vars, lo+i >= len(play.Tasks)))
		}
		return out
	})
	g.Grow((len(play.Tasks) + len(play.Handlers)) * len(hosts))
	slots := make([]slot, 0, len(all))
	for _, chunk := range built {
		for _, nodes := range chunk {
			var s slot
			for _, bn := range nodes {
				if err := g.Add(bn.n.ID, bn.n); err != nil {
					panic(err) // ids are unique by construction
				}
				for _, report := range bn.reports {
					report()
				}
				if bn.share != nil {
					c.shared[bn.n.Task] = bn.share
				}
				if bn.n.Hosts != nil {
					s.once = bn.n.ID
				} else {
					s.ids = append(s.ids, bn.n.ID)
				}
			}
			slots = append(slots, s)
		}
	}
	tasks, handlers := slots[:len(play.Tasks)], slots[len(play.Tasks):]
	byID := map[string]int{}
	for i, t := range play.Tasks {
		if t.ID != "" {
			byID[t.ID] = i
		}
	}
	// frontier[h] are h's nodes nothing depends on yet, in order.
	frontier := map[string][]string{}
	connect := func(deps []string, id string) {
		for _, d := range deps {
			if err := g.Connect(d, id); err != nil {
				panic(err) // both ids were just added
			}
		}
	}
	place := func(s slot, t *Task) {
		// The slot's nodes, each with the hosts it covers, in host order.
		type target struct {
			id    string
			hosts []string
		}
		targets := []target{{s.once, hosts}}
		if s.once == "" {
			targets = make([]target, len(hosts))
			for i := range hosts {
				targets[i] = target{s.ids[i], hosts[i : i+1 : i+1]}
			}
		}
		for _, tg := range targets {
			id, hs := tg.id, tg.hosts
			var deps []string
			if t.Needs == nil {
				for _, h := range hs {
					deps = appendNew(deps, frontier[h]...)
				}
			} else {
				for _, need := range t.Needs {
					j, ok := byID[need]
					if !ok {
						continue // reported by Parse
					}
					ns := tasks[j]
					if ns.once != "" {
						deps = appendNew(deps, ns.once)
						continue
					}
					for _, h := range hs {
						deps = appendNew(deps, nodeOf(ns, h))
					}
				}
			}
			connect(deps, id)
			for _, h := range hs {
				if t.Needs == nil {
					frontier[h] = []string{id}
				} else {
					frontier[h] = appendNew(without(frontier[h], deps), id)
				}
			}
		}
	}
	for i, t := range play.Tasks {
		place(tasks[i], t)
	}
	for i, t := range play.Handlers {
		place(handlers[i], t)
	}

	// Order against the previous batch or play: its sinks before this
	// batch's sources.
	ids := g.IDs()[first:]
	var sources, sinks []string
	for _, id := range ids {
		if len(g.Deps(id)) == 0 {
			sources = append(sources, id)
		}
		if len(g.Dependents(id)) == 0 {
			sinks = append(sinks, id)
		}
	}
	for _, s := range c.prevSinks {
		for _, src := range sources {
			if err := g.Connect(s, src); err != nil {
				panic(err)
			}
		}
	}
	if len(ids) > 0 {
		c.prevSinks = sinks
	}
}

// builtNode is a node built apart from the graph: what to report about it
// and the arguments every later host of its task can share.
type builtNode struct {
	n       *Node
	reports []func()
	share   modules.Args
}

// taskNodes builds one task's nodes: one per host, or one for run_once.
// It runs concurrently with other tasks': it reads the compiler and
// writes only t, leaving the graph, the problems and c.shared to the
// caller, in task order.
func (c *compiler) taskNodes(ps *PlaySpec, play *Play, t *Task, part int, suffix string, hosts []string, vars map[string]map[string]any, handler bool) []builtNode {
	m := ps.meta[t]
	kind := "t"
	if handler {
		kind = "h"
	}
	shared, isShared := c.shared[t]
	if t.RunOnce {
		id := fmt.Sprintf("p%d.%s%d.once%s", play.Index, kind, t.Index, suffix)
		n := &Node{ID: id, Play: play, Part: part, Task: t, Host: hosts[0], Hosts: hosts, Vars: vars[hosts[0]], Handler: handler}
		bn := builtNode{n: n}
		bn.share, bn.reports = c.node(n, m, shared, isShared)
		return []builtNode{bn}
	}
	out := make([]builtNode, len(hosts))
	for i, h := range hosts {
		id := fmt.Sprintf("p%d.%s%d.%s", play.Index, kind, t.Index, h)
		n := &Node{ID: id, Play: play, Part: part, Task: t, Host: h, Vars: vars[h], Handler: handler}
		out[i].n = n
		out[i].share, out[i].reports = c.node(n, m, shared, isShared)
		if out[i].share != nil {
			shared, isShared = out[i].share, true
		}
	}
	return out
}

// node decides whether n runs and renders, resolves and validates its
// arguments. Problems come back as reports, so the caller can report them
// in task order; n is still built so the rest of the graph can be checked
// too. share is set when n's arguments are every host's.
func (c *compiler) node(n *Node, m *taskMeta, shared modules.Args, isShared bool) (share modules.Args, reports []func()) {
	t, host, vars := n.Task, n.Host, n.Vars
	if !n.Handler {
		if skip, why := tagSkip(t.Tags, c.opts.Tags, c.opts.SkipTags); skip {
			n.Skip, n.SkipReason = true, why
		}
	}
	if len(m.whenList) > 0 && !n.Skip {
		if report := c.when(n, m, vars); report != nil {
			reports = append(reports, report)
		}
	}
	if t.Module == "" || n.Skip {
		// A task skipped whatever its arguments say is not rendered: its
		// variables may well be undefined on purpose (when: x is defined).
		return nil, reports
	}
	if isShared {
		n.Args = shared
		return nil, reports
	}
	mod, ok := modules.Lookup(t.Module)
	if !ok {
		return nil, reports // reported by Parse
	}
	templated := hasTemplate(t.Args)
	_, resolves := mod.(modules.Resolver)
	var args modules.Args
	if !templated && !resolves && t.Args != nil {
		// Nothing to render or resolve: the arguments as written, shared
		// read-only by every host's node (see c.shared).
		args = t.Args
	} else {
		r, err := tmpl.Render("args", t.Args, vars)
		if err != nil {
			return nil, append(reports, func() { c.templateErr(m, t, err, vars, host) })
		}
		args = modules.Args(r.(map[string]any))
	}
	if res, ok := mod.(modules.Resolver); ok {
		var err error
		rc := &modules.ResolveContext{BaseDir: c.pb.Dir, Host: host, Vars: vars, StateDir: c.opts.StateDir,
			Render: func(name, text string) (string, error) {
				c.renderedTemplate(name, text)
				return tmpl.String(name, text, vars)
			}}
		args, err = res.Resolve(args, rc)
		if err != nil {
			return nil, append(reports, func() { c.moduleErr(m, t, err, host, vars) })
		}
	}
	if err := mod.Validate(args); err != nil {
		return nil, append(reports, func() { c.moduleErr(m, t, err, host, vars) })
	}
	n.Args = args
	if _, alike := mod.(modules.ResolvesAlike); (!resolves || alike) && !templated {
		return args, reports
	}
	return nil, reports
}

// when decides the task's when at compile time: all conditions true runs
// it, a false one skips it. A condition reading a registered result is
// left to the runner.
func (c *compiler) when(n *Node, m *taskMeta, vars map[string]any) (report func()) {
	for _, cond := range m.whenList {
		// Not only an undefined registered name: "out is defined" or
		// "out.rc is defined" renders at compile time too, and wrongly.
		if c.readsRegistered(cond) {
			n.Task.WhenAtRuntime = true
			return nil
		}
	}
	for _, cond := range m.whenList {
		v, err := tmpl.Value("when", wrapCond(cond), vars)
		if err != nil {
			var te *tmpl.Error
			if errors.As(err, &te) && te.Syntax {
				return nil // reported by Parse
			}
			if errors.As(err, &te) && te.Undefined != "" {
				root, _, _ := strings.Cut(te.Undefined, ".")
				if c.registered[root] {
					n.Task.WhenAtRuntime = true
					return nil
				}
			}
			return func() {
				if !c.brokenRead(err, n.Host, m.key.get("when"), m.field+".when") {
					c.c.hostf(n.Host, m.key.get("when"), m.field+".when", undefinedHint(err, vars), "%v", err)
				}
			}
		}
		if !truthy(v) {
			n.Skip, n.SkipReason = true, fmt.Sprintf("when: %s is false", cond)
			return nil
		}
	}
	return nil
}

var (
	quoted     = regexp.MustCompile(`'[^']*'|"[^"]*"`)
	identifier = regexp.MustCompile(`(^|[^\w.])([A-Za-z_]\w*)`)
)

// readsRegistered says whether cond names a variable some task registers
// (outside quotes, not as a field of something else).
func (c *compiler) readsRegistered(cond string) bool {
	for _, m := range identifier.FindAllStringSubmatch(quoted.ReplaceAllString(cond, "''"), -1) {
		if c.registered[m[2]] {
			return true
		}
	}
	return false
}

// truthy reads a rendered condition: booleans, "true"/"yes"/..., non-zero
// numbers, non-empty lists and maps.
func truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case int:
		return t != 0
	case float64:
		return t != 0
	case string:
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "", "false", "no", "off", "0", "<no value>":
			return false
		}
		return true
	case []any:
		return len(t) > 0
	case map[string]any:
		return len(t) > 0
	}
	return true
}

func (c *compiler) templateErr(m *taskMeta, t *Task, err error, vars map[string]any, host string) {
	name := "args"
	var te *tmpl.Error
	if errors.As(err, &te) {
		if te.Syntax {
			return // reported by Parse
		}
		name = te.Name
	}
	pos, field := argPos(m, name), m.field+"."+t.Module+strings.TrimPrefix(name, "args")
	if c.brokenRead(err, host, pos, field) {
		return
	}
	msg := err.Error()
	if te != nil && te.Undefined != "" {
		root, _, _ := strings.Cut(te.Undefined, ".")
		if c.registered[root] {
			msg += " (a registered result exists only at run time: use it in when, until or changed_when)"
		}
	}
	c.c.hostf(host, pos, field, undefinedHint(err, vars), "%s", msg)
}

// moduleErr reports what Resolve or Validate said, at the argument's line
// when it names one.
func (c *compiler) moduleErr(m *taskMeta, t *Task, err error, host string, vars map[string]any) {
	if verrs := variableErrors(err); verrs != nil {
		for _, ve := range verrs {
			if c.varSeen == nil {
				c.varSeen = map[string]bool{}
			}
			if c.varSeen[ve.Error()] {
				continue // already reported for an earlier task or host
			}
			c.varSeen[ve.Error()] = true
			pos, msg := m.key.get("module"), ve.Error()
			if at, ok := c.valuePos(ve, host, vars); ok {
				pos, msg = at, fmt.Sprintf("%s (read by %s)", msg, m.key.get("module"))
			}
			c.c.addf(pos, "vars."+ve.Variable(), "", "%s", msg)
		}
		return
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var ae *modules.ArgError
		if errors.As(e, &ae) {
			pos := m.key.get("module")
			if p, ok := m.args.lookup("args." + ae.Arg); ok && !m.freeForm {
				pos = p
			}
			c.c.hostf(host, pos, m.field+"."+t.Module+"."+ae.Arg, ae.Hint, "%s", ae.Msg)
			continue
		}
		if c.brokenRead(e, host, m.key.get("module"), m.field+"."+t.Module) {
			continue
		}
		c.c.hostf(host, m.key.get("module"), m.field+"."+t.Module, "", "%v", e)
	}
}

// argPos finds where the argument a template error names was written,
// walking up ("args.env.X" -> "args.env" -> "args").
func argPos(m *taskMeta, name string) Pos {
	for {
		if p, ok := m.args.lookup(name); ok {
			return p
		}
		i := strings.LastIndexAny(name, ".[")
		if i < 0 {
			return m.key.get("module")
		}
		name = name[:i]
	}
}

// tagSkip applies --tags and --skip-tags with Ansible's special tags.
func tagSkip(tags, only, skip []string) (bool, string) {
	has := func(list []string, x string) bool { return contains(list, x) }
	any := func(list []string) bool {
		for _, t := range tags {
			if has(list, t) {
				return true
			}
		}
		return false
	}
	if any(skip) || (has(skip, "tagged") && len(tags) > 0) || (has(skip, "untagged") && len(tags) == 0) {
		return true, "tags: skipped by --skip-tags " + strings.Join(skip, ",")
	}
	if len(only) == 0 {
		if has(tags, "never") {
			return true, "tags: never (select it with --tags)"
		}
		return false, ""
	}
	selected := any(only) ||
		(has(tags, "always") && !has(skip, "always")) ||
		(has(only, "all") && !has(tags, "never")) ||
		(has(only, "tagged") && len(tags) > 0) ||
		(has(only, "untagged") && len(tags) == 0)
	if !selected {
		return true, "tags: not selected by --tags " + strings.Join(only, ",")
	}
	return false, ""
}

func appendNew(xs []string, add ...string) []string {
	for _, a := range add {
		if a != "" && !contains(xs, a) {
			xs = append(xs, a)
		}
	}
	return xs
}

func without(xs, drop []string) []string {
	var out []string
	for _, x := range xs {
		if !contains(drop, x) {
			out = append(out, x)
		}
	}
	return out
}

// variableErrors returns the leaves of err's tree when every one of them is
// a modules.VariableError, else nil: such errors are about the inventory or
// -e, not the task, and are reported once.
// valuePos is where the inventory wrote the value a variable error is
// about: the erring host's (or, for a cluster-wide variable, the task
// host's) definition, when that is the value the compiler used (not one
// that -e, play vars or a template replaced).
func (c *compiler) valuePos(ve modules.VariableError, host string, vars map[string]any) (Pos, bool) {
	if h, ok := ve.(interface{ VarHost() string }); ok && h.VarHost() != "" {
		host = h.VarHost()
		hv, _ := vars["hostvars"].(map[string]any)
		vars, _ = hv[host].(map[string]any)
	}
	ih, ok := c.inv.Host(host)
	if !ok {
		return Pos{}, false
	}
	name := ve.Variable()
	at, ok := ih.VarPos(name)
	if !ok || !reflect.DeepEqual(vars[name], ih.Vars[name]) {
		return Pos{}, false
	}
	return at, true
}

func variableErrors(err error) []modules.VariableError {
	var out []modules.VariableError
	var walk func(error) bool
	walk = func(e error) bool {
		if ve, ok := e.(modules.VariableError); ok {
			out = append(out, ve)
			return true
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				if !walk(x) {
					return false
				}
			}
			return len(u.Unwrap()) > 0
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				return walk(x)
			}
		}
		return false
	}
	if !walk(err) {
		return nil
	}
	return out
}
