package playbook

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/internal/dag"
	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/internal/tmpl"
	"github.com/etcdplay/etcdplay/internal/yamlpos"
	"github.com/etcdplay/etcdplay/modules"
)

// Options are the command line's say in compiling.
type Options struct {
	// ExtraVars (-e) override every other variable.
	ExtraVars map[string]any
	// Limit (--limit) narrows every play's hosts; "" is no limit.
	Limit string
	// Tags and SkipTags (--tags, --skip-tags) select tasks, with Ansible's
	// special tags: all, tagged, untagged, always, never.
	Tags, SkipTags []string
	// StateDir is the controller state directory, for Resolvers that read
	// what earlier runs recorded there.
	StateDir string
}

// Load parses the playbook at path and compiles it against inv: every
// template rendered for every host, every module's arguments validated,
// the whole run laid out as a graph. Nothing connects to any host.
//
// Problems are reported all at once: when parsing finds some, compiling
// still runs over what could be read, and both lists come back together.
func Load(path string, inv *inventory.Inventory, opts Options) (*Compiled, error) {
	pb, perr := parse(path)
	if pb == nil {
		return nil, perr
	}
	if perr == nil {
		return pb.Compile(inv, opts)
	}
	c := newCompiler(pb, inv, opts)
	c.c.errs = append(c.c.errs, perr.(Errors)...)
	c.run()
	return nil, c.c.err()
}

func newCompiler(pb *Playbook, inv *inventory.Inventory, opts Options) *compiler {
	return &compiler{pb: pb, inv: inv, opts: opts, registered: map[string]bool{}, shared: map[*Task]modules.Args{},
		out: &Compiled{File: pb.File, Graph: dag.New[*Node]()}}
}

type compiler struct {
	pb    *Playbook
	inv   *inventory.Inventory
	opts  Options
	c     collector
	out   *Compiled
	limit map[string]bool // nil = no limit
	// registered are the names tasks register: known only at run time.
	registered map[string]bool
	// varSeen are the variable problems already reported (one report per
	// run, however many tasks and hosts read the variable).
	varSeen map[string]bool
	// shared are the validated arguments of tasks whose arguments hold no
	// template and whose module resolves nothing: the same for every
	// host, so rendered and validated once.
	shared map[*Task]modules.Args
	// prevSinks are the last nodes of the previous batch or play.
	prevSinks []string
	// broken are the current play's variables that failed to render, by
	// host and name.
	broken map[string]map[string]*brokenVar
	// For unreadVariables: the vars files read, the template files
	// rendered (by name; builds run concurrently), the names the playbook
	// writes, and the places already warned about.
	varsFilesRead []varsFile
	templatesMu   sync.Mutex
	templates     map[string]string
	words, warned map[string]bool
	unread        map[string]unreadVar
}

// Compile lays the parsed playbook out against an inventory (see Load).
//
// The graph has one node per (task, host) and these edges:
//   - task order per host: a task runs after every earlier task of the
//     same host has run, unless it has `needs`, which replaces that
//     implicit edge with edges from the named tasks only (on the same
//     host, or their run_once node), so independent tasks run in parallel;
//   - run_once: one node for the whole batch, bound to its first host; it
//     waits for every host's earlier tasks and every host's later tasks
//     wait for it (a barrier);
//   - serial: every node of batch k precedes every node of batch k+1;
//   - plays run in order: the last nodes of play p precede the first of
//     play p+1;
//   - handlers: one node per (handler, host), or one for a run_once
//     handler, after that host's tasks in the batch, in the order the
//     handlers are written; the runner runs it only when notified.
func (pb *Playbook) Compile(inv *inventory.Inventory, opts Options) (*Compiled, error) {
	c := newCompiler(pb, inv, opts)
	c.run()
	if err := c.c.err(); err != nil {
		return nil, err
	}
	if cyc := c.out.Graph.Cycle(); cyc != nil {
		// Parse rules cycles out per play; this guards the builder itself.
		return nil, Errors{{Pos: Pos{File: pb.File}, Msg: "internal error: dependency cycle: " + strings.Join(cyc, " -> ")}}
	}
	return c.out, nil
}

