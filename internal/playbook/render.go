package playbook

import (
	"fmt"
	"strconv"
	"strings"
)

// Text lists the graph for people: per play, one line per node in the
// order nodes were laid out, with what it waits for.
//
//	play 1 "deploy" hosts etcd1,etcd2 serial 1,1
//	  p1.t1.etcd1  file  "data dir"
//	  p1.t2.etcd1  copy  "config"  after p1.t1.etcd1
func (c *Compiled) Text() string {
	var b strings.Builder
	width := 0
	for _, id := range c.Graph.IDs() {
		width = max(width, len(id))
	}
	modWidth := 0
	for _, p := range c.Plays {
		for _, t := range append(append([]*Task(nil), p.Tasks...), p.Handlers...) {
			modWidth = max(modWidth, len(t.Module))
		}
	}
	byPlay := map[*Play][]string{}
	for _, id := range c.Graph.IDs() {
		n, _ := c.Graph.Node(id)
		byPlay[n.Play] = append(byPlay[n.Play], id)
	}
	for _, p := range c.Plays {
		fmt.Fprintf(&b, "play %d %q hosts %s", p.Index, p.Name, orNone(strings.Join(p.Hosts, ",")))
		for _, part := range p.Parts {
			fmt.Fprintf(&b, " partition %q %s", part.Key, strings.Join(part.Hosts, ","))
			if part.Serial != nil {
				fmt.Fprintf(&b, " serial %s", joinInts(part.Serial))
			}
		}
		if p.Serial != nil {
			fmt.Fprintf(&b, " serial %s", joinInts(p.Serial))
		}
		if p.MaxFailPercentage >= 0 {
			fmt.Fprintf(&b, " max_fail_percentage %d", p.MaxFailPercentage)
		}
		if p.AnyErrorsFatal {
			b.WriteString(" any_errors_fatal")
		}
		b.WriteString("\n")
		for _, id := range byPlay[p] {
			n, _ := c.Graph.Node(id)
			fmt.Fprintf(&b, "  %-*s  %-*s  %q", width, id, modWidth, n.Task.Module, n.Task.Name)
			for _, f := range nodeFlags(n) {
				b.WriteString("  [" + f + "]")
			}
			if deps := c.Graph.Deps(id); len(deps) > 0 {
				b.WriteString("  after " + strings.Join(deps, ","))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func nodeFlags(n *Node) []string {
	var out []string
	if n.Handler {
		out = append(out, "handler")
	}
	if n.Hosts != nil {
		out = append(out, "once for "+strings.Join(n.Hosts, ","))
	}
	if len(n.Task.Notify) > 0 {
		out = append(out, "notify "+strings.Join(n.Task.Notify, ","))
	}
	if n.Task.WhenAtRuntime {
		out = append(out, "when at run time: "+n.Task.When)
	}
	if n.Skip {
		out = append(out, "skip: "+n.SkipReason)
	}
	return out
}

// Dot renders the graph in Graphviz's dot language, one cluster per play;
// handlers are dashed, skipped nodes grey.
func (c *Compiled) Dot() string {
	var b strings.Builder
	b.WriteString("digraph etcdplay {\n  rankdir=LR;\n  node [shape=box, fontsize=10];\n")
	byPlay := map[*Play][]string{}
	for _, id := range c.Graph.IDs() {
		n, _ := c.Graph.Node(id)
		byPlay[n.Play] = append(byPlay[n.Play], id)
	}
	for _, p := range c.Plays {
		fmt.Fprintf(&b, "  subgraph cluster_p%d {\n    label=%s;\n", p.Index, strconv.Quote(fmt.Sprintf("play %d: %s", p.Index, p.Name)))
		for _, id := range byPlay[p] {
			n, _ := c.Graph.Node(id)
			host := n.Host
			if n.Hosts != nil {
				host = "once: " + strings.Join(n.Hosts, ",")
			}
			label := fmt.Sprintf("%s\n%s: %s\n%s", id, n.Task.Module, n.Task.Name, host)
			attrs := []string{"label=" + strconv.Quote(label)}
			if n.Handler {
				attrs = append(attrs, "style=dashed")
			}
			if n.Skip {
				attrs = append(attrs, "color=grey", "fontcolor=grey")
			}
			fmt.Fprintf(&b, "    %s [%s];\n", strconv.Quote(id), strings.Join(attrs, ", "))
		}
		b.WriteString("  }\n")
	}
	for _, id := range c.Graph.IDs() {
		for _, d := range c.Graph.Deps(id) {
			fmt.Fprintf(&b, "  %s -> %s;\n", strconv.Quote(d), strconv.Quote(id))
		}
	}
	b.WriteString("}\n")
	return b.String()
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
