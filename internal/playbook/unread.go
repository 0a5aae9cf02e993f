package playbook

import (
	"fmt"
	"maps"
	"regexp"
	"slices"

	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/modules"
)

// unreadVariables warns about each variable in a module namespace (etcd_)
// that nothing reads: not the modules (modules.UnreadVariable) and not
// the playbook, whose own tasks, vars and template files may use a
// variable of that name. A misspelt etcd_quota_backend_bytes would
// otherwise leave etcd at its default without a word. A warning, not an
// error: an inventory written for another tool (kubespray's has etcd_
// variables of its own) still runs, and says what etcdplay ignores.
func (c *compiler) unreadVariables() {
	for _, h := range c.inv.Hosts() {
		for _, name := range slices.Sorted(maps.Keys(h.Vars)) {
			pos, _ := h.VarPos(name)
			c.warnUnread(pos, "vars."+name, name)
		}
	}
	for _, ps := range c.pb.Plays {
		for _, name := range slices.Sorted(maps.Keys(ps.Vars)) {
			c.warnUnread(ps.pos["vars."+name], fmt.Sprintf("p%d.vars.%s", ps.Index, name), name)
		}
	}
	for _, f := range c.varsFilesRead {
		for _, name := range slices.Sorted(maps.Keys(f.vars)) {
			c.warnUnread(Pos{File: f.path}, "vars."+name, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.opts.ExtraVars)) {
		c.warnUnread(Pos{}, "-e "+name, name)
	}
	c.out.Warnings.Sort()
}

// unreadVar is what modules.UnreadVariable said of a name.
type unreadVar struct {
	unread bool
	hint   string
}

// varsFile is what one vars_files entry set.
type varsFile struct {
	path string
	vars map[string]any
}

// UnreadVariables is what the compiler warns about an inventory and -e
// when no playbook reads anything: for the tools that build the cluster
// model without one (status, backups, ctl).
func UnreadVariables(inv *inventory.Inventory, extra map[string]any) Errors {
	c := newCompiler(&Playbook{}, inv, Options{ExtraVars: extra})
	c.unreadVariables()
	return c.out.Warnings
}

// warnUnread warns about name, written at pos, when nothing reads it; once
// per place.
func (c *compiler) warnUnread(pos Pos, field, name string) {
	v, ok := c.unread[name] // a fleet's hosts share their group's variables
	if !ok {
		v.unread, v.hint = modules.UnreadVariable(name)
		if c.unread == nil {
			c.unread = map[string]unreadVar{}
		}
		c.unread[name] = v
	}
	if !v.unread {
		return
	}
	if c.words == nil {
		c.words = c.playbookWords()
	}
	key := pos.String() + " " + field
	if c.words[name] || c.warned[key] {
		return
	}
	if c.warned == nil {
		c.warned = map[string]bool{}
	}
	c.warned[key] = true
	c.out.Warnings = append(c.out.Warnings, &Error{Pos: pos, Field: field, Hint: v.hint,
		Msg: fmt.Sprintf("no module or task reads %s: it changes nothing", name)})
}

// renderedTemplate records a template file a module had rendered: the
// variables it reads are read.
func (c *compiler) renderedTemplate(name, text string) {
	c.templatesMu.Lock()
	defer c.templatesMu.Unlock()
	if c.templates == nil {
		c.templates = map[string]string{}
	}
	c.templates[name] = text
}

var word = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// playbookWords is every identifier-like word the playbook writes where a
// variable can be read: host patterns, vars values, every string of every
// task and handler, and the template files rendered for them.
func (c *compiler) playbookWords() map[string]bool {
	out := map[string]bool{}
	walk := func(v any) {
		for s := range leaves(v) {
			for _, w := range word.FindAllString(s, -1) {
				out[w] = true
			}
		}
	}
	for _, ps := range c.pb.Plays {
		walk(ps.Hosts)
		walk(ps.PartitionBy)
		walk(ps.Vars)
		for _, t := range append(slices.Clone(ps.Tasks), ps.Handlers...) {
			walk(t.Name)
			walk(t.Args)
			walk(t.Until)
			for _, w := range append(slices.Clone(t.WhenList), t.ChangedWhenList...) {
				walk(w)
			}
		}
	}
	for _, text := range c.templates {
		walk(text)
	}
	return out
}
