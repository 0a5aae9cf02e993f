package roll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/oplock"
)

func health(members []etcdclient.MemberHealth, list ...*etcdserverpb.Member) *etcdclient.Health {
	return &etcdclient.Health{Members: members, List: list}
}

func withOutsiders(h *etcdclient.Health, o ...etcdclient.MemberHealth) *etcdclient.Health {
	h.Outsiders = o
	return h
}

func leads(m etcdclient.MemberHealth, leader uint64) etcdclient.MemberHealth {
	m.Leader = leader
	return m
}

func mh(name string, id uint64, healthy bool) etcdclient.MemberHealth {
	m := etcdclient.MemberHealth{Host: name, Name: name, ID: id, Healthy: healthy, Leader: 1}
	if !healthy {
		m.Error = "connection refused"
	}
	return m
}

func lm(name string, id uint64, learner bool) *etcdserverpb.Member {
	return &etcdserverpb.Member{Name: name, ID: id, IsLearner: learner}
}

// TestGuard: the live member list decides, not the inventory.
func TestGuard(t *testing.T) {
	three := []*etcdserverpb.Member{lm("e1", 1, false), lm("e2", 2, false), lm("e3", 3, false)}
	tests := []struct {
		name string
		h    *etcdclient.Health
		want string // "" = allowed
	}{
		{"healthy 3", health([]etcdclient.MemberHealth{mh("e1", 1, true), mh("e2", 2, true), mh("e3", 3, true)}, three...), ""},
		{"a member down", health([]etcdclient.MemberHealth{mh("e1", 1, true), mh("e2", 2, true), mh("e3", 3, false)}, three...), "e3: connection refused"},
		{"a voter outside the inventory", health([]etcdclient.MemberHealth{mh("e1", 1, true), mh("e2", 2, true)},
			append(three[:2:2], lm("stray", 9, false))...), "1 of 3 voting members would be up, a quorum needs 2; not healthy or outside the inventory: stray"},
		{"four voters, one outside", health([]etcdclient.MemberHealth{mh("e1", 1, true), mh("e2", 2, true), mh("e3", 3, true)},
			append(three, lm("stray", 9, false))...), "2 of 4 voting members would be up, a quorum needs 3; not healthy or outside the inventory: stray"},
		{"four voters, the one outside probed healthy", withOutsiders(health([]etcdclient.MemberHealth{mh("e1", 1, true), mh("e2", 2, true), mh("e3", 3, true)},
			append(three, lm("stray", 9, false))...), mh("stray", 9, true)), ""},
		{"five voters, one of two outside down", withOutsiders(health([]etcdclient.MemberHealth{mh("e1", 1, true), mh("e2", 2, true), mh("e3", 3, true)},
			append(three, lm("s1", 8, false), lm("s2", 9, false))...), mh("s1", 8, true), mh("s2", 9, false)), ""},
		{"five voters, both outside down", withOutsiders(health([]etcdclient.MemberHealth{mh("e1", 1, true), mh("e2", 2, true), mh("e3", 3, true)},
			append(three, lm("s1", 8, false), lm("s2", 9, false))...), mh("s1", 8, false), mh("s2", 9, false)),
			"2 of 5 voting members would be up, a quorum needs 3; not healthy or outside the inventory: s1 (connection refused), s2 (connection refused)"},
		{"the leader outside the inventory", withOutsiders(health([]etcdclient.MemberHealth{leads(mh("e1", 1, true), 9), leads(mh("e2", 2, true), 9), leads(mh("e3", 3, true), 9)},
			append(three, lm("stray", 9, false))...), leads(mh("stray", 9, true), 9)), ""},
		{"the leader outside the inventory, not probed", health([]etcdclient.MemberHealth{leads(mh("e1", 1, true), 9), leads(mh("e2", 2, true), 9), leads(mh("e3", 3, true), 9)},
			append(three, lm("stray", 9, false), lm("s2", 8, false))...), "2 of 5 voting members would be up, a quorum needs 3; not healthy or outside the inventory: stray, s2"},
		{"a learner does not vote", health([]etcdclient.MemberHealth{mh("e1", 1, true), mh("e2", 2, true), mh("e3", 3, true)},
			append(three, lm("l", 8, true))...), ""},
		{"one member", health([]etcdclient.MemberHealth{mh("e1", 1, true)}, lm("e1", 1, false)), ""},
		{"no leader", health([]etcdclient.MemberHealth{{Host: "e1", Name: "e1", ID: 1, Healthy: true}}, lm("e1", 1, false)), "no member reports a leader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Guard(tt.h, etcd.Member{Host: "e1", Name: "e1"})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrUnsafe)):
				t.Errorf("got %v, want ErrUnsafe saying %q", err, tt.want)
			}
		})
	}
}