func (c *compiler) run() {
	pb, inv, opts := c.pb, c.inv, c.opts
	for _, play := range pb.Plays {
		for _, t := range append(append([]*Task(nil), play.Tasks...), play.Handlers...) {
			if t.Register != "" {
				c.registered[t.Register] = true
			}
		}
	}
	if opts.Limit != "" {
		hs, err := inv.Match(opts.Limit)
		if err != nil {
			c.c.addf(Pos{}, "--limit", "", "%v", err)
		} else if len(hs) == 0 {
			c.c.addf(Pos{}, "--limit", "", "pattern %q matches no host of %s", opts.Limit, inv.File)
		}
		c.limit = map[string]bool{}
		for _, h := range hs {
			c.limit[h.Name] = true
		}
	}
	for _, ps := range pb.Plays {
		c.play(ps)
	}
	c.unreadVariables()
}

func (c *compiler) play(ps *PlaySpec) {
	field := fmt.Sprintf("p%d", ps.Index)
	play := &Play{Index: ps.Index, Name: ps.Name, MaxFailPercentage: ps.MaxFailPercentage,
		AnyErrorsFatal: ps.AnyErrorsFatal, Tasks: ps.Tasks, Handlers: ps.Handlers}
	c.out.Plays = append(c.out.Plays, play)

	// Play vars without host context, for hosts: and vars_files: paths.
	global := maps.Clone(ps.Vars)
	maps.Copy(global, c.opts.ExtraVars)

	pattern := ps.Hosts
	if tmpl.Has(pattern) {
		s, err := tmpl.String(field+".hosts", pattern, global)
		if err != nil {
			c.c.addf(ps.pos["hosts"], field+".hosts", "", "%v", err)
			return
		}
		pattern = s
	}
	matched, err := c.inv.Match(pattern)
	if err != nil {
		c.c.addf(ps.pos["hosts"], field+".hosts", "", "%v", err)
		return
	}
	if len(matched) == 0 && !c.knownEmpty(pattern) {
		var cands []string
		cands = append(cands, c.inv.GroupNames()...)
		for _, h := range c.inv.Hosts() {
			cands = append(cands, h.Name)
		}
		c.c.addf(ps.pos["hosts"], field+".hosts", modules.Closest(pattern, cands),
			"pattern %q matches no host of %s", pattern, c.inv.File)
		return
	}
	for _, h := range matched {
		if c.limit == nil || c.limit[h.Name] {
			play.Hosts = append(play.Hosts, h.Name)
		}
	}

	c.c.playHosts = len(play.Hosts)
	fileVars := c.varsFiles(ps, global, field)
	vars := c.hostVars(ps, play.Hosts, fileVars, field)
	parts := c.partitions(ps, play.Hosts, vars, field)
	if len(parts) <= 1 {
		c.part(ps, play, 0, play.Hosts, vars)
		return
	}
	// The partitions hang off the same predecessors and the next play
	// waits for all of them: they run side by side.
	play.Parts = parts
	start := c.prevSinks
	var sinks []string
	for k, p := range parts {
		c.prevSinks = start
		c.part(ps, play, k, p.Hosts, c.hostVars(ps, p.Hosts, fileVars, field))
		sinks = appendNew(sinks, c.prevSinks...)
	}
	c.prevSinks = sinks
}

// part adds one partition of a play (every host when it has one): its
// serial batches in order.
func (c *compiler) part(ps *PlaySpec, play *Play, k int, hosts []string, vars map[string]map[string]any) {
	sizes := batchSizes(ps.Serial, len(hosts))
	if len(sizes) == 1 {
		sizes = nil // one batch holding every host is no batching at all
	}
	if play.Parts == nil {
		play.Serial = sizes
	} else {
		play.Parts[k].Serial = sizes
	}
	start := 0
	for b, size := range sizes {
		c.batch(ps, play, batchRef{part: k, batch: b + 1}, hosts[start:start+size], vars)
		start += size
	}
	if sizes == nil && len(hosts) > 0 {
		c.batch(ps, play, batchRef{part: k, batch: 1}, hosts, vars)
	}
}

