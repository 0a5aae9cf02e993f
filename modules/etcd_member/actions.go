package etcd_member

import (
	"context"
	"fmt"
	"strings"

	"github.com/etcdplay/etcdplay/modules"
)

// planActions looks at the hosts that join or retire and lists every
// action, in the order Apply takes them.
func planActions(ctx context.Context, env *modules.Env, p *payload, ch *modules.Change) error {
	c, hosts := p.Cluster, env.Remotes()
	for _, s := range p.Steps {
		switch s.Kind {
		case stepRemove:
			ch.Add("-", fmt.Sprintf("member %s (%s)", s.Name, hexID(s.ID)), s.Reason)
		case stepUpdate:
			ch.Add("~", fmt.Sprintf("member %s (%s)", s.Name, hexID(s.ID)), s.Reason)
		case stepJoin:
			if err := planJoin(ctx, hosts, p, s, ch); err != nil {
				return err
			}
		}
	}
	// Hosts of removed members: stop, disable, move the data aside.
	for _, r := range p.Desired.Remove {
		sel, err := c.Select([]string{r})
		if err != nil {
			continue // not an inventory host: nothing to retire
		}
		m := sel[0]
		rem := hosts[m.Host]
		if rem == nil || !rem.Reachable() {
			env.Logf("%s is not reachable: its etcd is not stopped nor its data moved aside", m.Host)
			continue
		}
		st, err := probeHost(ctx, rem, c)
		if err != nil {
			return fmt.Errorf("look at %s: %w", m.Host, err)
		}
		rt := retire{Host: m.Host, Name: m.Name, Stop: st.running() || st.Enabled == "enabled", MoveAside: st.NonEmpty}
		if !rt.Stop && len(rt.MoveAside) == 0 {
			continue
		}
		p.Retire = append(p.Retire, rt)
		if rt.Stop {
			ch.Add("!", "stop and disable etcd on "+m.Host, "removed from the cluster")
		}
		for _, dir := range rt.MoveAside {
			ch.Add("~", dir+" on "+m.Host, "move aside to "+st.aside(dir, p.Suffix))
		}
	}
	return nil
}

// planJoin lists a joiner's actions; a joiner whose etcd has not started
// yet must be reachable, and what its host holds decides whether a stray
// etcd is stopped and old data moved aside first.
func planJoin(ctx context.Context, hosts map[string]modules.Host, p *payload, s step, ch *modules.Change) error {
	m := s.Member
	if !s.Started {
		r := hosts[m.Host]
		if r == nil || !r.Reachable() {
			return fmt.Errorf("cannot bring up member %s: its host %s (%s) is not reachable over SSH; "+
				"boot it, or point %s at a new host in the inventory", m.Name, m.Host, m.SSHHost, m.Host)
		}
		st, err := probeHost(ctx, r, p.Cluster)
		if err != nil {
			return fmt.Errorf("look at %s: %w", m.Host, err)
		}
		jh := joinHost{Stop: st.running(), MoveAside: st.NonEmpty}
		p.Joiners[m.Host] = jh
		if jh.Stop {
			ch.Add("!", "stop etcd on "+m.Host, "not a member yet: its etcd must start afresh as a learner")
		}
		for _, dir := range jh.MoveAside {
			ch.Add("~", dir+" on "+m.Host, "move aside to "+st.aside(dir, p.Suffix)+" (a joiner starts with an empty data dir)")
		}
	}
	if !s.Added {
		ch.Add("+", fmt.Sprintf("learner %s %s", m.Name, m.PeerURL), s.Reason)
	}
	if !s.Started {
		ch.Add("+", p.Cluster.Paths.ConfigFile+" on "+m.Host, "initial-cluster-state existing, initial-cluster: the members then plus "+m.Name)
		ch.Add("!", "start etcd on "+m.Host, "")
	}
	if s.Learner {
		ch.Add("~", "promote "+m.Name, "when caught up with the leader")
	}
	return nil
}

// votersAfter is the number of voting members once steps are done.
func votersAfter(live []liveMember, steps []step) int {
	n := 0
	for _, l := range live {
		if !l.Learner {
			n++
		}
	}
	for _, s := range steps {
		switch {
		case s.Kind == stepJoin && s.Learner:
			n++
		case s.Kind == stepRemove:
			for _, l := range live {
				if l.ID == s.ID && !l.Learner {
					n--
				}
			}
		}
	}
	return n
}

// stepsKey identifies a plan's steps, to tell whether a fresh plan is
// still the same.
func stepsKey(steps []step) string {
	var b strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&b, "%d/%s/%x/%v/%v/%v;", s.Kind, s.Name, s.ID, s.Added, s.Started, s.Learner)
	}
	return b.String()
}
