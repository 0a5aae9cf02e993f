package etcd_member

import (
	"fmt"
	"slices"
	"strings"

	"github.com/etcdplay/etcdplay/modules/etcd"
)

// liveMember is one member as etcd lists it, with its health.
type liveMember struct {
	ID         uint64
	Name       string // "" until the member's etcd has started once
	PeerURLs   []string
	ClientURLs []string
	Learner    bool
	Healthy    bool
	Up         bool   // answered Status (healthy or not)
	Err        string // why not healthy
	Applied    uint64 // raft applied index, when it answered Status
	Index      uint64 // raft index
	Leader     bool
	// Host and InvName are the inventory host and member name this member
	// runs as: matched by name and peer URL (or, for a member that has not
	// started yet, by peer URL alone).
	Host, InvName string
}

// label names the member for people: its name, or for one that has not
// started yet the inventory name it was added for, or its id.
func (m liveMember) label() string {
	if m.Name != "" {
		return m.Name
	}
	if m.InvName != "" {
		return m.InvName
	}
	return hexID(m.ID)
}

func hexID(id uint64) string { return fmt.Sprintf("%016x", id) }

// desired is what the task asks for.
type desired struct {
	// Members should be in the cluster, in inventory order.
	Members []etcd.Member
	// Remove are member names (or inventory hosts) to take out.
	Remove []string
	// Replace are members to replace (remove, then join afresh) when they
	// are not a healthy voting member at their inventory peer URL.
	Replace []string
	// UpdatePeerURLs moves a member whose inventory peer URL differs from
	// the cluster's, instead of refusing.
	UpdatePeerURLs bool
}

type stepKind int

const (
	stepRemove stepKind = iota
	stepUpdate
	stepJoin
)

// step is one membership change, applied and confirmed before the next.
type step struct {
	Kind stepKind
	// ID and Name identify the member in the cluster (remove, update, a
	// resumed join).
	ID   uint64
	Name string
	// Member is the inventory member (join, update).
	Member *etcd.Member
	// Added: the joiner is already in the member list (a previous run
	// added it); Started: its etcd has started (it has a name); Learner:
	// it still needs a promotion.
	Added, Started, Learner bool
	Reason                  string
}

// PlanError is a request the planner refuses: the cluster is not in a
// state the task can safely act on.
type PlanError struct{ Msg string }

func (e *PlanError) Error() string { return e.Msg }

