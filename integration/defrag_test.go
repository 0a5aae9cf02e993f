// The rolling defrag and the consistency check on real lab hosts (issue
// 13), checked with etcd's own client and etcd's own logs. Lab block 67.
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/integration/harness"
)

// TestRollingDefragUnderLoad: three members each holding about 24 MiB of
// free pages, one of them already defragmented by hand. maintenance.yml
// with etcd_defrag_free_above 4MiB defragments the other two, one at a
// time, the leader last, while a client writes every 20 ms; the member
// under the threshold is left alone. etcd's own log lines ("defragmenting",
// "finished defragmenting directory") give each member's defrag interval.
// Then a member restored on its own from an older snapshot is named by the
// consistency check, and nothing is changed.
func TestRollingDefragUnderLoad(t *testing.T) {
	e := labEnv(t, "it-defrag", 67, bootVersion)
	e.Vars["etcd_defrag_free_above"] = "4MiB"
	e.MustApply(t, harness.Playbook("site.yml"))
	cli := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Free pages: 48 values of 512 KiB, deleted and compacted away.
	value := strings.Repeat("d", 512<<10)
	for i := 0; i < 48; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("bulk/%03d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	putKeys(t, cli, 500, "kept", 64)
	del, err := cli.Delete(ctx, "bulk/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}

	hosts := e.Lab.Hosts()
	status := func() map[string]*clientv3.StatusResponse {
		out := map[string]*clientv3.StatusResponse{}
		for _, h := range hosts {
			st, err := cli.Status(ctx, e.Endpoints(h.Name)[0])
			if err != nil {
				t.Fatalf("status of %s: %v", h.Name, err)
			}
			out[h.Name] = st
		}
		return out
	}
	before := awaitCompacted(t, e, cli, 8<<20)
	var leader, skipped string
	for name, st := range before {
		if st.Header.MemberId == st.Leader {
			leader = name
		}
	}
	for _, h := range hosts {
		if h.Name != leader {
			skipped = h.Name
			break
		}
	}
	if _, err := cli.Defragment(ctx, e.Endpoints(skipped)[0]); err != nil {
		t.Fatalf("defragment %s by hand: %v", skipped, err)
	}
	before = status()
	for _, h := range hosts {
		st := before[h.Name]
		t.Logf("before: %s db %d, in use %d", h.Name, st.DbSize, st.DbSizeInUse)
	}
	if free := before[leader].DbSize - before[leader].DbSizeInUse; free < 16<<20 {
		t.Fatalf("the leader %s holds only %d free bytes: the set-up did not fragment it", leader, free)
	}

	check := e.Etcdplay(t, "apply", harness.Playbook("maintenance.yml"), "--check")
	if !strings.Contains(check.Stdout, "defrag "+leader) || strings.Contains(check.Stdout, "defrag "+skipped+" ") ||
		!strings.Contains(check.Stdout, skipped+": db") || !strings.Contains(check.Stdout, "leader, last") {
		t.Errorf("maintenance --check (exit %d) should plan the leader %s last and skip %s:\n%s%s", check.Code, leader, skipped, check.Stdout, check.Stderr)
	}

	start := time.Now()
	wl := harness.StartWriteLoop(cli, "during-defrag", 20*time.Millisecond, 400*time.Millisecond)
	o := e.MustApply(t, harness.Playbook("maintenance.yml"))
	st := wl.Stop()
	t.Logf("writes during the rolling defrag: %s", st)
	if st.OK == 0 || st.MaxGap >= time.Second {
		t.Errorf("writes during the rolling defrag: %s (want the longest gap below the 1s election timeout)", st)
	}
	if ev, ok := taskEvent(o, "etcd_defrag"); !ok || ev.Status != "changed" {
		t.Errorf("etcd_defrag: %+v (found %v)", ev, ok)
	} else {
		t.Logf("etcd_defrag: %s", ev.Msg)
	}

	spans := map[string][2]time.Time{}
	for _, h := range hosts {
		spans[h.Name] = defragSpan(t, e, h.Name, start)
	}
	if sp := spans[skipped]; !sp[0].IsZero() {
		t.Errorf("%s was under the threshold but was defragmented at %v", skipped, sp)
	}
	var order []string
	for name, sp := range spans {
		if !sp[0].IsZero() {
			order = append(order, name)
		}
	}
	sort.Slice(order, func(i, j int) bool { return spans[order[i]][0].Before(spans[order[j]][0]) })
	t.Logf("defrag order (from etcd's logs): %v", order)
	if len(order) != 2 || order[1] != leader {
		t.Errorf("defragmented %v, want the follower, then the leader %s last", order, leader)
	}
	for i := 1; i < len(order); i++ {
		prev, cur := spans[order[i-1]], spans[order[i]]
		if prev[1].IsZero() || !cur[0].After(prev[1]) {
			t.Errorf("%s started defragmenting at %v before %s finished at %v", order[i], cur[0], order[i-1], prev[1])
		}
	}
	after := status()
	for _, h := range hosts {
		t.Logf("after: %s db %d (was %d), in use %d", h.Name, after[h.Name].DbSize, before[h.Name].DbSize, after[h.Name].DbSizeInUse)
		if h.Name != skipped && after[h.Name].DbSize >= before[h.Name].DbSize-(8<<20) {
			t.Errorf("%s: db %d bytes after the defrag, %d before", h.Name, after[h.Name].DbSize, before[h.Name].DbSize)
		}
	}
	if n, err := cli.Get(ctx, "key/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || n.Count != 500 {
		t.Errorf("kept keys after the defrag: %v %v", n, err)
	}
	if again := e.MustApply(t, harness.Playbook("maintenance.yml")); again.Changed() != 0 {
		t.Errorf("maintenance again (every member under the threshold) changed %d:\n%s", again.Changed(), again.Stdout)
	}

	// A diverged member: skipped's data replaced by a restore of an older
	// snapshot made under its own name and peer URL (so its member ID is
	// the same), while a leader that never saw it leave leads: a new
	// leader probes it from scratch and replays the raft log from index 4
	// on top of keys it already holds. (The leader that saw it acknowledge
	// the newest entries would send it a commit index past its log, and
	// etcd stops: "tocommit out of range".)
	x := skipped
	if out, err := e.Lab.Run(ctx, x, tlsCtl(e, x)+" snapshot save /root/old.db"); err != nil {
		t.Fatalf("snapshot on %s: %v\n%s", x, err, out)
	}
	putKeys(t, cli, 200, "newer", 16)
	// The two other members: a and b.
	var live []string
	for _, h := range hosts {
		if h.Name != x {
			live = append(live, e.Endpoints(h.Name)[0])
		}
	}
	handLeadershipAway(t, e, e.Endpoints(x)[0], live[0])
	const restoreAlone = `set -e
val() { sed -n "s/^$1: *//p" /etc/etcd/etcd.yaml | tr -d "'\""; }
dd=$(val data-dir)
systemctl stop etcd
mv "$dd" /root/data-before-divergence
etcdutl snapshot restore /root/old.db --name "$(val name)" --initial-cluster "$(val initial-cluster)" \
  --initial-cluster-token "$(val initial-cluster-token)" --initial-advertise-peer-urls "$(val initial-advertise-peer-urls)" --data-dir "$dd"
chown -R etcd:etcd "$dd"
chmod 700 "$dd"`
	if out, err := e.Lab.Run(ctx, x, restoreAlone); err != nil {
		t.Fatalf("restore %s on its own: %v\n%s", x, err, out)
	}
	// Whichever of the two leads hands over to the other.
	if st, err := e.Client(t, live[0]).Status(ctx, live[0]); err == nil && st.Leader == st.Header.MemberId {
		handLeadershipAway(t, e, live[0], live[1])
	} else {
		handLeadershipAway(t, e, live[1], live[0])
	}
	if out, err := e.Lab.Run(ctx, x, "systemctl start etcd"); err != nil {
		out2, _ := e.Lab.Run(ctx, x, "journalctl -u etcd --no-pager -n 20 -o cat")
		t.Fatalf("start %s on its restored data: %v\n%s\n%s", x, err, out, out2)
	}
	waitHealthy(t, e)
	snap := e.CheckSnapshot(t)
	bad := e.Etcdplay(t, "apply", harness.Playbook("maintenance.yml"), "--check")
	if bad.Code != 2 || !strings.Contains(bad.Stdout+bad.Stderr, x+" differ") || !strings.Contains(bad.Stdout+bad.Stderr, "replace-node.yml") {
		t.Errorf("consistency check with %s diverged: exit %d, want 2 naming it and the runbook:\n%s%s", x, bad.Code, bad.Stdout, bad.Stderr)
	}
	e.Unchanged(t, snap, "the consistency check")

	// CORRUPT, raised through etcd's own alarm API as its corruption
	// check would: maintenance.yml refuses, names the member and the
	// runbook, and never disarms it.
	ids := map[string]uint64{}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Members {
		ids[m.Name] = m.ID
	}
	if _, err := etcdserverpb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &etcdserverpb.AlarmRequest{
		Action: etcdserverpb.AlarmRequest_ACTIVATE, MemberID: ids[x], Alarm: etcdserverpb.AlarmType_CORRUPT}); err != nil {
		t.Fatalf("raise CORRUPT on %s: %v", x, err)
	}
	corrupt := e.Etcdplay(t, "apply", harness.Playbook("maintenance.yml"))
	out := corrupt.Stdout + corrupt.Stderr
	if corrupt.Code != 2 || !strings.Contains(out, "alarm CORRUPT on member "+x) || !strings.Contains(out, "replace-node.yml -e node="+x) {
		t.Errorf("maintenance.yml with CORRUPT on %s: exit %d, want a refusal naming it and replace-node.yml:\n%s", x, corrupt.Code, out)
	}
	if a, err := cli.AlarmList(ctx); err != nil || len(a.Alarms) != 1 || a.Alarms[0].Alarm != etcdserverpb.AlarmType_CORRUPT {
		t.Errorf("alarms after maintenance.yml: %v %v, want CORRUPT still raised", a, err)
	}
}

// defragSpan is when etcd on host logged the start and the end of its
// last defrag after since (zero times when it did not defragment).
func defragSpan(t *testing.T, e *harness.Env, host string, since time.Time) [2]time.Time {
	t.Helper()
	out, err := e.Lab.Run(context.Background(), host, "journalctl -u etcd --no-pager -o cat | grep -F defragmenting || true")
	if err != nil {
		t.Fatalf("etcd's log on %s: %v", host, err)
	}
	var sp [2]time.Time
	for _, line := range strings.Split(out, "\n") {
		var rec struct {
			TS  string `json:"ts"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, rec.TS)
		if err != nil || ts.Before(since) {
			continue
		}
		switch rec.Msg {
		case "defragmenting":
			sp[0] = ts
		case "finished defragmenting directory":
			sp[1] = ts
		}
	}
	return sp
}

// tlsCtl is etcdctl on host against its own member, with the member's
// own certificate.
func tlsCtl(e *harness.Env, host string) string {
	return fmt.Sprintf("etcdctl --endpoints=%s --cacert=/etc/etcd/pki/ca.crt --cert=/etc/etcd/pki/server.crt --key=/etc/etcd/pki/server.key",
		e.Endpoints(host)[0])
}

// awaitCompacted waits until every member's db holds less than inUse bytes
// in use, and returns their status. A physical compaction is awaited on
// the member that served it only; the others free their pages in their own
// time, and bbolt counts pages freed by a commit as free only after the
// next commit: a write now and then lets every member's figure settle.
func awaitCompacted(t testing.TB, e *harness.Env, cli *clientv3.Client, inUse int64) map[string]*clientv3.StatusResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if _, err := cli.Put(ctx, "settle", time.Now().String()); err != nil {
			t.Fatal(err)
		}
		out, settled := map[string]*clientv3.StatusResponse{}, true
		for _, h := range e.Lab.Hosts() {
			st, err := cli.Status(ctx, e.Endpoints(h.Name)[0])
			if err != nil {
				t.Fatalf("status of %s: %v", h.Name, err)
			}
			out[h.Name] = st
			settled = settled && st.DbSizeInUse < inUse
		}
		if settled {
			return out
		}
		if time.Now().After(deadline) {
			for name, st := range out {
				t.Logf("%s: db %d, in use %d", name, st.DbSize, st.DbSizeInUse)
			}
			t.Fatalf("members still hold more than %d bytes in use a minute after the compaction", inUse)
		}
	}
}