// partitions splits a play's hosts by partition_by, in inventory order of
// each partition's first host. A host whose value fails to render is
// reported and left out.
func (c *compiler) partitions(ps *PlaySpec, hosts []string, vars map[string]map[string]any, field string) []Partition {
	if ps.PartitionBy == "" {
		return nil
	}
	index := map[string]int{}
	var parts []Partition
	for _, h := range hosts {
		key, err := tmpl.String(field+".partition_by", ps.PartitionBy, vars[h])
		if err != nil {
			if !c.brokenRead(err, h, ps.pos["partition_by"], field+".partition_by") {
				c.c.hostf(h, ps.pos["partition_by"], field+".partition_by", "", "%v", err)
			}
			continue
		}
		k, ok := index[key]
		if !ok {
			k = len(parts)
			index[key] = k
			parts = append(parts, Partition{Key: key})
		}
		parts[k].Hosts = append(parts[k].Hosts, h)
	}
	return parts
}

// knownEmpty tells a pattern naming a group that exists but has no hosts
// (fine: the play has nothing to do) from a typo (an error).
func (c *compiler) knownEmpty(pattern string) bool {
	groups := c.inv.Groups()
	for _, term := range strings.FieldsFunc(pattern, func(r rune) bool { return r == ',' || r == ':' }) {
		term = strings.TrimLeft(strings.TrimSpace(term), "&!")
		if _, ok := groups[term]; ok || modules.KnownGroup(term) {
			return true
		}
	}
	return false
}

// batchSizes turns serial into batch host counts with Ansible's rules: a
// percentage is of the play's hosts (at least 1), the last size repeats
// until every host is in a batch. Nil means one batch of every host.
func batchSizes(steps []SerialStep, hosts int) []int {
	if len(steps) == 0 || hosts == 0 {
		return nil
	}
	var out []int
	left := hosts
	for i := 0; left > 0; i++ {
		st := steps[min(i, len(steps)-1)]
		n := st.N
		if st.Percent {
			n = max(1, hosts*st.N/100)
		}
		n = min(n, left)
		out = append(out, n)
		left -= n
	}
	return out
}

func (c *compiler) varsFiles(ps *PlaySpec, global map[string]any, field string) map[string]any {
	out := map[string]any{}
	for i, f := range ps.VarsFiles {
		pos := ps.pos[fmt.Sprintf("vars_files[%d]", i)]
		ff := fmt.Sprintf("%s.vars_files[%d]", field, i)
		if tmpl.Has(f) {
			s, err := tmpl.String(ff, f, global)
			if err != nil {
				c.c.addf(pos, ff, "", "%v", err)
				continue
			}
			f = s
		}
		path := f
		if !filepath.IsAbs(path) {
			path = filepath.Join(c.pb.Dir, f)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			c.c.addf(pos, ff, "", "cannot read %s: %s", path, readMsg(err))
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			e := yamlpos.DecodeError(path, err)
			e.Msg = "vars file: " + e.Msg
			c.c.add(e)
			continue
		}
		if m != nil {
			maps.Copy(out, inventory.Normalize(m).(map[string]any))
			c.varsFilesRead = append(c.varsFilesRead, varsFile{path, m})
		}
	}
	return out
}

