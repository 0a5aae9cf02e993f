package etcd_member

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/modules/etcd"
)

// model builds an inventory of etcd1..etcdN at 127.0.1.N, with overrides
// of a host's address ("etcd3=127.0.1.9").
func model(t *testing.T, n int, addrs ...string) *etcd.Cluster {
	t.Helper()
	hosts := make([]any, n)
	hv := map[string]any{}
	for i := range n {
		h := fmt.Sprintf("etcd%d", i+1)
		hosts[i] = h
		hv[h] = map[string]any{"ansible_host": fmt.Sprintf("127.0.1.%d", i+1)}
	}
	for _, a := range addrs {
		h, addr, _ := strings.Cut(a, "=")
		hv[h] = map[string]any{"ansible_host": addr}
	}
	c, err := etcd.FromVars(map[string]any{"groups": map[string]any{"etcd": hosts}, "hostvars": hv})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// lm is a live member: "etcd2@127.0.1.2" healthy voting; suffix ! for
// down, ? for up without a leader, ~ for learner; an empty name ("@127.0.1.4~!") for a member
// added but not started.
func lm(spec string, id uint64) liveMember {
	l := liveMember{ID: id, Healthy: true, Up: true}
	for strings.HasSuffix(spec, "!") || strings.HasSuffix(spec, "~") || strings.HasSuffix(spec, "?") {
		switch spec[len(spec)-1] {
		case '?': // answers, but has no leader
			l.Healthy = false
			l.Err = "has no leader (no quorum)"
		case '!':
			l.Healthy, l.Up = false, false
			l.Err = "connection refused"
		case '~':
			l.Learner = true
		}
		spec = spec[:len(spec)-1]
	}
	name, addr, _ := strings.Cut(spec, "@")
	l.Name = name
	l.PeerURLs = []string{"https://" + addr + ":2380"}
	if name != "" {
		l.ClientURLs = []string{"https://" + addr + ":2379"}
	}
	return l
}

func live(specs ...string) []liveMember {
	out := make([]liveMember, len(specs))
	for i, s := range specs {
		out[i] = lm(s, uint64(0x100+i))
	}
	return out
}

// match sets Host/InvName like snapshot does.
func match(c *etcd.Cluster, ls []liveMember) []liveMember {
	for i := range ls {
		for _, m := range c.Members {
			if ls[i].PeerURLs[0] == m.PeerURL && (ls[i].Name == "" || ls[i].Name == m.Name) {
				ls[i].Host, ls[i].InvName = m.Host, m.Name
			}
		}
	}
	return ls
}

func render(steps []step) string {
	var out []string
	for _, s := range steps {
		switch s.Kind {
		case stepRemove:
			out = append(out, "-"+s.Name)
		case stepUpdate:
			out = append(out, "~"+s.Name)
		case stepJoin:
			flags := ""
			if s.Added {
				flags += "a"
			}
			if s.Started {
				flags += "s"
			}
			if s.Learner {
				flags += "p"
			}
			out = append(out, "+"+s.Name+"/"+flags)
		}
	}
	return strings.Join(out, " ")
}

func TestPlanSteps(t *testing.T) {
	tests := []struct {
		name    string
		inv     *etcd.Cluster
		args    map[string]any
		live    []string
		want    string // steps: -remove ~update +join/flags (a added, s started, p promote)
		wantErr string
		guard   string // quorum guard refusal, "" if allowed
	}{
		{name: "converged", inv: model(t, 3), live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3"}, want: ""},
		{name: "scale out 1 to 3", inv: model(t, 3), live: []string{"etcd1@127.0.1.1"}, want: "+etcd2/p +etcd3/p"},
		{name: "scale out 3 to 5", inv: model(t, 5), live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3"}, want: "+etcd4/p +etcd5/p"},
		{name: "resume: learner started", inv: model(t, 3), live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3~"}, want: "+etcd3/asp"},
		{name: "resume: learner added, not started, goes first", inv: model(t, 4), live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "@127.0.1.4~!"}, want: "+etcd4/ap +etcd3/p"},
		{name: "scale in 5 to 3", inv: model(t, 5), args: map[string]any{"remove": "etcd4,etcd5"},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3", "etcd4@127.0.1.4", "etcd5@127.0.1.5"}, want: "-etcd4 -etcd5"},
		{name: "scale in again", inv: model(t, 5), args: map[string]any{"remove": []any{"etcd4", "etcd5"}},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3"}, want: ""},
		{name: "scale in removes the dead first", inv: model(t, 3), args: map[string]any{"remove": "etcd2,etcd3"},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3!"}, want: "-etcd3 -etcd2"},
		{name: "scale in 3 to 1 with the kept member down", inv: model(t, 3), args: map[string]any{"remove": "etcd2,etcd3"},
			live: []string{"etcd1@127.0.1.1!", "etcd2@127.0.1.2", "etcd3@127.0.1.3"}, want: "-etcd2 -etcd3",
			guard: "removing etcd2 while etcd1 is unhealthy leaves 1 healthy of 2 voting members, below the quorum of 2"},
		{name: "replace a dead member at a new address", inv: model(t, 3, "etcd3=127.0.1.9"), args: map[string]any{"replace": "etcd3"},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3!"}, want: "-etcd3 +etcd3/p"},
		{name: "replace a wiped member in place", inv: model(t, 3), args: map[string]any{"replace": "etcd3"},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3!"}, want: "-etcd3 +etcd3/p"},
		{name: "replace again changes nothing", inv: model(t, 3, "etcd3=127.0.1.9"), args: map[string]any{"replace": "etcd3"},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.9"}, want: ""},
		{name: "replace after the removal ran", inv: model(t, 3), args: map[string]any{"replace": "etcd3"},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2"}, want: "+etcd3/p"},
		{name: "replace while another member is down", inv: model(t, 3), args: map[string]any{"replace": "etcd3"},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2!", "etcd3@127.0.1.3!"}, want: "-etcd3 +etcd3/p",
			guard: "refusing removing etcd3: the cluster has no quorum while etcd2, etcd3 are unhealthy (1 of 3 voting members healthy, quorum is 2)"},
		{name: "replace while another member is down: the survivor has no leader", inv: model(t, 3), args: map[string]any{"replace": "etcd3"},
			live: []string{"etcd1@127.0.1.1?", "etcd2@127.0.1.2!", "etcd3@127.0.1.3!"}, want: "-etcd3 +etcd3/p",
			guard: "refusing removing etcd3: the cluster has no quorum while etcd2, etcd3 are unhealthy (1 of 3 voting members healthy, quorum is 2)"},
		{name: "moved member without replace is refused", inv: model(t, 3, "etcd3=127.0.1.9"),
			live:    []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3"},
			wantErr: "member etcd3 (0000000000000102) has peer URL https://127.0.1.3:2380 but the inventory gives https://127.0.1.9:2380"},
		{name: "moved member with update_peer_urls", inv: model(t, 3, "etcd3=127.0.1.9"), args: map[string]any{"update_peer_urls": true},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3"}, want: "~etcd3"},
		{name: "joiner collides with a member's address", inv: model(t, 3),
			live:    []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "old@127.0.1.3"},
			wantErr: "etcd3's peer URL https://127.0.1.3:2380 is already the peer URL of member old (0000000000000102)"},
		{name: "remove a wanted member", inv: model(t, 3), args: map[string]any{"remove": "etcd2", "members": "etcd1,etcd3"},
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3"}, want: "-etcd2"},
		{name: "members and remove overlap", inv: model(t, 3), args: map[string]any{"remove": "etcd2", "members": "etcd2"},
			live: []string{"etcd1@127.0.1.1"}, wantErr: "etcd2 is both in members and in remove"},
		{name: "remove every member", inv: model(t, 2), args: map[string]any{"remove": "etcd1,etcd2"},
			live: []string{"etcd1@127.0.1.1"}, wantErr: "removing every member of the etcd group would leave no cluster"},
		{name: "replace a host outside the inventory", inv: model(t, 3), args: map[string]any{"replace": "etcd7"},
			live: []string{"etcd1@127.0.1.1"}, wantErr: "replace etcd7: the replacement must be an inventory host"},
		{name: "foreign unstarted member blocks", inv: model(t, 3),
			live:    []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3", "@127.0.1.8~!"},
			wantErr: "member 0000000000000103 (peer URL https://127.0.1.8:2380) was added but never started"},
		{name: "member outside the inventory is left alone", inv: model(t, 2),
			live: []string{"etcd1@127.0.1.1", "etcd2@127.0.1.2", "old@127.0.1.7"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := desiredFrom(tt.inv, tt.args)
			var steps []step
			var ls []liveMember
			if err == nil {
				ls = match(tt.inv, live(tt.live...))
				steps, _, err = planSteps(d, ls)
			}
			if tt.wantErr != "" {
				var pe *PlanError
				if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want a *PlanError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := render(steps); got != tt.want {
				t.Errorf("steps %q, want %q", got, tt.want)
			}
			gerr := etcd.CheckQuorum(guardView(ls), guardSteps(steps))
			switch {
			case tt.guard == "" && gerr != nil:
				t.Errorf("guard refused: %v", gerr)
			case tt.guard != "" && (gerr == nil || gerr.Error() != tt.guard):
				t.Errorf("guard: got %v, want %q", gerr, tt.guard)
			}
		})
	}
}

func TestVotersAfter(t *testing.T) {
	ls := live("etcd1@127.0.1.1", "etcd2@127.0.1.2", "etcd3@127.0.1.3~")
	steps := []step{
		{Kind: stepJoin, Name: "etcd3", Added: true, Started: true, Learner: true},
		{Kind: stepJoin, Name: "etcd4", Learner: true},
		{Kind: stepRemove, ID: ls[0].ID, Name: "etcd1"},
	}
	if got := votersAfter(ls, steps); got != 3 {
		t.Errorf("votersAfter = %d, want 3", got)
	}
}
