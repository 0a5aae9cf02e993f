package etcd

import (
	"fmt"
	"sort"
	"strings"
)

// This file is the quorum guard: pure arithmetic over the live member list
// and per-member health, run before every membership change so that a step
// that would leave the cluster without a quorum is refused before anything
// is touched.

// Quorum is how many voting members must agree in a cluster of n voters.
func Quorum(n int) int { return n/2 + 1 }

// GuardMember is a member as the quorum guard sees it.
type GuardMember struct {
	Name    string // member name, or its hex id when it has none yet
	Learner bool   // learners do not vote and do not count for quorum
	Healthy bool
}

// StepKind is a kind of membership change.
type StepKind int

const (
	// StepAddLearner adds a non-voting member (it starts unhealthy: its
	// etcd has not joined yet).
	StepAddLearner StepKind = iota
	// StepPromote makes a caught-up learner a voting member.
	StepPromote
	// StepRemove removes a member (voting or learner).
	StepRemove
	// StepUpdatePeerURLs moves a member's peer URLs: until it restarts at
	// the new address its peers cannot reach it, so it counts as down.
	StepUpdatePeerURLs
)

// GuardStep is one planned change to the member named Member.
type GuardStep struct {
	Kind   StepKind
	Member string
}

func (s GuardStep) verb() string {
	switch s.Kind {
	case StepAddLearner:
		return "adding learner " + s.Member
	case StepPromote:
		return "promoting " + s.Member
	case StepRemove:
		return "removing " + s.Member
	case StepUpdatePeerURLs:
		return "moving the peer URLs of " + s.Member
	}
	return "changing " + s.Member
}

// QuorumError is a refused step, in operator terms.
type QuorumError struct {
	Step    GuardStep
	Voting  int      // voting members after the step
	Healthy int      // of them healthy
	Down    []string // unhealthy voting members that explain it
	Msg     string
}

func (e *QuorumError) Error() string { return e.Msg }

// CheckQuorum simulates steps in order, starting from members, and returns
// a *QuorumError for the first step that would run without a quorum or
// leave the cluster without one. A promoted learner is assumed healthy
// (promotion only succeeds once it has caught up); a learner that is
// added is assumed to start and become healthy before its promotion.
func CheckQuorum(members []GuardMember, steps []GuardStep) error {
	cur := append([]GuardMember(nil), members...)
	find := func(name string) int {
		for i, m := range cur {
			if m.Name == name {
				return i
			}
		}
		return -1
	}
	for _, s := range steps {
		// Every change is itself a raft proposal: it needs a quorum now.
		if err := needQuorum(cur, s, ""); err != nil {
			return err
		}
		i := find(s.Member)
		switch s.Kind {
		case StepAddLearner:
			if i >= 0 {
				return &QuorumError{Step: s, Msg: fmt.Sprintf("%s: it is already a member", s.verb())}
			}
			for _, m := range cur {
				if m.Learner {
					// etcd allows one learner at a time (max-learners 1).
					return &QuorumError{Step: s, Msg: fmt.Sprintf("%s: %s is still a learner; etcd allows one learner at a time, promote or remove it first", s.verb(), m.Name)}
				}
			}
			cur = append(cur, GuardMember{Name: s.Member, Learner: true, Healthy: true})
		case StepPromote:
			if i < 0 || !cur[i].Learner {
				return &QuorumError{Step: s, Msg: fmt.Sprintf("%s: it is not a learner of the cluster", s.verb())}
			}
			cur[i].Learner, cur[i].Healthy = false, true
			if err := needQuorum(cur, s, "leaves"); err != nil {
				return err
			}
		case StepRemove:
			if i < 0 {
				return &QuorumError{Step: s, Msg: fmt.Sprintf("%s: it is not a member", s.verb())}
			}
			if !cur[i].Learner && voters(cur) == 1 {
				return &QuorumError{Step: s, Voting: 0, Msg: fmt.Sprintf("%s would remove the last voting member: an etcd cluster needs at least one", s.verb())}
			}
			cur = append(cur[:i:i], cur[i+1:]...)
			if err := needQuorum(cur, s, "leaves"); err != nil {
				return err
			}
		case StepUpdatePeerURLs:
			if i < 0 {
				return &QuorumError{Step: s, Msg: fmt.Sprintf("%s: it is not a member", s.verb())}
			}
			// Down until it restarts with the new URLs; then up again.
			was := cur[i].Healthy
			cur[i].Healthy = false
			if err := needQuorum(cur, s, "leaves"); err != nil {
				return err
			}
			cur[i].Healthy = was
		}
	}
	return nil
}

func voters(ms []GuardMember) int {
	n := 0
	for _, m := range ms {
		if !m.Learner {
			n++
		}
	}
	return n
}

// needQuorum checks that the voting members of ms have a healthy quorum.
// how is "" for "before the step" and "leaves" for "after it".
func needQuorum(ms []GuardMember, s GuardStep, how string) error {
	n, healthy := 0, 0
	var down []string
	for _, m := range ms {
		if m.Learner {
			continue
		}
		n++
		if m.Healthy {
			healthy++
		} else {
			down = append(down, m.Name)
		}
	}
	if healthy >= Quorum(n) {
		return nil
	}
	sort.Strings(down)
	e := &QuorumError{Step: s, Voting: n, Healthy: healthy, Down: down}
	while := ""
	if len(down) > 0 {
		verb := " is"
		if len(down) > 1 {
			verb = " are"
		}
		while = " while " + strings.Join(down, ", ") + verb + " unhealthy"
	}
	if how == "" {
		e.Msg = fmt.Sprintf("refusing %s: the cluster has no quorum%s (%d of %d voting members healthy, quorum is %d)",
			s.verb(), while, healthy, n, Quorum(n))
	} else {
		e.Msg = fmt.Sprintf("%s%s %s %d healthy of %d voting members, below the quorum of %d",
			s.verb(), while, how, healthy, n, Quorum(n))
	}
	return e
}
