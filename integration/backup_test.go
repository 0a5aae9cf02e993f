// Backup and disaster recovery on real lab hosts (issue 6), checked with
// etcd's own client. Lab blocks 30-39.
package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

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
	e.MustApply(t, harness.Playbook("site.yml"))
	const n = 10000
	putKeys(t, e.Client(t), n, "orig", 0)
	before := readCluster(t, e)

	// --check names the member and the place, and takes no snapshot.
	check := e.MustApply(t, harness.Playbook("backup.yml"), "--check")
	if !strings.Contains(check.Stdout, "a healthy follower") || !strings.Contains(check.Stdout, filepath.Join(e.StateDir, "backups", "etcd")) {
		t.Errorf("backup --check does not say which member and where:\n%s", check.Stdout)
	}
	if files := backups(t, e); len(files) != 0 {
		t.Fatalf("backup --check took a snapshot: %v", files)
	}
	o := e.MustApply(t, harness.Playbook("backup.yml"))
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
	e.MustApply(t, harness.Playbook("site.yml"))
	if got := countKeys(t, e); got != 0 {
		t.Fatalf("fresh cluster has %d keys", got)
	}

	// --check shows the plan and touches nothing.
	untouched := e.CheckSnapshot(t)
	check = e.Apply(t, harness.Playbook("restore.yml"), "--check", "--diff", "-e", "snapshot="+snap)
	e.Unchanged(t, untouched, "restore --check")
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
	r := e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+snap)
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
	again := e.MustApply(t, harness.Playbook("site.yml"))
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

// TestRestoreRunningCluster restores onto the same, still running cluster:
// damaged snapshots are refused before any member is stopped; a good one
// rolls the data back and the old data dirs stay on disk; a db without its
// hash is accepted with skip_hash_check.
func TestRestoreRunningCluster(t *testing.T) {
	e := bkLab(t, "bk-roll", 31)
	e.MustApply(t, harness.Playbook("site.yml"))
	cli := e.Client(t)
	putKeys(t, cli, 500, "v1", 0)
	e.MustApply(t, harness.Playbook("backup.yml"))
	files := backups(t, e)
	if len(files) != 1 {
		t.Fatalf("backups: %v", files)
	}
	snap := files[0]
	putKeys(t, cli, 600, "v2", 0)

	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/3] ^= 0x55
	pids := etcdPIDs(t, e)
	for _, bad := range []struct{ name, path, why string }{
		{"truncated", write("truncated.db", data[:len(data)/2]), "no integrity hash"},
		{"corrupted", write("corrupted.db", flipped), "integrity hash mismatch"},
		{"no hash", write("nohash.db", data[:len(data)-32]), "no integrity hash"},
	} {
		o := e.Apply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+bad.path)
		if o.Code == 0 {
			t.Fatalf("%s snapshot restored", bad.name)
		}
		if !strings.Contains(o.Stdout, "refusing") || !strings.Contains(o.Stdout, bad.why) {
			t.Errorf("%s snapshot: the output does not say why (%q):\n%s", bad.name, bad.why, o.Summary())
		}
	}
	if now := etcdPIDs(t, e); !maps.Equal(now, pids) {
		t.Errorf("etcd processes changed by refused restores: %v -> %v", pids, now)
	}
	for _, h := range e.Lab.Hosts() {
		if got := hostGlob(t, e, h.Name, "var/lib/etcd.*"); len(got) != 0 {
			t.Errorf("refused restores left %v on %s", got, h.Name)
		}
	}
	checkKeys(t, cli, 600, "v2", 0)

	e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+snap)
	cli = e.Client(t)
	checkKeys(t, cli, 500, "v1", 0)
	for _, h := range e.Lab.Hosts() {
		aside := hostGlob(t, e, h.Name, "var/lib/etcd.pre-restore-*")
		if len(aside) != 1 {
			t.Fatalf("%s: moved-aside dirs %v", h.Name, aside)
		}
		// The old data is intact where it was moved: its db still holds
		// the v2 keys.
		if got := hostGlob(t, e, h.Name, strings.TrimPrefix(aside[0], "/")+"/member/snap/db"); len(got) != 1 {
			t.Errorf("%s: %s has no db", h.Name, aside[0])
		}
	}
	if st := readCluster(t, e); st.Members != 3 || st.Healthy != 3 {
		t.Errorf("after restore: %+v", st)
	}

	// A db without its hash (as copied out of a data dir) with skip_hash_check.
	putKeys(t, cli, 700, "v3", 0)
	time.Sleep(time.Second) // a new timestamp for the second restore's dirs
	e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+filepath.Join(dir, "nohash.db"), "-e", "skip_hash_check=true")
	checkKeys(t, e.Client(t), 500, "v1", 0)
	for _, h := range e.Lab.Hosts() {
		if got := hostGlob(t, e, h.Name, "var/lib/etcd.pre-restore-*"); len(got) != 2 {
			t.Errorf("%s: moved-aside dirs after two restores: %v", h.Name, got)
		}
	}

	restoreUnderWrites(t, e)
}

