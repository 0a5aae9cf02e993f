package integration

// A tuning change on a running cluster: the dry run shows the etcd.yaml
// diff and the planned rolling restart and changes nothing; apply restarts
// the members one at a time while a client keeps writing.

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// electionTimeout is etcd's (and etcdplay's) default election timeout: the
// longest a client may go without a successful write during a rolling
// restart.
const electionTimeout = 1000 * time.Millisecond

func TestRollingRestartOnTuningChange(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-rolling", Block: 44, Hosts: 3})
	e := bootEnv(t, l)
	pb := harness.Playbook("site.yml")
	hosts := bootHostNames(l)
	e.MustApply(t, pb)

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
