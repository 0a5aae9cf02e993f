package integration

// A tuning change on a running cluster: the dry run shows the etcd.yaml
// diff and the planned rolling restart and changes nothing; apply restarts
// the members one at a time while a client keeps writing.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// electionTimeout is etcd's (and etcdplay's) default election timeout: the
// longest a client may go without a successful write during a rolling
// restart.
const electionTimeout = 1000 * time.Millisecond

func TestRollingRestartOnTuningChange(t *testing.T) {
	_, e, pb, hosts := siteLab(t, "it-rolling", 44)

	leader := rollLeader(t, e)
	before := rollUnitTimes(t, e, hosts)
	conv := e.SnapshotAll(t, harness.CheckDirs...)
	const tuned = "etcd_snapshot_count=20000"

	check := e.Apply(t, pb, "--check", "--diff", "-e", tuned)
	if check.Code != 0 {
		t.Fatalf("--check --diff -e %s: exit %d\n%s", tuned, check.Code, check.Summary())
	}
	var restarts []string
	for _, h := range hosts {
		acts, diffs := check.Planned(h)
		var yaml string
		for _, d := range diffs {
			if d.Path == "/etc/etcd/etcd.yaml" {
				yaml = d.Before + "\x00" + d.After
			} else {
				t.Errorf("%s: --check plans a diff of %s, want etcd.yaml only", h, d.Path)
			}
		}
		b, a, _ := strings.Cut(yaml, "\x00")
		if !strings.Contains(b, "snapshot-count: 10000\n") || !strings.Contains(a, "snapshot-count: 20000\n") ||
			strings.Replace(b, "snapshot-count: 10000\n", "snapshot-count: 20000\n", 1) != a {
			t.Errorf("%s: etcd.yaml diff is not exactly snapshot-count 10000 -> 20000:\n--- before\n%s\n--- after\n%s", h, b, a)
		}
		for _, a := range acts {
			if a.Op == "!" && strings.HasPrefix(a.Target, "restart ") {
				restarts = append(restarts, strings.TrimPrefix(a.Target, "restart "))
			}
		}
	}
	// The handler runs once and plans every member's restart, one by one.
	if len(restarts) != len(hosts) || !sameSet(restarts, hosts) {
		t.Errorf("--check plans restarts of %v, want each of %v once", restarts, hosts)
	} else if restarts[len(restarts)-1] != leader {
		t.Errorf("--check plans restarts in order %v, want the leader %s last", restarts, leader)
	}
	// The same plan as a person reads it.
	text := e.Etcdplay(t, "apply", pb, "--check", "--diff", "-e", tuned)
	byHost := bootSplitByHost(text.Stdout)
	for _, h := range hosts {
		if !strings.Contains(byHost[h], "-snapshot-count: 10000\n") || !strings.Contains(byHost[h], "+snapshot-count: 20000\n") {
			t.Errorf("--check --diff text shows no snapshot-count diff for %s:\n%s", h, text.Stdout)
		}
		if !strings.Contains(text.Stdout, "! restart "+h+":") {
			t.Errorf("--check --diff text plans no restart of %s:\n%s", h, text.Stdout)
		}
	}
	if d := e.ChangedSince(t, conv, harness.CheckDirs...); len(d) > 0 {
		t.Errorf("--check changed hosts:\n%s", strings.Join(d, "\n"))
	}
	if now := rollUnitTimes(t, e, hosts); !rollSame(now, before) {
		t.Errorf("--check restarted etcd: %v, was %v", now, before)
	}

	// Apply with a client writing throughout.
	cli := e.Client(t)
	w := harness.StartWriteLoop(cli, "/it/rolling", 20*time.Millisecond, 500*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // a baseline of successful writes
	apply := e.Apply(t, pb, "-e", tuned)
	time.Sleep(500 * time.Millisecond)
	stats := w.Stop()
	if apply.Code != 0 {
		t.Fatalf("apply -e %s: exit %d\n%s", tuned, apply.Code, apply.Summary())
	}
	t.Logf("rolling restart of 3 members: apply %s; writer: %s", apply.Elapsed.Round(time.Millisecond), stats)
	if stats.OK < 50 {
		t.Errorf("writer made only %d writes: %s", stats.OK, stats)
	}
	if stats.MaxGap > electionTimeout {
		t.Errorf("writes stopped for %s (> election timeout %s): %s; first errors: %v", stats.MaxGap, electionTimeout, stats, stats.Errors)
	}

	after := rollUnitTimes(t, e, hosts)
	for _, h := range hosts {
		a, b := after[h], before[h]
		if a.pid == b.pid || a.activeExit <= b.activeEnter || a.activeEnter <= a.activeExit {
			t.Errorf("%s was not restarted by apply: before %+v, after %+v", h, b, a)
		}
		if got := string(e.HostFile(t, h, "/etc/etcd/etcd.yaml")); !strings.Contains(got, "snapshot-count: 20000\n") {
			t.Errorf("%s etcd.yaml after apply lacks snapshot-count: 20000", h)
		}
	}
	// Down windows (deactivation started -> active again) must not overlap:
	// systemd's monotonic clock is the machine's, shared by every host.
	for i, x := range hosts {
		for _, y := range hosts[i+1:] {
			a, b := after[x], after[y]
			if a.activeExit < b.activeEnter && b.activeExit < a.activeEnter {
				t.Errorf("%s and %s were down at the same time: %+v, %+v", x, y, a, b)
			}
		}
	}
	order := rollOrder(after, hosts)
	t.Logf("restarts: %v", order)
	if !strings.HasPrefix(order[len(order)-1], "+") || !strings.Contains(order[len(order)-1], " "+leader+" ") {
		t.Errorf("restart order %v: want the leader %s last", order, leader)
	}
	bootCheckCluster(t, e, hosts)

	again := e.Apply(t, pb, "-e", tuned)
	if again.Code != 0 {
		t.Fatalf("apply again with the same variable: exit %d\n%s\nstderr:\n%s", again.Code, again.Stdout, again.Stderr)
	}
	if n := again.Changed(); n != 0 {
		t.Errorf("apply again with the same variable: changed=%d, want 0", n)
	}
}

// rollUnit is when etcd.service on a host last left and entered the active
// state (systemd's monotonic microseconds) and its main PID.
type rollUnit struct {
	pid                     int
	activeExit, activeEnter int64
}

func rollUnitTimes(t *testing.T, e *harness.Env, hosts []string) map[string]rollUnit {
	t.Helper()
	out := map[string]rollUnit{}
	for _, h := range hosts {
		p := e.UnitProps(t, h, "etcd.service", "MainPID", "ActiveExitTimestampMonotonic", "ActiveEnterTimestampMonotonic")
		var u rollUnit
		u.pid, _ = strconv.Atoi(p["MainPID"])
		u.activeExit, _ = strconv.ParseInt(p["ActiveExitTimestampMonotonic"], 10, 64)
		u.activeEnter, _ = strconv.ParseInt(p["ActiveEnterTimestampMonotonic"], 10, 64)
		out[h] = u
	}
	return out
}

// checkPlansNothing runs pb with --check and extra, and fails the test
// when it plans anything on one of hosts: the rerun left nothing undone.
func checkPlansNothing(t *testing.T, e *harness.Env, pb string, hosts []string, prefix string, extra ...string) {
	t.Helper()
	check := e.MustApply(t, pb, append([]string{"--check"}, extra...)...)
	for _, h := range hosts {
		if acts, diffs := check.Planned(h); len(acts)+len(diffs) > 0 {
			t.Errorf("%s--check after the rerun still plans on %s: %v %v", prefix, h, acts, diffs)
		}
	}
}

// noTwoDown fails the test when two members' last down windows overlap.
func noTwoDown(t *testing.T, prefix string, units map[string]rollUnit, hosts []string) {
	t.Helper()
	for i, x := range hosts {
		for _, y := range hosts[i+1:] {
			a, b := units[x], units[y]
			if a.activeExit > 0 && b.activeExit > 0 && a.activeExit < b.activeEnter && b.activeExit < a.activeEnter {
				t.Errorf("%s%s and %s were down at the same time: %+v, %+v", prefix, x, y, a, b)
			}
		}
	}
}

func rollSame(a, b map[string]rollUnit) bool {
	for h, u := range a {
		if b[h] != u {
			return false
		}
	}
	return len(a) == len(b)
}

// rollOrder lists hosts by when their restart began, for the log.
func rollOrder(u map[string]rollUnit, hosts []string) []string {
	order := append([]string(nil), hosts...)
	for i := range order {
		for j := i + 1; j < len(order); j++ {
			if u[order[j]].activeExit < u[order[i]].activeExit {
				order[i], order[j] = order[j], order[i]
			}
		}
	}
	var out []string
	for i, h := range order {
		d := time.Duration(u[h].activeEnter-u[h].activeExit) * time.Microsecond
		if i == 0 {
			out = append(out, h+" (down "+d.Round(time.Millisecond).String()+")")
			continue
		}
		gap := time.Duration(u[h].activeExit-u[order[i-1]].activeEnter) * time.Microsecond
		out = append(out, "+"+gap.Round(time.Millisecond).String()+" "+h+" (down "+d.Round(time.Millisecond).String()+")")
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// rollLeader names the member that etcd reports as leader.
func rollLeader(t *testing.T, e *harness.Env) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli := e.Client(t)
	st, err := cli.Status(ctx, e.Endpoints()[0])
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	for _, m := range ml.Members {
		if m.ID == st.Leader {
			return m.Name
		}
	}
	t.Fatalf("leader %x is not in the member list", st.Leader)
	return ""
}

// TestRollingRestartCountsMembersOutsideInventory: the quorum guard counts
// the live member list, not the inventory. A 5-member cluster is managed
// through an inventory naming 3 of them (etcd4 and etcd5 were added by
// another team's inventory). With etcd5 down, the other outsider is
// probed through its advertised client URL and counts as up, so the roll
// goes on (3 of 5 up at every step); with etcd4 down too it is refused
// with the quorum arithmetic before any member stops; with no leader at
// all it is refused too. Once the outsiders are back, the same run
// converges, and every acknowledged write reads back.
func TestRollingRestartCountsMembersOutsideInventory(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-roll-outsiders", Block: 82, Hosts: 5})
	e := bootEnv(t, l)
	pb := harness.Playbook("site.yml")
	e.MustApply(t, pb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	managed := []string{"etcd1", "etcd2", "etcd3"}
	e.Inventory = editInventory(t, e.Inventory, func(inv map[string]any) {
		hosts := inv["all"].(map[string]any)["children"].(map[string]any)["etcd"].(map[string]any)["hosts"].(map[string]any)
		delete(hosts, "etcd4")
		delete(hosts, "etcd5")
	})
	cli := e.Client(t, e.Endpoints(managed...)...)
	put := func(key string) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := cli.Put(c, key, "acknowledged"); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	stop := func(host string) {
		t.Helper()
		if err := l.StopUnit(ctx, host, "etcd.service"); err != nil {
			t.Fatal(err)
		}
	}
	pids := func() map[string]rollUnit { return rollUnitTimes(t, e, managed) }

	// One outsider down, the other up and leading: 3 of 5 stay up through
	// each step, and the leader is not etcdplay's to restart.
	if leader := rollLeader(t, e); leader != "etcd4" {
		handLeadershipAway(t, e, e.Endpoints(leader)[0], e.Endpoints("etcd4")[0])
	}
	stop("etcd5")
	put("outsiders/1")
	before := pids()
	o := e.Apply(t, pb, "-e", "etcd_snapshot_count=20000")
	if o.Code != 0 {
		t.Fatalf("rolling restart with etcd5 (outside the inventory) down and etcd4 up: exit %d\n%s", o.Code, o.Summary())
	}
	t.Logf("roll with one outsider down: %s", o.Elapsed.Round(time.Millisecond))
	after := pids()
	for _, h := range managed {
		if after[h].pid == before[h].pid {
			t.Errorf("%s was not restarted", h)
		}
	}
	if leader := rollLeader(t, e); leader != "etcd4" {
		t.Errorf("leader after the roll: %s, want etcd4 still (no member etcdplay restarted led)", leader)
	}
	put("outsiders/2")

	// Both outsiders down: any step would leave 2 of 5. Refused before
	// any member stops, naming both.
	stop("etcd4")
	before = pids()
	o = e.Apply(t, pb, "-e", "etcd_snapshot_count=30000")
	out := o.Summary() + o.Stdout
	if o.Code == 0 || !strings.Contains(out, "2 of 5 voting members would be up, a quorum needs 3") ||
		!strings.Contains(out, "etcd4 (") || !strings.Contains(out, "etcd5 (") {
		t.Fatalf("rolling restart with both outsiders down: exit %d, want a refusal with the quorum arithmetic naming etcd4 and etcd5\n%s", o.Code, o.Summary())
	}
	t.Logf("refused with both outsiders down: %s", o.Elapsed.Round(time.Millisecond))
	if now := pids(); !rollSame(now, before) {
		t.Errorf("the refused roll restarted members: %v, was %v", now, before)
	}
	put("outsiders/3")

	// No leader: etcd3 hangs (SIGSTOP: a stopped inventory member would
	// simply be started again by site.yml, and a blocked peer port lets
	// it reach its peers through connections they opened), which leaves
	// 2 of 5 voters answering. Refused, nothing restarted.
	signal := func(host, sig string) {
		t.Helper()
		if out, err := l.Run(ctx, host, "systemctl kill --signal="+sig+" etcd.service"); err != nil {
			t.Fatalf("%s on %s: %v %s", sig, host, err, out)
		}
	}
	signal("etcd3", "SIGSTOP")
	defer signal("etcd3", "SIGCONT")
	waitNoLeader(t, cli, e.Endpoints("etcd1")[0])
	before = pids()
	o = e.Apply(t, pb, "-e", "etcd_snapshot_count=40000")
	if o.Code == 0 || !strings.Contains(o.Summary(), "has no leader") {
		t.Fatalf("rolling restart of a cluster with no leader: exit %d, want a refusal that says there is no leader\n%s", o.Code, o.Summary())
	}
	t.Logf("refused with no leader: %s", o.Elapsed.Round(time.Millisecond))
	if now := pids(); !rollSame(now, before) {
		t.Errorf("the refused run restarted a member: %v, was %v", now, before)
	}
	signal("etcd3", "SIGCONT")

	// The outsiders come back: the same run converges.
	for _, h := range []string{"etcd4", "etcd5"} {
		if _, err := l.Run(ctx, h, "systemctl start etcd.service"); err != nil {
			t.Fatal(err)
		}
	}
	e.MustApply(t, pb, "-e", "etcd_snapshot_count=40000")
	if again := e.MustApply(t, pb, "-e", "etcd_snapshot_count=40000"); again.Changed() != 0 {
		t.Errorf("a second run changed %d things", again.Changed())
	}
	all := e.Client(t)
	for _, k := range []string{"outsiders/1", "outsiders/2", "outsiders/3"} {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := all.Get(c, k)
		cancel()
		if err != nil || len(r.Kvs) != 1 {
			t.Errorf("acknowledged write %s: %v %v", k, r, err)
		}
	}
	for _, h := range l.Hosts() {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := all.Status(c, e.Endpoints(h.Name)[0])
		cancel()
		if err != nil || st.Leader == 0 {
			t.Errorf("%s after the outsiders came back: %v %v", h.Name, st, err)
		}
	}
}

// waitNoLeader waits until the member at endpoint reports no leader.
func waitNoLeader(t *testing.T, cli *clientv3.Client, endpoint string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, endpoint)
		cancel()
		if err == nil && st.Leader == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still reports a leader: %v %v", endpoint, st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRollingRestartRerunWaitsForMemberMidRestart: the controller dies
// while systemd is still restarting a member (etcd with a large database
// takes seconds to stop; here a drop-in's ExecStopPost sleep stands in
// for that), and the operator runs site.yml again at once. The rerun
// waits for that member to come back and finishes the roll. Before, it
// found the member "deactivating", left it to systemd, then refused the
// roll because the cluster was not healthy, and kept refusing until the
// restart happened to be over (the soak, seed 20261206, iteration 53).
func TestRollingRestartRerunWaitsForMemberMidRestart(t *testing.T) {
	l, e, pb, hosts := siteLab(t, "it-roll-midrestart", 91)
	slow := hosts[1]
	l.MustRun(t, slow, "mkdir -p /etc/systemd/system/etcd.service.d && "+
		"printf '[Service]\nExecStopPost=/bin/sleep 8\n' > /etc/systemd/system/etcd.service.d/slow-stop.conf && systemctl daemon-reload")
	tuned := "etcd_snapshot_count=30001"
	before := rollUnitTimes(t, e, hosts)
	killed := e.SignalWhen(t, pb, "restart of "+slow+" (", 1500*time.Millisecond, syscall.SIGKILL, "-e", tuned)
	if killed.Code == 0 {
		t.Fatal("the killed run exited 0")
	}
	if st := e.UnitProps(t, slow, "etcd.service", "ActiveState")["ActiveState"]; st != "deactivating" {
		t.Fatalf("%s is %q when the rerun starts: the fault did not land mid-restart", slow, st)
	}
	again := e.MustApply(t, pb, "-e", tuned)
	after := rollUnitTimes(t, e, hosts)
	for _, h := range hosts {
		if after[h].pid == before[h].pid {
			t.Errorf("%s was never restarted onto the new etcd.yaml\n%s", h, again.Stdout)
		}
	}
	noTwoDown(t, "", after, hosts)
	waitHealthy(t, e)
	checkPlansNothing(t, e, pb, hosts, "", "-e", tuned)
}

// TestRollingRestartResumesAfterControllerKilled: the controller is
// SIGKILLed as a rolling restart reaches each member in turn (first,
// second, the leader last). The next site.yml finishes the roll: every
// member restarts onto the new etcd.yaml, one at a time, and a --check
// after it plans nothing. Before site.yml checked for members left on
// inputs they had not loaded, a killed roll left them so for good.
func TestRollingRestartResumesAfterControllerKilled(t *testing.T) {
	_, e, pb, hosts := siteLab(t, "it-roll-killed", 85)
	for step := 1; step <= len(hosts); step++ {
		tuned := fmt.Sprintf("etcd_snapshot_count=%d", 20000+step)
		before := rollUnitTimes(t, e, hosts)
		killed := e.SignalWhen(t, pb, fmt.Sprintf(" (%d/%d, ", step, len(hosts)), 0, syscall.SIGKILL, "-e", tuned)
		if killed.Code == 0 {
			t.Fatalf("step %d: the killed run exited 0", step)
		}
		again := e.MustApply(t, pb, "-e", tuned)
		after := rollUnitTimes(t, e, hosts)
		for _, h := range hosts {
			if after[h].pid == before[h].pid {
				t.Errorf("killed at step %d: %s was never restarted onto the new etcd.yaml\n%s", step, h, again.Stdout)
			}
			if got := string(e.HostFile(t, h, "/etc/etcd/etcd.yaml")); !strings.Contains(got, fmt.Sprintf("snapshot-count: %d\n", 20000+step)) {
				t.Errorf("killed at step %d: %s etcd.yaml lacks the new snapshot-count", step, h)
			}
		}
		noTwoDown(t, fmt.Sprintf("killed at step %d: ", step), after, hosts)
		checkPlansNothing(t, e, pb, hosts, fmt.Sprintf("killed at step %d: ", step), "-e", tuned)
	}
}