// restoreUnderWrites restores a backup nearly a bump older than the live
// revision while a client keeps writing to the old cluster until its
// members stop (the soak's seed 20261203, iteration 74, with a test-sized
// bump): no revision the old cluster acknowledged may be served again by
// the restored one. etcd's view: a read at the old cluster's highest
// acknowledged revision, on the restored cluster, must say "compacted".
func restoreUnderWrites(t *testing.T, e *harness.Env) {
	time.Sleep(time.Second) // a new timestamp for this restore's dirs
	e.MustApply(t, harness.Playbook("backup.yml"))
	files := backups(t, e)
	sort.Strings(files)
	snap := files[len(files)-1]
	cli := e.Client(t)
	const after = 2000
	putKeys(t, cli, after, "v4", 0)
	old, err := cli.Get(context.Background(), "health")
	if err != nil {
		t.Fatal(err)
	}
	oldCluster := old.Header.ClusterId

	ctx, stop := context.WithCancel(context.Background())
	var highest atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := cli.Put(wctx, fmt.Sprintf("during/%06d", i), "x")
			cancel()
			if err == nil && resp.Header.ClusterId == oldCluster && resp.Header.Revision > highest.Load() {
				highest.Store(resp.Header.Revision)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	// The snapshot is `after` revisions behind: a bump of after+30
	// counted from the snapshot would leave the old cluster 30 writes
	// (well under a second of this writer) between the plan and the members' stop.
	e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+snap, "-e", fmt.Sprintf("bump_revision=%d", after+30))
	stop()
	<-done
	if highest.Load() <= old.Header.Revision {
		t.Fatalf("the old cluster acknowledged no write during the restore (highest %d): the test proves nothing", highest.Load())
	}
	rcli := e.Client(t)
	_, err = rcli.Get(context.Background(), "health", clientv3.WithRev(highest.Load()))
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("the restored cluster at revision %d, the old cluster's last acknowledged write: %v, want %q (a revision served twice)",
			highest.Load(), err, rpctypes.ErrCompacted)
	}
}

// etcdPIDs maps each host to its etcd main PID and start time.
func etcdPIDs(t *testing.T, e *harness.Env) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range e.Lab.Hosts() {
		s, err := e.Lab.Run(context.Background(), h.Name, "systemctl show etcd.service -p MainPID -p ExecMainStartTimestampMonotonic -p ActiveState")
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		out[h.Name] = strings.Join(strings.Fields(s), " ")
	}
	return out
}

