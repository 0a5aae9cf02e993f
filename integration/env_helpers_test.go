package integration

import (
	"context"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// labEnv boots a 3-host lab and a controller for it, with the mirror
// serving versions (the first is etcd_version). The fsync preflight allows
// 2s: the lab's disk is shared by every test running at once, so it
// measures the machine, not etcdplay.
func labEnv(t testing.TB, name string, block int, versions ...string) *harness.Env {
	t.Helper()
	l := lab.ForTest(t, lab.Options{Name: name, Block: block, Hosts: 3})
	e := harness.New(t, l)
	e.Vars["etcd_release_url"] = harness.Mirror(t, versions...)
	e.Vars["etcd_max_fsync_latency"] = "2s"
	e.Vars["etcd_version"] = versions[0]
	return e
}

// handLeadershipAway makes sure the member at endpoint does not lead, by
// handing leadership to the member at to. A leader that dies costs the
// cluster an election timeout whatever a runbook does: a test that
// measures a runbook's write gap around a killed member must not measure
// that.
func handLeadershipAway(t testing.TB, e *harness.Env, endpoint, to string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.Client(t, endpoint).Status(ctx, endpoint)
	if err != nil {
		t.Fatalf("status of %s: %v", endpoint, err)
	}
	if st.Leader != st.Header.MemberId {
		return
	}
	next, err := e.Client(t, to).Status(ctx, to)
	if err != nil {
		t.Fatalf("status of %s: %v", to, err)
	}
	if _, err := e.Client(t, endpoint).MoveLeader(ctx, next.Header.MemberId); err != nil {
		t.Fatalf("hand leadership from %s to %s: %v", endpoint, to, err)
	}
	t.Logf("leadership handed from %s to %s", endpoint, to)
}
