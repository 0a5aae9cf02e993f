package integration

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/modules/etcd/oplock"
)

// TestDefragTimer (and etcdplay ctl): maintenance.yml with etcd_defrag_schedule installs a
// timer on every member. Its service, started on real hosts against a
// real cluster, defragments its own member only, skips while etcdplay's
// operation lock is held, and two members started at once never
// defragment at the same time. Lab block 72.
func TestDefragTimer(t *testing.T) {
	e := labEnv(t, "it-defragtimer", 72, bootVersion)
	e.MustApply(t, harness.Playbook("site.yml"))

	// etcdplay ctl: the cluster's etcdctl, with the controller's client
	// certificate, against every member.
	if o := e.Ctl(t, "put", "via-ctl", "yes"); o.Code != 0 || !strings.Contains(o.Stdout, "OK") {
		t.Errorf("ctl put: exit %d\n%s%s", o.Code, o.Stdout, o.Stderr)
	}
	if o := e.Ctl(t, "endpoint", "health", "--cluster"); o.Code != 0 || strings.Count(o.Stdout+o.Stderr, "is healthy") != 3 {
		t.Errorf("ctl endpoint health --cluster: exit %d\n%s%s", o.Code, o.Stdout, o.Stderr)
	}
	if o := e.Ctl(t, "get", "no-such-command-flag", "--bogus"); o.Code == 0 {
		t.Errorf("ctl with a bad etcdctl flag exited 0:\n%s%s", o.Stdout, o.Stderr)
	}
	mustGet := e.Client(t)
	if r, err := mustGet.Get(context.Background(), "via-ctl"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "yes" {
		t.Errorf("via-ctl on the cluster: %v %v", r, err)
	}
	e.Vars["etcd_defrag_schedule"] = "weekly"
	e.Vars["etcd_defrag_free_above"] = "1MiB"
	o := e.MustApply(t, harness.Playbook("maintenance.yml"))
	if !strings.Contains(o.Stdout, "etcd-defrag.timer") {
		t.Errorf("maintenance.yml did not install the timer:\n%s", o.Stdout)
	}
	hosts := e.Lab.Hosts()
	for _, h := range hosts {
		if p := e.UnitProps(t, h.Name, "etcd-defrag.timer", "ActiveState", "UnitFileState"); p["ActiveState"] != "active" || p["UnitFileState"] != "enabled" {
			t.Errorf("%s: etcd-defrag.timer %v", h.Name, p)
		}
	}
	if o := e.MustApply(t, harness.Playbook("maintenance.yml")); o.Changed() != 0 {
		t.Errorf("second maintenance.yml changed %d", o.Changed())
	}

	// Free space inside every db: write, delete, compact.
	cli := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	value := strings.Repeat("x", 256<<10)
	for i := 0; i < 40; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("frag/%03d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Delete(ctx, "frag/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	size := func(h string) int64 {
		st, err := cli.Status(ctx, e.Endpoints(h)[0])
		if err != nil {
			t.Fatal(err)
		}
		return st.DbSize
	}
	// A member reports the pages a compaction freed (dbSize -
	// dbSizeInUse) only once a later write has committed: bbolt keeps
	// pages freed by the last commit pending until the next write
	// transaction. On this otherwise idle cluster, write until every
	// member reports the free space, as a live cluster's own traffic
	// would (a CI run caught etcd1 at 1 MB free while the others had
	// 11 MB, and its timer rightly skipped).
	deadline := time.Now().Add(30 * time.Second)
	for settle := 0; ; settle++ {
		if _, err := cli.Put(ctx, "frag-settle", fmt.Sprint(settle)); err != nil {
			t.Fatal(err)
		}
		var short []string
		for _, h := range hosts {
			st, err := cli.Status(ctx, e.Endpoints(h.Name)[0])
			if err != nil {
				t.Fatal(err)
			}
			if free := st.DbSize - st.DbSizeInUse; free < 4<<20 {
				short = append(short, fmt.Sprintf("%s %d of %d bytes free", h.Name, free, st.DbSize))
			}
		}
		if len(short) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the compaction, want 4 MiB free on every member: %s", strings.Join(short, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := map[string]int64{}
	for _, h := range hosts {
		before[h.Name] = size(h.Name)
	}
	run := func(h string) string {
		out, err := e.Lab.Run(ctx, h, "systemctl start etcd-defrag.service; journalctl -u etcd-defrag.service --no-pager -o cat | grep etcd-defrag: | tail -n 3")
		if err != nil {
			t.Fatalf("etcd-defrag.service on %s: %v\n%s", h, err, out)
		}
		return out
	}

	// One member: its db shrinks, the others' do not.
	out := run(hosts[0].Name)
	t.Logf("%s: %s", hosts[0].Name, out)
	if !strings.Contains(out, "defragmented") || size(hosts[0].Name) >= before[hosts[0].Name] {
		t.Errorf("%s not defragmented (%d -> %d):\n%s", hosts[0].Name, before[hosts[0].Name], size(hosts[0].Name), out)
	}
	for _, h := range hosts[1:] {
		if s := size(h.Name); s < before[h.Name] {
			t.Errorf("%s's timer defragmented %s too (%d -> %d)", hosts[0].Name, h.Name, before[h.Name], s)
		}
	}
	// Again: under the rule now, nothing to do.
	if out := run(hosts[0].Name); !strings.Contains(out, "the rule says no defrag") {
		t.Errorf("a second run on %s did not skip by the rule:\n%s", hosts[0].Name, out)
	}

	// The operation lock held (an etcdplay run): the timer skips.
	lease, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, oplock.Key, "test holds it", clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	if out := run(hosts[1].Name); !strings.Contains(out, "is held") || size(hosts[1].Name) < before[hosts[1].Name] {
		t.Errorf("%s defragmented while the operation lock was held:\n%s", hosts[1].Name, out)
	}
	if _, err := cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}

	// Two members at once: one at a time, or one skips.
	both := "systemctl start --no-block etcd-defrag.service"
	for _, h := range hosts[1:] {
		if out, err := e.Lab.Run(ctx, h.Name, both); err != nil {
			t.Fatalf("%s: %v %s", h.Name, err, out)
		}
	}
	type span struct{ start, end time.Time }
	spans := map[string]span{}
	lineRE := regexp.MustCompile(`(?m)^(\S+) .*etcd-defrag: .*: (defragmenting|defragmented)`)
	for _, h := range hosts[1:] {
		deadline := time.Now().Add(time.Minute)
		for {
			p := e.UnitProps(t, h.Name, "etcd-defrag.service", "ActiveState")
			if p["ActiveState"] == "inactive" || p["ActiveState"] == "failed" || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		out, _ := e.Lab.Run(ctx, h.Name, "journalctl -u etcd-defrag.service --no-pager -o short-iso-precise | grep etcd-defrag:")
		var sp span
		for _, m := range lineRE.FindAllStringSubmatch(out, -1) {
			ts, err := time.Parse("2006-01-02T15:04:05.999999-0700", m[1])
			if err != nil {
				ts, _ = time.Parse("2006-01-02T15:04:05.999999Z07:00", m[1])
			}
			if m[2] == "defragmenting" {
				sp.start = ts
			} else {
				sp.end = ts
			}
		}
		spans[h.Name] = sp
		t.Logf("%s: %v\n%s", h.Name, sp, out)
	}
	a, b := spans[hosts[1].Name], spans[hosts[2].Name]
	if !a.start.IsZero() && !b.start.IsZero() && a.start.Before(b.end) && b.start.Before(a.end) {
		t.Errorf("two members defragmented at once: %s %v, %s %v", hosts[1].Name, a, hosts[2].Name, b)
	}
	if a.start.IsZero() && b.start.IsZero() {
		t.Errorf("neither %s nor %s defragmented", hosts[1].Name, hosts[2].Name)
	}
	e.Vars["etcd_defrag_schedule"] = ""
	delete(e.Vars, "etcd_defrag_schedule")
	e.MustApply(t, harness.Playbook("maintenance.yml"))
	for _, h := range hosts {
		if p := e.UnitProps(t, h.Name, "etcd-defrag.timer", "LoadState"); p["LoadState"] != "not-found" {
			t.Errorf("%s: the timer is still there without etcd_defrag_schedule: %v", h.Name, p)
		}
	}
}