// TestBackupTimer installs the scheduled local snapshots on one chosen
// member with a 5-second schedule: real snapshots appear on that host and
// are pruned to the retention; the other members get no timer; a second
// run changes nothing; dropping the schedule removes the timer and keeps
// the snapshots.
func TestBackupTimer(t *testing.T) {
	e := bkLab(t, "bk-timer", 32)
	ctx := context.Background()
	e.MustApply(t, harness.Playbook("site.yml"))
	// site.yml runs nothing that needs etcdplay whole: every member got
	// the lean agent. backup.yml's timer installs its agent as the job's
	// program, so its hosts get etcdplay itself (and the timer's runs
	// below prove that program is whole: the lean agent has no
	// backup-host).
	lean, full := harness.LeanAgentFileName(t), harness.AgentFileName(t, harness.Binary(t))
	for _, h := range []string{"etcd1", "etcd2", "etcd3"} {
		if got := hostGlob(t, e, h, "var/lib/etcdplay/agent/etcdplay-agent-*[^k]"); len(got) != 1 || filepath.Base(got[0]) != lean {
			t.Errorf("after site.yml, %s has agents %v, want only the lean one %s", h, got, lean)
		}
	}
	putKeys(t, e.Client(t), 100, "t", 0)
	plain := e.Inventory
	e.Inventory = inventoryWithHostVars(t, plain, "etcd2", map[string]any{
		"etcd_backup_schedule":   "*:*:0/5",
		"etcd_backup_local_keep": 3,
		"etcd_backup_dir":        "/var/backups/etcd-local",
	})
	o := e.MustApply(t, harness.Playbook("backup.yml"))
	if r := o.Recap["etcd1"]; r.Failed != 0 {
		t.Fatalf("recap %+v", o.Recap)
	}
	for _, h := range []string{"etcd1", "etcd2", "etcd3"} {
		if got := hostGlob(t, e, h, "var/lib/etcdplay/agent/"+full); len(got) != 1 {
			t.Errorf("after backup.yml, %s has no full agent %s", h, full)
		}
	}

	// Wait for at least 5 runs, then exactly 3 files must remain.
	seen := map[string]bool{}
	deadline := time.Now().Add(90 * time.Second)
	var now []string
	for time.Now().Before(deadline) {
		now = hostGlob(t, e, "etcd2", "var/backups/etcd-local/*-rev*.db")
		for _, f := range now {
			seen[f] = true
		}
		if len(seen) >= 5 {
			break
		}
		time.Sleep(time.Second)
	}
	if len(seen) < 5 {
		out, _ := e.Lab.Run(ctx, "etcd2", "systemctl status etcd-backup.timer etcd-backup.service --no-pager; journalctl -u etcd-backup.service -n 20 --no-pager")
		t.Fatalf("only %d snapshots in 90s: %v\n%s", len(seen), now, out)
	}
	time.Sleep(time.Second) // let the run that made the 5th file prune
	now = hostGlob(t, e, "etcd2", "var/backups/etcd-local/*-rev*.db")
	if len(now) != 3 {
		t.Errorf("%d local snapshots after %d runs, want 3 (etcd_backup_local_keep): %v", len(now), len(seen), now)
	}
	root, _ := e.Lab.HostRoot("etcd2")
	newest := now[len(now)-1]
	info, err := snapdbInspect(filepath.Join(root, newest))
	if err != nil {
		t.Fatalf("local snapshot %s: %v", newest, err)
	}
	if info.Keys != 100 {
		t.Errorf("local snapshot %s holds %d keys, want 100", newest, info.Keys)
	}
	out, err := e.Lab.Run(ctx, "etcd2", "stat -c '%U %a' /var/backups/etcd-local "+newest)
	if err != nil || strings.Count(out, "etcd 700") != 1 || strings.Count(out, "etcd 600") != 1 {
		t.Errorf("ownership and modes: %q %v", out, err)
	}
	for _, h := range []string{"etcd1", "etcd3"} {
		if got := hostGlob(t, e, h, "etc/systemd/system/etcd-backup.*"); len(got) != 0 {
			t.Errorf("%s has %v without etcd_backup_schedule", h, got)
		}
	}

	again := e.MustApply(t, harness.Playbook("backup.yml"))
	for _, ev := range again.Events {
		if ev.Module == "etcd_backup_timer" && ev.Status != "ok" && ev.Status != "" {
			t.Errorf("second run: etcd_backup_timer on %s: %s %s", ev.Host, ev.Status, ev.Msg)
		}
	}

	e.Inventory = plain
	e.MustApply(t, harness.Playbook("backup.yml"))
	if got := hostGlob(t, e, "etcd2", "etc/systemd/system/etcd-backup.*"); len(got) != 0 {
		t.Errorf("timer left after the schedule was dropped: %v", got)
	}
	if out, _ := e.Lab.Run(ctx, "etcd2", "systemctl is-active etcd-backup.timer || true"); strings.TrimSpace(out) == "active" {
		t.Errorf("timer still active")
	}
	if got := hostGlob(t, e, "etcd2", "var/backups/etcd-local/*-rev*.db"); len(got) < 3 {
		t.Errorf("snapshots removed with the timer: %v", got)
	}
}

// TestRestoreSeparateWAL restores a cluster whose WAL lives outside the
// data dir (etcd_wal_dir): both dirs are moved aside and replaced. The WAL
// dir sits in its own etcd-owned directory, as on a dedicated WAL disk:
// etcd creates <wal-dir>.tmp beside it at bootstrap, so that parent must be
// writable by etcd.
func TestRestoreSeparateWAL(t *testing.T) {
	e := bkLab(t, "bk-wal", 34)
	for _, h := range e.Lab.Hosts() {
		if out, err := e.Lab.Run(context.Background(), h.Name,
			"useradd --system --home-dir /var/lib/etcd --shell /usr/sbin/nologin etcd && install -d -o etcd -g etcd -m 0700 /var/lib/etcd-wal"); err != nil {
			t.Fatalf("%s: %v\n%s", h.Name, err, out)
		}
	}
	e.Vars["etcd_wal_dir"] = "/var/lib/etcd-wal/wal"
	e.MustApply(t, harness.Playbook("site.yml"))
	cli := e.Client(t)
	putKeys(t, cli, 100, "w1", 0)
	e.MustApply(t, harness.Playbook("backup.yml"))
	if files := backups(t, e); len(files) != 1 {
		t.Fatalf("backups: %v", files)
	}
	putKeys(t, cli, 150, "w2", 0)
	e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot=latest")
	checkKeys(t, e.Client(t), 100, "w1", 0)
	for _, h := range e.Lab.Hosts() {
		for _, pat := range []string{"var/lib/etcd.pre-restore-*", "var/lib/etcd-wal/wal.pre-restore-*", "var/lib/etcd-wal/wal/*.wal"} {
			if got := hostGlob(t, e, h.Name, pat); len(got) == 0 {
				t.Errorf("%s: nothing matches %s", h.Name, pat)
			}
		}
		if got := hostGlob(t, e, h.Name, "var/lib/etcd/member/wal"); len(got) != 0 {
			t.Errorf("%s: a WAL inside the data dir although etcd_wal_dir is set: %v", h.Name, got)
		}
	}
	if again := e.MustApply(t, harness.Playbook("site.yml")); again.Changed() != 0 {
		t.Errorf("site.yml after restore changed %d things", again.Changed())
	}
}