// planSteps decides the membership changes, in the order they will run:
// removals of members that are being replaced or are unhealthy first (they
// only make the cluster safer), then peer URL moves, then joins one at a
// time, then removals of healthy members (after the joins, so the cluster
// is at its largest while it shrinks).
func planSteps(d desired, live []liveMember) ([]step, []string, error) {
	var notes []string
	byName := func(name string) *liveMember {
		for i := range live {
			if live[i].Name == name {
				return &live[i]
			}
		}
		return nil
	}
	byPeer := func(u string) *liveMember {
		for i := range live {
			if slices.Contains(live[i].PeerURLs, u) {
				return &live[i]
			}
		}
		return nil
	}
	wanted := map[string]bool{}
	var first, updates, joins, last []step
	removed := map[uint64]bool{}

	for _, r := range d.Remove {
		m := byName(r)
		if m == nil {
			for i := range live {
				if hexID(live[i].ID) == r || (live[i].Name == "" && (live[i].Host == r || live[i].InvName == r)) {
					m = &live[i]
				}
			}
		}
		if m == nil {
			continue // already gone: nothing to do
		}
		for _, want := range d.Members {
			if want.Name == m.Name {
				return nil, nil, &PlanError{fmt.Sprintf("%s is both to be removed and a wanted member", r)}
			}
		}
		s := step{Kind: stepRemove, ID: m.ID, Name: m.label(), Reason: "scale in"}
		removed[m.ID] = true
		if m.Healthy && !m.Learner {
			last = append(last, s)
		} else {
			first = append(first, s)
		}
	}

	for i := range d.Members {
		m := &d.Members[i]
		wanted[m.Name] = true
		replace := slices.Contains(d.Replace, m.Name) || slices.Contains(d.Replace, m.Host)
		named, peer := byName(m.Name), byPeer(m.PeerURL)
		if peer != nil && peer.Name != "" && peer.Name != m.Name {
			return nil, nil, &PlanError{fmt.Sprintf(
				"%s's peer URL %s is already the peer URL of member %s (%s): one address cannot carry two members; "+
					"give %s another address in the inventory, or remove %s first (scale-in.yml -e remove=%s)",
				m.Name, m.PeerURL, peer.Name, hexID(peer.ID), m.Name, peer.Name, peer.Name)}
		}
		switch {
		case named != nil && slices.Contains(named.PeerURLs, m.PeerURL):
			switch {
			case named.Learner:
				joins = append(joins, step{Kind: stepJoin, ID: named.ID, Name: m.Name, Member: m,
					Added: true, Started: true, Learner: true, Reason: "learner added by an earlier run"})
			case replace && !named.Healthy:
				first = append(first, step{Kind: stepRemove, ID: named.ID, Name: named.Name,
					Reason: "replace: " + orUnknown(named.Err)})
				joins = append(joins, step{Kind: stepJoin, Name: m.Name, Member: m, Learner: true, Reason: "replacement"})
			}
		case named != nil:
			switch {
			case replace:
				first = append(first, step{Kind: stepRemove, ID: named.ID, Name: named.Name,
					Reason: fmt.Sprintf("replace: moves from %s to %s", strings.Join(named.PeerURLs, ","), m.PeerURL)})
				joins = append(joins, step{Kind: stepJoin, Name: m.Name, Member: m, Learner: true, Reason: "replacement at a new address"})
			case d.UpdatePeerURLs:
				updates = append(updates, step{Kind: stepUpdate, ID: named.ID, Name: named.Name, Member: m,
					Reason: fmt.Sprintf("peer URLs %s -> %s", strings.Join(named.PeerURLs, ","), m.PeerURL)})
			default:
				return nil, nil, &PlanError{fmt.Sprintf(
					"member %s (%s) has peer URL %s but the inventory gives %s: to move it to a new host run replace-node.yml -e node=%s; "+
						"to keep it and only change its address use update_peer_urls",
					named.Name, hexID(named.ID), strings.Join(named.PeerURLs, ","), m.PeerURL, m.Name)}
			}
		case peer != nil:
			// Added by an earlier run that stopped before the joiner's etcd
			// started (an unstarted member has no name yet).
			joins = append(joins, step{Kind: stepJoin, ID: peer.ID, Name: m.Name, Member: m,
				Added: true, Learner: peer.Learner, Reason: "added by an earlier run, not started yet"})
		default:
			joins = append(joins, step{Kind: stepJoin, Name: m.Name, Member: m, Learner: true})
		}
	}

	for _, l := range live {
		if removed[l.ID] || wanted[l.Name] || (l.Name == "" && l.Host != "") {
			continue
		}
		if l.Name == "" {
			return nil, nil, &PlanError{fmt.Sprintf(
				"member %s (peer URL %s) was added but never started, and no inventory host has that peer URL: "+
					"remove it (scale-in.yml -e remove=%s) before changing membership", hexID(l.ID), strings.Join(l.PeerURLs, ","), hexID(l.ID))}
		}
		notes = append(notes, fmt.Sprintf("member %s (%s) is not in the inventory: left alone (scale-in.yml -e remove=%s removes it)",
			l.Name, hexID(l.ID), l.Name))
	}
	// A resumed learner must be finished before another is added: etcd
	// allows one learner at a time.
	slices.SortStableFunc(joins, func(a, b step) int {
		switch {
		case a.Added == b.Added:
			return 0
		case a.Added:
			return -1
		}
		return 1
	})
	steps := append(append(append(first, updates...), joins...), last...)
	return steps, notes, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unhealthy"
	}
	return s
}

// guardView turns the live list into what the quorum guard needs. When no
// member is healthy (no leader anywhere), the members that still answer
// count as up, so that the refusal names the members that are down rather
// than every member.
func guardView(live []liveMember) []etcd.GuardMember {
	anyHealthy := false
	for _, m := range live {
		anyHealthy = anyHealthy || m.Healthy
	}
	out := make([]etcd.GuardMember, len(live))
	for i, m := range live {
		out[i] = etcd.GuardMember{Name: m.label(), Learner: m.Learner, Healthy: m.Healthy || (!anyHealthy && m.Up)}
	}
	return out
}

// guardSteps are the membership changes steps make, for the quorum guard.
func guardSteps(steps []step) []etcd.GuardStep {
	var out []etcd.GuardStep
	for _, s := range steps {
		switch s.Kind {
		case stepRemove:
			out = append(out, etcd.GuardStep{Kind: etcd.StepRemove, Member: s.Name})
		case stepUpdate:
			out = append(out, etcd.GuardStep{Kind: etcd.StepUpdatePeerURLs, Member: s.Name})
		case stepJoin:
			if !s.Added {
				out = append(out, etcd.GuardStep{Kind: etcd.StepAddLearner, Member: s.Name})
			}
			if s.Learner {
				out = append(out, etcd.GuardStep{Kind: etcd.StepPromote, Member: s.Name})
			}
		}
	}
	return out
}
