// Backup and disaster recovery on real lab hosts (issue 6), checked with
// etcd's own client. Lab blocks 30-39.
package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

const bkVersion = "v3.6.16"

func bkLab(t *testing.T, name string, block int) *harness.Env {
	t.Helper()
	url := harness.Mirror(t, bkVersion)
	l := lab.ForTest(t, lab.Options{Name: name, Block: block, Hosts: 3})
	e := harness.New(t, l)
	e.Vars["etcd_release_url"] = url
	return e
}

// TestDisasterRecovery: 10,000 keys, backup.yml, all three hosts killed and
// wiped, fresh hosts, site.yml, restore.yml: every key is back with its
// value on a healthy 3-member cluster, and site.yml stays a no-op after.
func TestDisasterRecovery(t *testing.T) {
	e := bkLab(t, "bk-dr", 30)
	ctx := context.Background()
	bkMustApply(t, e, harness.Playbook("site.yml"))
	const n = 10000
	putKeys(t, e.Client(t), n, "orig", 0)
	before := readCluster(t, e)

	o := bkMustApply(t, e, harness.Playbook("backup.yml"))
	files := backups(t, e)
	if len(files) != 1 {
		t.Fatalf("backups after backup.yml: %v", files)
	}
	snap := files[0]
	if ev, ok := taskEvent(o, "etcd_snapshot"); !ok || ev.Status != "changed" {
		t.Errorf("etcd_snapshot event: %+v", ev)
	}
	if !strings.Contains(filepath.Base(snap), "-rev") {
		t.Errorf("backup name %s", snap)
	}
	t.Logf("backup: %s", snap)

	for _, h := range e.Lab.Hosts() {
		if err := e.Lab.Wipe(ctx, h.Name); err != nil {
			t.Fatalf("wipe %s: %v", h.Name, err)
		}
		if got := hostGlob(t, e, h.Name, "var/lib/etcd*"); len(got) != 0 {
			t.Fatalf("%s not blank after wipe: %v", h.Name, got)
		}
	}
	bkMustApply(t, e, harness.Playbook("site.yml"))
	if got := countKeys(t, e); got != 0 {
		t.Fatalf("fresh cluster has %d keys", got)
	}

	// --check shows the plan and touches nothing.
	check := bkApply(t, e, harness.Playbook("restore.yml"), "--check", "--diff", "-e", "snapshot="+snap)
	if check.Code != 0 {
		t.Fatalf("restore --check: exit %d\n%s\n%s", check.Code, check.Summary(), check.Stderr)
	}
	for _, want := range []string{"/var/lib/etcd.pre-restore-", "etcd-restore-", "stop etcd on etcd1, etcd2, etcd3", "10000 keys"} {
		if !strings.Contains(check.Stdout, want) {
			t.Errorf("restore --check output lacks %q", want)
		}
	}
	for _, h := range e.Lab.Hosts() {
		if got := hostGlob(t, e, h.Name, "var/lib/etcd.*"); len(got) != 0 {
			t.Errorf("--check left %v on %s", got, h.Name)
		}
	}
	if got := countKeys(t, e); got != 0 {
		t.Fatalf("--check restored data: %d keys", got)
	}

	start := time.Now()
	r := bkMustApply(t, e, harness.Playbook("restore.yml"), "-e", "snapshot="+snap)
	t.Logf("restore took %s", time.Since(start))
	if ev, ok := taskEvent(r, "etcd_restore"); ok {
		t.Logf("restore: %s", ev.Msg)
	}
	checkKeys(t, e.Client(t), n, "orig", 0)
	after := readCluster(t, e)
	if after.Members != 3 || after.Healthy != 3 {
		t.Errorf("after restore: %+v, want 3 members, 3 healthy", after)
	}
	if after.ClusterID == before.ClusterID {
		t.Errorf("restored cluster kept the old cluster id %x: the token must be new", after.ClusterID)
	}
	for _, h := range e.Lab.Hosts() {
		if got := hostGlob(t, e, h.Name, "var/lib/etcd.pre-restore-*"); len(got) != 1 {
			t.Errorf("%s: moved-aside data dirs %v, want 1", h.Name, got)
		}
		if got := hostGlob(t, e, h.Name, "var/tmp/etcdplay/restore-*"); len(got) != 0 {
			t.Errorf("%s: uploaded snapshot left behind: %v", h.Name, got)
		}
	}
	if _, err := os.Stat(filepath.Join(e.StateDir, harness.ClusterName, "restores", "last.json")); err != nil {
		t.Errorf("restore record: %v", err)
	}
	again := bkMustApply(t, e, harness.Playbook("site.yml"))
	if c := again.Changed(); c != 0 {
		t.Errorf("site.yml after restore changed %d things, want 0:\n%s", c, again.Stdout)
	}
}

func countKeys(t *testing.T, e *harness.Env) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := e.Client(t).Get(ctx, "key/", clientv3WithPrefixCount()...)
	if err != nil {
		t.Fatalf("count keys: %v", err)
	}
	return resp.Count
}
