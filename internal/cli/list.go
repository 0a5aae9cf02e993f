package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/etcdplay/etcdplay/internal/playbook"
)

// listPlays prints, as ansible-playbook's --list-hosts and --list-tasks
// do, each play's hosts (after --limit) and the tasks a run would start
// (after --tags and --skip-tags; a task whose `when` is false at compile
// time on every host is marked so). Nothing is contacted.
func listPlays(w io.Writer, c *playbook.Compiled, hosts, tasks bool) {
	fmt.Fprintf(w, "playbook: %s\n", c.File)
	// A task is listed when some node of it is not filtered out by tags.
	type state struct{ any, allWhenFalse bool }
	seen := map[*playbook.Task]*state{}
	for _, id := range c.Graph.IDs() {
		n, _ := c.Graph.Node(id)
		if n.Handler {
			continue
		}
		st := seen[n.Task]
		if st == nil {
			st = &state{allWhenFalse: true}
			seen[n.Task] = st
		}
		if n.Skip && strings.HasPrefix(n.SkipReason, "tags:") {
			continue
		}
		st.any = true
		if !n.Skip {
			st.allWhenFalse = false
		}
	}
	for _, p := range c.Plays {
		fmt.Fprintf(w, "\n  play #%d: %s\n", p.Index, p.Name)
		if hosts {
			fmt.Fprintf(w, "    hosts (%d):\n", len(p.Hosts))
			for _, h := range p.Hosts {
				fmt.Fprintf(w, "      %s\n", h)
			}
		}
		if tasks {
			fmt.Fprintf(w, "    tasks:\n")
			for _, t := range p.Tasks {
				st := seen[t]
				if st == nil || !st.any {
					continue
				}
				line := fmt.Sprintf("      %s", taskLabel(t))
				if len(t.Tags) > 0 {
					line += "\tTAGS: [" + strings.Join(t.Tags, ", ") + "]"
				}
				if st.allWhenFalse {
					line += "\t(skipped: when is false on every host)"
				}
				fmt.Fprintln(w, line)
			}
		}
	}
}

func taskLabel(t *playbook.Task) string {
	if t.Name != "" {
		return t.Name
	}
	return t.Module
}
