package etcd_member

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// TestSnapshotGuardAndRemove runs the client side against a real 3-member
// TLS cluster: the snapshot sees a stopped member as down, the guard then
// refuses to remove a healthy one, removing the dead one and then the
// leader (after handing leadership over) leaves a healthy one-member
// cluster.
func TestSnapshotGuardAndRemove(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := &cluster{model: tc.Model, stateDir: tc.StateDir}

	live, err := cl.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := describeLive(live); strings.Count(got, "(leader)") != 1 || strings.Contains(got, "(down") {
		t.Fatalf("healthy cluster seen as %s", got)
	}

	tc.Stop(2)
	live, err = cl.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]liveMember{}
	for _, l := range live {
		byName[l.Name] = l
	}
	if l := byName["etcd3"]; l.Healthy || l.Up || l.Err == "" {
		t.Fatalf("stopped etcd3 seen as %+v", l)
	}
	err = etcd.CheckQuorum(guardView(live), guardSteps([]step{{Kind: stepRemove, ID: byName["etcd2"].ID, Name: "etcd2"}}))
	if err == nil || err.Error() != "removing etcd2 while etcd3 is unhealthy leaves 1 healthy of 2 voting members, below the quorum of 2" {
		t.Fatalf("guard: %v", err)
	}

	var logged []string
	a := &applier{
		p:   &payload{Cluster: tc.Model, Timeout: 30 * time.Second},
		env: &modules.Env{Log: func(f string, args ...any) { logged = append(logged, f) }},
		cl:  cl,
	}
	if _, err := a.step(ctx, step{Kind: stepRemove, ID: byName["etcd3"].ID, Name: "etcd3"}); err != nil {
		t.Fatalf("remove the dead member: %v", err)
	}
	live, err = cl.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 2 {
		t.Fatalf("after removing etcd3: %s", describeLive(live))
	}
	lead, ok := leader(live)
	if !ok {
		t.Fatalf("no leader after removing etcd3: %s", describeLive(live))
	}
	if _, err := a.step(ctx, step{Kind: stepRemove, ID: lead.ID, Name: lead.Name}); err != nil {
		t.Fatalf("remove the leader %s: %v", lead.Name, err)
	}
	live, err = cl.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || !live[0].Healthy || !live[0].Leader || live[0].ID == lead.ID {
		t.Fatalf("after removing the leader: %s", describeLive(live))
	}
	// The last member cannot go.
	if _, err := a.step(ctx, step{Kind: stepRemove, ID: live[0].ID, Name: live[0].Name}); err == nil ||
		!strings.Contains(err.Error(), "would remove the last voting member") {
		t.Fatalf("removing the last member: %v", err)
	}
}

// TestLockWaitsForAnotherRun holds the membership lock as another run
// would: lock times out while it is held and succeeds once it is released.
func TestLockWaitsForAnotherRun(t *testing.T) {
	tc := etcdtest.Start(t, 1)
	ctx := context.Background()
	cl := &cluster{model: tc.Model, stateDir: tc.StateDir}
	live, err := cl.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}

	_, other, err := cl.lock(ctx, live, 5*time.Second, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	var waited []string
	if _, _, err := cl.lock(ctx, live, time.Second, func(f string, a ...any) { waited = append(waited, f) }); err == nil ||
		!strings.Contains(err.Error(), "still held by another run") {
		t.Fatalf("second lock while held: %v", err)
	}
	if len(waited) != 1 {
		t.Errorf("the wait was not logged: %q", waited)
	}
	go func() {
		time.Sleep(500 * time.Millisecond)
		other()
	}()
	_, unlock, err := cl.lock(ctx, live, 10*time.Second, t.Logf)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock()
}

// TestUpdatePeerURLs moves a member's peer URL through the guard and
// confirms it in the member list.
func TestUpdatePeerURLs(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := &cluster{model: tc.Model, stateDir: tc.StateDir}
	live, err := cl.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var target liveMember
	for _, l := range live {
		if l.Name == "etcd3" {
			target = l
		}
	}
	a := &applier{p: &payload{Cluster: tc.Model, Timeout: 30 * time.Second}, env: &modules.Env{}, cl: cl}
	moved := "http://127.0.0.2:" + strings.Split(target.PeerURLs[0], ":")[2]
	if _, err := a.step(ctx, step{Kind: stepUpdate, ID: target.ID, Name: "etcd3", Member: &etcd.Member{PeerURL: moved}}); err != nil {
		t.Fatal(err)
	}
	ms, _, err := cl.memberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == target.ID && (len(m.PeerURLs) != 1 || m.PeerURLs[0] != moved) {
			t.Errorf("etcd3's peer URLs are %v, want %s", m.PeerURLs, moved)
		}
	}
}