// hostVars computes, for every host of the play, its variables (inventory
// < play vars < vars_files < extra vars) with templates rendered, plus the
// facts inventory_hostname, inventory_hostname_short, group_names, groups,
// play_hosts and hostvars. Maps in the result are shared and read-only.
//
// A variable whose template fails is left out (see brokenRead).
func (c *compiler) hostVars(ps *PlaySpec, playHosts []string, fileVars map[string]any, field string) map[string]map[string]any {
	rendered, errs := mergeVars(c.inv, playHosts, ps.Vars, fileVars, c.opts.ExtraVars)
	c.broken = map[string]map[string]*brokenVar{}
	for host, hostErrs := range errs {
		// Like Ansible, a variable is only an error when something reads
		// it: it is left out, and a template that trips over it says why.
		for _, e := range hostErrs {
			pos, src := c.varSource(ps, e.name, fileVars)
			if c.broken[host] == nil {
				c.broken[host] = map[string]*brokenVar{}
			}
			c.broken[host][e.name] = &brokenVar{varErr: e, pos: pos, src: src, field: field + ".vars." + e.name}
		}
	}
	out := map[string]map[string]any{}
	for _, h := range playHosts {
		out[h] = rendered[h]
	}
	return out
}

// HostVars is what a play over playHosts sees for every inventory host:
// inventory and extra variables merged and rendered the way the compiler
// does it, with the facts. Tools outside a playbook (status) use it, so
// they build the same cluster model apply does. A variable whose template
// fails is an error here: nothing would tell the operator otherwise.
func HostVars(inv *inventory.Inventory, playHosts []string, extra map[string]any) (map[string]map[string]any, error) {
	vars, errs := mergeVars(inv, playHosts, nil, nil, extra)
	var all []error
	for _, h := range inv.Hosts() {
		for _, e := range errs[h.Name] {
			all = append(all, fmt.Errorf("%s: variable %q (set in inventory %s or by -e) cannot be rendered: %w", h.Name, e.name, inv.File, e.err))
		}
	}
	return vars, errors.Join(all...)
}

// mergeVars computes, for every inventory host, its variables (inventory
// < play vars < vars_files < extra vars) with templates rendered, plus the
// facts inventory_hostname, inventory_hostname_short, group_names, groups,
// play_hosts and hostvars. A variable whose template fails is left out
// and reported in errs. Maps in the result are shared and read-only.
func mergeVars(inv *inventory.Inventory, playHosts []string, layers ...map[string]any) (map[string]map[string]any, map[string][]varErr) {
	groups := map[string]any{}
	for g, hs := range inv.Groups() {
		groups[g] = toAny(hs)
	}
	ph := toAny(playHosts)
	base := map[string]map[string]any{}
	for _, h := range inv.Hosts() {
		v := maps.Clone(h.Vars)
		if v == nil {
			v = map[string]any{}
		}
		for _, l := range layers {
			maps.Copy(v, l)
		}
		v["inventory_hostname"] = h.Name
		v["inventory_hostname_short"], _, _ = strings.Cut(h.Name, ".")
		v["group_names"] = toAny(h.Groups)
		v["groups"] = groups
		v["play_hosts"] = ph
		v["ansible_play_hosts"] = ph
		base[h.Name] = v
	}
	rawHostvars := map[string]any{}
	for n, v := range base {
		rawHostvars[n] = v
	}
	rendered := map[string]map[string]any{}
	errs := map[string][]varErr{}
	for _, h := range inv.Hosts() {
		v, es := renderVars(base[h.Name], rawHostvars)
		for _, e := range es {
			delete(v, e.name)
		}
		if len(es) > 0 {
			errs[h.Name] = es
		}
		rendered[h.Name] = v
	}
	hostvars := map[string]any{}
	for n, v := range rendered {
		hostvars[n] = v
	}
	out := map[string]map[string]any{}
	for n, v := range rendered {
		v = maps.Clone(v)
		v["hostvars"] = hostvars
		out[n] = v
	}
	return out, errs
}

// varSource says where a variable was set, for error messages, with its
// position when that is in the playbook itself.
func (c *compiler) varSource(ps *PlaySpec, name string, fileVars map[string]any) (Pos, string) {
	switch {
	case c.opts.ExtraVars != nil && c.opts.ExtraVars[name] != nil:
		return Pos{}, "set by -e"
	case fileVars[name] != nil:
		return Pos{}, "set in vars_files"
	case ps.Vars[name] != nil:
		return ps.pos["vars."+name], "set in play vars"
	}
	return Pos{}, "set in inventory " + c.inv.File
}