func TestOrder(t *testing.T) {
	ms := []etcd.Member{{Host: "e1", Name: "e1"}, {Host: "e2", Name: "e2"}, {Host: "e3", Name: "e3"}}
	for leader, want := range map[string]string{"e1": "e2, e3, e1", "e3": "e1, e2, e3", "": "e1, e2, e3", "x": "e1, e2, e3"} {
		if got := names(Order(ms, leader)); got != want {
			t.Errorf("leader %q: %s, want %s", leader, got, want)
		}
	}
}

// TestRunHandsOverAndWaits rolls a real 3-member cluster: the leader goes
// last and is no longer the leader when its step runs; every step sees the
// others healthy; a failing step stops the roll with the progress named.
func TestRunHandsOverAndWaits(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	ctx := context.Background()
	leader := tc.Model.Members[tc.LeaderIndex()]
	opt := Options{Cluster: tc.Model, StateDir: tc.StateDir, Timeout: 30 * time.Second, Verb: "restart"}
	var mu sync.Mutex
	var order []string
	var leaderAtItsStep uint64
	prog, err := Run(ctx, opt, tc.Model.Members, func(ctx context.Context, m etcd.Member) error {
		mu.Lock()
		order = append(order, m.Name)
		mu.Unlock()
		for i, x := range tc.Model.Members {
			if x.Host != m.Host {
				continue
			}
			if m.Host == leader.Host {
				h, _ := etcdclient.CheckHealth(ctx, tc.Model, tc.StateDir, nil, etcdclient.CheckOptions{Members: []string{m.Host}})
				leaderAtItsStep = h.Members[0].Leader
				if h.Members[0].IsLeader() {
					t.Errorf("%s still leads at its own step: no hand-over", m.Name)
				}
			}
			tc.Restart(i)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(prog.Done) != 3 || order[2] != leader.Name || leaderAtItsStep == 0 {
		t.Errorf("order %v (leader %s last?), progress %s, leader seen %x", order, leader.Name, prog, leaderAtItsStep)
	}

	boom := errors.New("boom")
	prog, err = Run(ctx, opt, tc.Model.Members, func(ctx context.Context, m etcd.Member) error { return boom })
	if !errors.Is(err, boom) || len(prog.Done) != 0 || len(prog.Remaining) != 3 || !strings.Contains(prog.String(), "no member done") {
		t.Errorf("failing step: %v, %s", err, prog)
	}

	tc.Stop(2)
	_, err = Run(ctx, opt, tc.Model.Members[:1], func(ctx context.Context, m etcd.Member) error { return nil })
	if !errors.Is(err, ErrUnsafe) {
		t.Errorf("roll with a member down: %v", err)
	}
}

// TestRunTakesTheOperationLock: a roll waits for another holder of the
// lock and gives up with the remedy; a roll whose lease is revoked under
// it (what a long partition does) stops with ErrLost.
func TestRunTakesTheOperationLock(t *testing.T) {
	tc := etcdtest.Start(t, 1)
	ctx := context.Background()
	cli := tc.Client()
	other, err := oplock.Acquire(ctx, cli, "test", 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{Cluster: tc.Model, StateDir: tc.StateDir, Timeout: time.Second, Verb: "restart"}
	ran := false
	_, err = Run(ctx, opt, tc.Model.Members, func(context.Context, etcd.Member) error { ran = true; return nil })
	if err == nil || ran || !strings.Contains(err.Error(), "still held by another run") {
		t.Fatalf("roll while another run holds the lock: ran=%v err=%v", ran, err)
	}
	other.Release()

	opt.Timeout = 10 * time.Second
	_, err = Run(ctx, opt, tc.Model.Members, func(ctx context.Context, m etcd.Member) error {
		resp, err := cli.Get(ctx, oplock.Key, clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != 1 {
			return fmt.Errorf("lock key: %v %v", resp, err)
		}
		if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("the step's context outlived the lock")
		}
	})
	if !errors.Is(err, oplock.ErrLost) {
		t.Errorf("roll that lost its lock: %v", err)
	}
}

// TestRunSkipsStepsNoLongerPending: Pending is asked with the operation
// lock held (a run that waited for the lock must look again), and a
// member it says is done is skipped, never stepped.
func TestRunSkipsStepsNoLongerPending(t *testing.T) {
	tc := etcdtest.Start(t, 1)
	ctx := context.Background()
	cli := tc.Client()
	var logs []string
	lockHeldWhenAsked := false
	opt := Options{Cluster: tc.Model, StateDir: tc.StateDir, Timeout: 10 * time.Second, Verb: "restart",
		Log: func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) },
		Pending: func(ctx context.Context, m etcd.Member) (bool, string, error) {
			resp, err := cli.Get(ctx, oplock.Key, clientv3.WithPrefix())
			lockHeldWhenAsked = err == nil && len(resp.Kvs) == 1
			return false, "restarted by another run", nil
		}}
	stepped := false
	prog, err := Run(ctx, opt, tc.Model.Members, func(context.Context, etcd.Member) error { stepped = true; return nil })
	if err != nil || stepped || len(prog.Skipped) != 1 || len(prog.Done)+len(prog.Remaining) != 0 {
		t.Fatalf("roll of a member no longer pending: stepped=%v progress %s err %v", stepped, prog, err)
	}
	if !lockHeldWhenAsked {
		t.Error("Pending was asked without the operation lock held")
	}
	if want := "restarted by another run; no restart needed any more"; !strings.Contains(strings.Join(logs, "\n"), want) {
		t.Errorf("log %q lacks %q", logs, want)
	}
	if s := prog.String(); s != "no member done; no longer needed: "+tc.Model.Members[0].Name+"; not done: none" {
		t.Errorf("progress %q", s)
	}

	boom := errors.New("probe failed")
	opt.Pending = func(context.Context, etcd.Member) (bool, string, error) { return false, "", boom }
	if _, err := Run(ctx, opt, tc.Model.Members, func(context.Context, etcd.Member) error { stepped = true; return nil }); !errors.Is(err, boom) || stepped {
		t.Errorf("Pending failing: stepped=%v err %v", stepped, err)
	}
}

// TestRunGivesClientsTimeToReconnect: with Reconnect, each member is left
// up that long before the next member's step, and the roll does not wait
// after its last member (two waits logged for three members).
func TestRunGivesClientsTimeToReconnect(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	const wait = 700 * time.Millisecond
	var logged []string
	opt := Options{Cluster: tc.Model, StateDir: tc.StateDir, Timeout: 30 * time.Second, Verb: "restart", NoLock: true, Reconnect: wait,
		Log: func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) }}
	var starts, ends []time.Time
	_, err := Run(context.Background(), opt, tc.Model.Members, func(ctx context.Context, m etcd.Member) error {
		starts = append(starts, time.Now())
		for i, x := range tc.Model.Members {
			if x.Host == m.Host {
				tc.Restart(i)
			}
		}
		ends = append(ends, time.Now())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(ends[i-1]); gap < wait {
			t.Errorf("step %d began %s after step %d ended, want at least %s", i+1, gap, i, wait)
		}
	}
	n := 0
	for _, l := range logged {
		if strings.Contains(l, "to reconnect before the next restart") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d reconnect waits logged, want 2 (between 3 members):\n%s", n, strings.Join(logged, "\n"))
	}
}
