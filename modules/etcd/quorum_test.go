package etcd

import (
	"errors"
	"testing"
)

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		if got := Quorum(n); got != want {
			t.Errorf("Quorum(%d) = %d, want %d", n, got, want)
		}
	}
}

func gm(spec string) []GuardMember {
	// "etcd1 etcd2! etcd3~": ! unhealthy, ~ learner
	var out []GuardMember
	name := ""
	flush := func() {
		if name == "" {
			return
		}
		m := GuardMember{Name: name, Healthy: true}
		for len(m.Name) > 0 {
			switch m.Name[len(m.Name)-1] {
			case '!':
				m.Healthy = false
			case '~':
				m.Learner = true
			default:
				out = append(out, m)
				name = ""
				return
			}
			m.Name = m.Name[:len(m.Name)-1]
		}
	}
	for _, r := range spec + " " {
		if r == ' ' {
			flush()
			continue
		}
		name += string(r)
	}
	return out
}

func TestCheckQuorum(t *testing.T) {
	add := func(n string) GuardStep { return GuardStep{Kind: StepAddLearner, Member: n} }
	pro := func(n string) GuardStep { return GuardStep{Kind: StepPromote, Member: n} }
	rm := func(n string) GuardStep { return GuardStep{Kind: StepRemove, Member: n} }
	upd := func(n string) GuardStep { return GuardStep{Kind: StepUpdatePeerURLs, Member: n} }
	tests := []struct {
		name    string
		members string
		steps   []GuardStep
		wantErr string // "" for allowed
	}{
		{"scale out 1 to 3", "etcd1", []GuardStep{add("etcd2"), pro("etcd2"), add("etcd3"), pro("etcd3")}, ""},
		{"scale out 3 to 5", "etcd1 etcd2 etcd3", []GuardStep{add("etcd4"), pro("etcd4"), add("etcd5"), pro("etcd5")}, ""},
		{"two learners at once", "etcd1", []GuardStep{add("etcd2"), add("etcd3")},
			"adding learner etcd3: etcd2 is still a learner; etcd allows one learner at a time, promote or remove it first"},
		{"scale in 5 to 3", "etcd1 etcd2 etcd3 etcd4 etcd5", []GuardStep{rm("etcd4"), rm("etcd5")}, ""},
		{"scale in while a kept member is down", "etcd1! etcd2 etcd3", []GuardStep{rm("etcd2"), rm("etcd3")},
			"removing etcd2 while etcd1 is unhealthy leaves 1 healthy of 2 voting members, below the quorum of 2"},
		{"remove a healthy member while another is down", "etcd1 etcd2 etcd3!", []GuardStep{rm("etcd2")},
			"removing etcd2 while etcd3 is unhealthy leaves 1 healthy of 2 voting members, below the quorum of 2"},
		{"remove the dead member first", "etcd1 etcd2 etcd3!", []GuardStep{rm("etcd3"), rm("etcd2")}, ""},
		{"replace a dead member", "etcd1 etcd2 etcd3!", []GuardStep{rm("etcd3"), add("etcd3"), pro("etcd3")}, ""},
		{"replace while another is down", "etcd1 etcd2! etcd3!", []GuardStep{rm("etcd3"), add("etcd3"), pro("etcd3")},
			"refusing removing etcd3: the cluster has no quorum while etcd2, etcd3 are unhealthy (1 of 3 voting members healthy, quorum is 2)"},
		{"remove the last member", "etcd1", []GuardStep{rm("etcd1")},
			"removing etcd1 would remove the last voting member: an etcd cluster needs at least one"},
		{"remove a learner of a one-member cluster", "etcd1 etcd2~", []GuardStep{rm("etcd2")}, ""},
		{"resume: promote a started learner", "etcd1 etcd2~", []GuardStep{pro("etcd2")}, ""},
		{"learner does not count for quorum", "etcd1 etcd2! etcd3~", []GuardStep{rm("etcd3")},
			"refusing removing etcd3: the cluster has no quorum while etcd2 is unhealthy (1 of 2 voting members healthy, quorum is 2)"},
		{"promote with one of three down", "etcd1 etcd2 etcd3! etcd4~", []GuardStep{pro("etcd4")}, ""},
		{"promote with two of four down", "etcd1 etcd2 etcd3! etcd4! etcd5~", []GuardStep{pro("etcd5")},
			"refusing promoting etcd5: the cluster has no quorum while etcd3, etcd4 are unhealthy (2 of 4 voting members healthy, quorum is 3)"},
		{"update peer URLs of a healthy 3", "etcd1 etcd2 etcd3", []GuardStep{upd("etcd2")}, ""},
		{"update peer URLs of a 2-member cluster", "etcd1 etcd2", []GuardStep{upd("etcd2")},
			"moving the peer URLs of etcd2 while etcd2 is unhealthy leaves 1 healthy of 2 voting members, below the quorum of 2"},
		{"add an existing member", "etcd1 etcd2", []GuardStep{add("etcd2")}, "adding learner etcd2: it is already a member"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckQuorum(gm(tt.members), tt.steps)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var qe *QuorumError
			if !errors.As(err, &qe) {
				t.Fatalf("got %v, want a *QuorumError %q", err, tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("got  %q\nwant %q", err.Error(), tt.wantErr)
			}
		})
	}
}

func TestCheckQuorumDoesNotChangeInput(t *testing.T) {
	in := gm("etcd1 etcd2 etcd3")
	_ = CheckQuorum(in, []GuardStep{{Kind: StepRemove, Member: "etcd1"}, {Kind: StepAddLearner, Member: "etcd4"}})
	if len(in) != 3 || in[0].Name != "etcd1" || !in[0].Healthy {
		t.Fatalf("input changed: %+v", in)
	}
}