// brokenVar is a variable whose template failed to render for a host.
type brokenVar struct {
	varErr
	pos   Pos
	src   string
	field string
}

// brokenRead reports err when it is a read of a broken variable (directly
// or through hostvars), at the variable's definition when it is in the
// playbook, else where it was read. It returns false for other errors.
func (c *compiler) brokenRead(err error, host string, usePos Pos, useField string) bool {
	var te *tmpl.Error
	if !errors.As(err, &te) || te.Undefined == "" {
		return false
	}
	parts := strings.Split(te.Undefined, ".")
	if parts[0] == "hostvars" && len(parts) >= 3 {
		host, parts = parts[1], parts[2:]
	}
	b := c.broken[host][parts[0]]
	if b == nil {
		return false
	}
	if b.pos.Line > 0 {
		c.c.hostf(host, b.pos, b.field, b.hint, "%v (%s)", b.err, b.src)
	} else {
		c.c.hostf(host, usePos, useField, b.hint, "variable %q (%s) cannot be rendered: %v", b.name, b.src, b.err)
	}
	return true
}

type varErr struct {
	name, hint string
	err        error
}

// renderVars renders the variables that hold templates. They may refer to
// each other in any order, so rendering repeats while it makes progress.
func renderVars(v map[string]any, hostvars map[string]any) (map[string]any, []varErr) {
	out := maps.Clone(v)
	var pending []string
	for k, val := range v {
		if hasTemplate(val) {
			pending = append(pending, k)
		}
	}
	sort.Strings(pending)
	if len(pending) == 0 {
		return out, nil
	}
	data := maps.Clone(out)
	data["hostvars"] = hostvars
	// A chain of vars holding templates needs one pass per link; the bound
	// stops a pair of vars that render to each other.
	for pass := 0; len(pending) > 0 && pass < 20; pass++ {
		var next []string
		var errs []varErr
		for _, k := range pending {
			r, err := tmpl.Render(k, out[k], data)
			if err == nil && hasTemplate(r) && !equalish(r, out[k]) {
				// Rendered to another template (a var holding "{{ .x }}"
				// text): go round again.
				out[k], data[k] = r, r
				next = append(next, k)
				continue
			}
			if err != nil {
				errs = append(errs, varErr{name: k, err: err, hint: undefinedHint(err, data)})
				next = append(next, k)
				continue
			}
			out[k], data[k] = r, r
		}
		if len(next) == len(pending) {
			return out, errs
		}
		pending = next
	}
	return out, nil
}

func equalish(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func hasTemplate(v any) bool {
	for s := range leaves(v) {
		if tmpl.Has(s) {
			return true
		}
	}
	return false
}

// leaves yields every string in v, a value as YAML decodes it: map
// values and list items, not map keys (they name arguments and
// variables).
func leaves(v any) iter.Seq[string] {
	return func(yield func(string) bool) { yieldLeaves(v, yield) }
}

func yieldLeaves(v any, yield func(string) bool) bool {
	switch t := v.(type) {
	case string:
		return yield(t)
	case map[string]any:
		for _, e := range t {
			if !yieldLeaves(e, yield) {
				return false
			}
		}
	case []any:
		for _, e := range t {
			if !yieldLeaves(e, yield) {
				return false
			}
		}
	}
	return true
}

// undefinedHint suggests the closest variable to an undefined one.
func undefinedHint(err error, data map[string]any) string {
	var te *tmpl.Error
	if !errors.As(err, &te) || te.Undefined == "" {
		return ""
	}
	parts := strings.Split(te.Undefined, ".")
	var cur any = data
	for i, p := range parts {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		next, ok := m[p]
		if !ok {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			c := modules.Closest(p, keys)
			if c == "" {
				return ""
			}
			return strings.Join(append(parts[:i:i], c), ".")
		}
		cur = next
	}
	return ""
}

func toAny(xs []string) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}
