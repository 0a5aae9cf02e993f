// Keyspace maintenance on real lab hosts (issue 13), checked with etcd's
// own client: the NOSPACE recovery of seed 003. Lab block 66.
package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/integration/harness"
)

// TestNospaceRecovery: a cluster with a 16 MiB quota is filled until etcd
// raises NOSPACE and refuses writes. maintenance.yml --check shows the
// compaction, the members to defragment and the disarm, and changes
// nothing; after the keys are deleted, maintenance.yml compacts,
// defragments one member at a time, disarms NOSPACE and writes work again;
// a second run changes nothing.
func TestNospaceRecovery(t *testing.T) {
	e := labEnv(t, "it-nospace", 66, bootVersion)
	e.Vars["etcd_quota_backend_bytes"] = "16MiB"
	e.Vars["etcd_compact_keep"] = "1"
	e.MustApply(t, harness.Playbook("site.yml"))
	cli := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	value := strings.Repeat("x", 512<<10)
	full := false
	for i := 0; i < 200 && !full; i++ {
		_, err := cli.Put(ctx, fmt.Sprintf("fill/%04d", i), value)
		switch {
		case err != nil && strings.Contains(err.Error(), "database space exceeded"):
			full = true
		case err != nil:
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if !full {
		t.Fatal("200 puts of 512 KiB never hit the 16 MiB quota")
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) == 0 {
		t.Fatalf("alarms after the quota: %v %v", alarms, err)
	}

	check := e.Etcdplay(t, "apply", harness.Playbook("maintenance.yml"), "--check")
	for _, want := range []string{"compact to revision", "defrag etcd", "leader, last", "disarm NOSPACE"} {
		if !strings.Contains(check.Stdout, want) {
			t.Errorf("maintenance --check (exit %d) lacks %q:\n%s%s", check.Code, want, check.Stdout, check.Stderr)
		}
	}
	if a, _ := cli.AlarmList(ctx); len(a.Alarms) == 0 {
		t.Fatal("--check disarmed the alarm")
	}

	// Seed 003's order: delete what is not needed (deletes are allowed
	// under NOSPACE), then compact, defrag and disarm.
	if _, err := cli.Delete(ctx, "fill/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	dbBefore := map[string]int64{}
	for _, h := range e.Lab.Hosts() {
		if st, err := cli.Status(ctx, e.Endpoints(h.Name)[0]); err == nil {
			dbBefore[h.Name] = st.DbSize
		}
	}
	o := e.MustApply(t, harness.Playbook("maintenance.yml"))
	if ev, ok := taskEvent(o, "etcd_defrag"); ok {
		t.Logf("defrag: %s", ev.Msg)
	}
	if !strings.Contains(o.Stdout, "3 members agree on the KV hash at revision") {
		t.Errorf("maintenance did not check the members' KV hashes:\n%s", o.Stdout)
	}
	if a, err := cli.AlarmList(ctx); err != nil || len(a.Alarms) != 0 {
		t.Errorf("alarms after maintenance: %v %v", a, err)
	}
	if _, err := cli.Put(ctx, "after-nospace", "ok"); err != nil {
		t.Errorf("write after maintenance: %v", err)
	}
	for _, h := range e.Lab.Hosts() {
		st, err := cli.Status(ctx, e.Endpoints(h.Name)[0])
		if err == nil {
			t.Logf("%s: db %d bytes before maintenance, %d after", h.Name, dbBefore[h.Name], st.DbSize)
		}
		if err != nil || st.DbSize > 8<<20 {
			t.Errorf("%s after maintenance: db %v bytes (%v), want it defragmented well under the quota", h.Name, st.DbSize, err)
		}
	}
	if again := e.MustApply(t, harness.Playbook("maintenance.yml")); again.Changed() != 0 {
		t.Errorf("maintenance again changed %d things:\n%s", again.Changed(), again.Stdout)
	}
}
