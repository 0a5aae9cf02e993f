// Off-host, encrypted backups in a real S3-compatible store (versitygw on
// 127.0.0.1, built from the Go module proxy) and restores from it, on lab
// hosts, checked with etcd's own client (issue 15). Lab blocks 35-37.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/snapdb"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

// TestBackupToS3Encrypted: backup.yml uploads an age-encrypted snapshot
// and its metadata to the store over TLS with a custom CA; bad store
// settings and a wrong identity are refused before any member is touched;
// a watcher from before the restore gets a compaction error; after every
// host is wiped, restore.yml from the s3:// URL brings every key back.
func TestBackupToS3Encrypted(t *testing.T) {
	s3 := startS3(t, true)
	e := bkLab(t, "bk-s3", 35)
	ctx := context.Background()
	idFile, recipient := ageIdentity(t)
	plain := e.Inventory
	withStore := func(s3vars map[string]any) string {
		return inventoryWithVars(t, plain, map[string]any{
			"etcd_backup_s3":             s3vars,
			"etcd_backup_age_recipients": []any{recipient},
			"etcd_backup_age_identity":   idFile,
		})
	}
	e.MustApply(t, harness.Playbook("site.yml"))
	const n = 3000
	putKeys(t, e.Client(t), n, "orig", 0)

	// Bad store settings: a clear error, no snapshot anywhere.
	wrong := s3.vars("prod")
	badCreds := filepath.Join(t.TempDir(), "bad-credentials")
	os.WriteFile(badCreds, []byte("[default]\naws_access_key_id = "+s3.srv.AccessKey+"\naws_secret_access_key = not-the-secret\n"), 0o600)
	wrong["credentials_file"] = badCreds
	noBucket := s3.vars("prod")
	noBucket["bucket"] = "no-such-bucket"
	down := s3.vars("prod")
	down["endpoint"] = "https://127.0.0.1:1"
	for _, bad := range []struct {
		name string
		vars map[string]any
		want string
	}{
		{"wrong credentials", wrong, "refused the credentials"},
		{"missing bucket", noBucket, `bucket "no-such-bucket" does not exist`},
		{"unreachable endpoint", down, "cannot reach the store"},
	} {
		e.Inventory = withStore(bad.vars)
		o := e.Apply(t, harness.Playbook("backup.yml"))
		if o.Code == 0 || !strings.Contains(o.Summary(), bad.want) {
			t.Errorf("%s: exit %d, want an error saying %q:\n%s", bad.name, o.Code, bad.want, o.Summary())
		}
		if strings.Contains(o.Stdout+o.Stderr, s3.srv.SecretKey) {
			t.Errorf("%s: the secret key was printed", bad.name)
		}
	}
	if got := backups(t, e); len(got) != 0 {
		t.Fatalf("refused backups left snapshots on the controller: %v", got)
	}
	if got := s3.objects(t); len(got) != 0 {
		t.Fatalf("refused backups left objects: %v", got)
	}

	e.Inventory = withStore(s3.vars("prod"))
	o := e.MustApply(t, harness.Playbook("backup.yml"))
	ev, _ := taskEvent(o, "etcd_snapshot")
	t.Logf("backup: %s", ev.Msg)
	objs := s3.objects(t)
	if len(objs) != 2 || !strings.HasPrefix(objs[0], "prod/etcd/") || !strings.HasSuffix(objs[0], ".db.age") || !strings.HasSuffix(objs[1], ".json") {
		t.Fatalf("objects after backup.yml: %v, want prod/etcd/<name>.db.age and its .json", objs)
	}
	// The object is ciphertext: not a bbolt file, no key names in it.
	ct, err := os.ReadFile(s3.objectPath(objs[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(ct, []byte("age-encryption.org/v1")) || bytes.Contains(ct, []byte("key/000001")) {
		t.Errorf("the object is not age ciphertext")
	}
	if _, err := snapdb.Inspect(s3.objectPath(objs[0]), snapdb.Options{}); err == nil {
		t.Errorf("the encrypted object passes as a snapshot")
	}
	metaBytes, _ := os.ReadFile(s3.objectPath(objs[1]))
	meta, err := store.ParseMeta(metaBytes)
	if err != nil {
		t.Fatal(err)
	}
	local := backups(t, e)
	info, err := snapdb.Inspect(local[0], snapdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !meta.Encrypted || meta.SHA256 != info.SHA256 || meta.Revision != info.Revision || meta.Keys != n || meta.Cluster != harness.ClusterName || meta.ClusterID == "" || meta.EtcdVersion != strings.TrimPrefix(bkVersion, "v") {
		t.Errorf("metadata %+v, want encrypted, the plaintext's sha256 %s, revision %d, %d keys", meta, info.SHA256, info.Revision, n)
	}
	url := "s3://" + s3.Bucket + "/" + objs[0]

	// `etcdplay backups` lists the controller's copy and the store's.
	list := e.Etcdplay(t, "backups")
	if list.Code != 0 || !strings.Contains(list.Stdout, url) || !strings.Contains(list.Stdout, local[0]) {
		t.Errorf("etcdplay backups: exit %d\n%s%s", list.Code, list.Stdout, list.Stderr)
	}

	// verify-backup proves the object restores, on the controller alone;
	// a truncated copy in the bucket fails it. No member is touched.
	pids := etcdPIDs(t, e)
	v := e.MustApply(t, harness.Playbook("verify-backup.yml"), "-e", "snapshot="+url)
	if ev, ok := taskEvent(v, "etcd_verify_backup"); !ok || !strings.Contains(ev.Msg, "restores: etcd served revision") {
		t.Errorf("verify-backup: %+v", ev)
	}
	prom, _ := os.ReadFile(filepath.Join(e.StateDir, "backups", harness.ClusterName, "verify.prom"))
	if !strings.Contains(string(prom), "etcdplay_backup_verify_success{cluster=\"etcd\",snapshot=\""+url+"\"} 1") {
		t.Errorf("verify.prom after a good verification:\n%s", prom)
	}
	truncated := meta
	truncated.Time = meta.Time.Add(time.Second)
	bucket, err := store.OpenS3(store.S3Config{Endpoint: s3.srv.Endpoint, Bucket: s3.Bucket, Prefix: "prod", CAFile: s3.srv.CAFile, CredentialsFile: s3.Creds}, harness.ClusterName)
	if err != nil {
		t.Fatal(err)
	}
	if err := bucket.Put(ctx, truncated, bytes.NewReader(ct[:len(ct)/2]), int64(len(ct)/2)); err != nil {
		t.Fatal(err)
	}
	badURL := "s3://" + s3.Bucket + "/prod/" + harness.ClusterName + "/" + truncated.SnapshotName()
	v = e.Apply(t, harness.Playbook("verify-backup.yml"))
	if v.Code == 0 || !strings.Contains(v.Summary(), badURL) || !strings.Contains(v.Summary(), "does not restore") {
		t.Errorf("verify-backup of the newest, truncated object: exit %d\n%s", v.Code, v.Summary())
	}
	prom, _ = os.ReadFile(filepath.Join(e.StateDir, "backups", harness.ClusterName, "verify.prom"))
	if !strings.Contains(string(prom), "etcdplay_backup_verify_success{cluster=\"etcd\",snapshot=\""+badURL+"\"} 0") {
		t.Errorf("verify.prom after a failed verification:\n%s", prom)
	}
	if err := bucket.Remove(ctx, store.Entry{Name: truncated.SnapshotName()}); err != nil {
		t.Fatal(err)
	}
	if now := etcdPIDs(t, e); !maps.Equal(now, pids) {
		t.Errorf("verify-backup changed etcd processes: %v -> %v", pids, now)
	}
	if left, _ := filepath.Glob(filepath.Join(e.StateDir, harness.ClusterName, "verify", "*")); len(left) != 0 {
		t.Errorf("scratch dirs left: %v", left)
	}

	// Writes after the backup, and a watcher that has seen them.
	cli := e.Client(t)
	putKeys(t, cli, 10, "after", 0)
	resp, err := cli.Get(ctx, "key/")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	watch := cli.Watch(wctx, "key/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))

	// A wrong identity is refused before any member is touched.
	otherID, _ := ageIdentity(t)
	pids = etcdPIDs(t, e)
	bad := e.Apply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+url, "-e", "etcd_backup_age_identity="+otherID)
	if bad.Code == 0 || !strings.Contains(bad.Stdout, "is not one the backup was encrypted to") {
		t.Errorf("wrong identity: exit %d\n%s", bad.Code, bad.Summary())
	}
	if now := etcdPIDs(t, e); !maps.Equal(now, pids) {
		t.Errorf("a refused restore changed etcd processes: %v -> %v", pids, now)
	}

	// Restore the running cluster from the store: the watcher learns its
	// history was compacted instead of waiting in silence.
	r := e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+url)
	if ev, ok := taskEvent(r, "etcd_restore"); ok {
		t.Logf("restore: %s", ev.Msg)
	}
	checkKeys(t, e.Client(t), n, "orig", 0)
	select {
	case wr := <-watch:
		if wr.Err() != rpctypes.ErrCompacted || wr.CompactRevision < info.Revision+1_000_000_000 {
			t.Errorf("watcher after restore: err %v, compact revision %d; want ErrCompacted at %d", wr.Err(), wr.CompactRevision, info.Revision+1_000_000_000)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("watcher after restore: silence for 60s, want a compaction error")
	}
	cancelWatch()
	// The running cluster was snapshotted before it was replaced.
	if got := backups(t, e); len(got) != 2 {
		t.Errorf("controller backups after the restore: %v, want the first and the one before the restore", got)
	}
	if got := s3.objects(t); len(got) != 4 {
		t.Errorf("objects after the restore: %v, want two snapshots with metadata", got)
	}

	// A backup of the restored cluster (its revision bumped: etcdutl left
	// a marker at the new revision) verifies: the marker is no key.
	e.MustApply(t, harness.Playbook("backup.yml"))
	if v := e.MustApply(t, harness.Playbook("verify-backup.yml")); v.Code != 0 {
		t.Errorf("verify-backup of the restored cluster's backup: exit %d", v.Code)
	}

	// The first snapshot again, onto the restored cluster: it is older
	// than revisions clients have seen since (the first restore's, 1e9
	// up), so the bump grows and the revision still only goes up.
	seen, err := e.Client(t).Get(ctx, "key/000001")
	if err != nil {
		t.Fatal(err)
	}
	e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+url)
	again, err := e.Client(t).Get(ctx, "key/000001")
	if err != nil {
		t.Fatal(err)
	}
	if again.Header.Revision <= seen.Header.Revision {
		t.Errorf("restoring an older snapshot moved the revision back: %d after %d", again.Header.Revision, seen.Header.Revision)
	}
	checkKeys(t, e.Client(t), n, "orig", 0)

	// Disaster: every host wiped, the controller's backups gone too;
	// restore from the store alone.
	for _, h := range e.Lab.Hosts() {
		if err := e.Lab.Wipe(ctx, h.Name); err != nil {
			t.Fatalf("wipe %s: %v", h.Name, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(e.StateDir, "backups")); err != nil {
		t.Fatal(err)
	}
	e.MustApply(t, harness.Playbook("site.yml"))
	e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+url)
	checkKeys(t, e.Client(t), n, "orig", 0)
	st := readCluster(t, e)
	if st.Members != 3 || st.Healthy != 3 {
		t.Errorf("after restore from the store: %+v", st)
	}
	got, err := e.Client(t).Get(ctx, "key/000001")
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Revision < info.Revision+1_000_000_000 {
		t.Errorf("revision after restore %d, want at least %d (bumped)", got.Header.Revision, info.Revision+1_000_000_000)
	}
	var rec map[string]any
	b, _ := os.ReadFile(filepath.Join(e.StateDir, harness.ClusterName, "restores", "last.json"))
	if json.Unmarshal(b, &rec) != nil || rec["snapshot"] != url {
		t.Errorf("restore record %s, want snapshot %s", b, url)
	}
	if left, _ := filepath.Glob(filepath.Join(e.StateDir, "backups", harness.ClusterName, ".fetch", "*")); len(left) != 0 {
		t.Errorf("decrypted download left on the controller: %v", left)
	}
}

// TestHostTimerToS3: a member's timer proves each snapshot restores
// (etcd_backup_verify), uploads it encrypted to the store, and its
// retention, over a month of backups already in the
// bucket (their times injected in the metadata), keeps exactly the tiers
// asked: the newest 2, one a day for 7 days, one a month for 3 months.
func TestHostTimerToS3(t *testing.T) {
	s3 := startS3(t, false)
	e := bkLab(t, "bk-s3-timer", 36)
	ctx := context.Background()
	e.MustApply(t, harness.Playbook("site.yml"))
	putKeys(t, e.Client(t), 200, "t", 0)
	_, recipient := ageIdentity(t)

	// A month and more of etcd1's timer's backups, one a day at noon,
	// yesterday back to 40 days ago; and one of another member's timer,
	// which etcd1's retention must leave alone.
	snap := takeSnapshot(t, e)
	cfg := store.S3Config{Endpoint: s3.srv.Endpoint, Bucket: s3.Bucket, Prefix: "timers", CredentialsFile: s3.Creds}
	bucket, err := store.OpenS3(cfg, harness.ClusterName)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	var injected []time.Time
	put := func(origin, member string, at time.Time) {
		m := store.Meta{Cluster: harness.ClusterName, Member: member, Revision: snap.Revision, Keys: snap.Keys, SHA256: snap.SHA256,
			Size: snap.Size, Time: at, Origin: origin, Verified: true}
		f, _ := os.Open(snap.Path)
		defer f.Close()
		if err := bucket.Put(ctx, m, f, snap.Size); err != nil {
			t.Fatal(err)
		}
	}
	for d := 1; d <= 40; d++ {
		at := today.AddDate(0, 0, -d).Add(12 * time.Hour)
		injected = append(injected, at)
		put("host:etcd1", "etcd1", at)
	}
	put("host:etcd2", "etcd2", today.AddDate(0, 0, -30))

	withS3 := inventoryWithVars(t, e.Inventory, map[string]any{
		"etcd_backup_s3":             s3.vars("timers"),
		"etcd_backup_age_recipients": []any{recipient},
		"etcd_backup_retention":      map[string]any{"last": 2, "daily": 7, "monthly": 3},
	})
	e.Inventory = inventoryWithHostVars(t, withS3, "etcd1", map[string]any{"etcd_backup_schedule": "*:*:0/5", "etcd_backup_verify": true})
	e.MustApply(t, harness.Playbook("backup.yml"))

	// Wait for three runs of the timer to upload.
	var ours []store.Entry
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		uploads := 0
		if f, err := os.ReadDir(s3.objectPath("timers/" + harness.ClusterName)); err == nil {
			for _, de := range f {
				if strings.HasSuffix(de.Name(), ".db.age") {
					uploads++
				}
			}
		}
		if uploads >= 3 {
			break
		}
		time.Sleep(time.Second)
	}
	// Each run proved its snapshot restores before uploading it.
	if out, _ := e.Lab.Run(ctx, "etcd1", "journalctl -u etcd-backup.service --no-pager -o cat"); !strings.Contains(out, "restored into a throw-away etcd on 127.0.0.1: it served revision") {
		t.Errorf("the timer's runs did not prove their snapshots (etcd_backup_verify):\n%s", tail(out, 20))
	}
	// The member holds the store's credentials for its etcd user only.
	out, err := e.Lab.Run(ctx, "etcd1", "stat -c '%U %a' /etc/etcdplay/s3-credentials")
	if err != nil || strings.TrimSpace(out) != "etcd 600" {
		t.Errorf("credentials on the member: %q %v", out, err)
	}
	// Stop the timer (dropping the schedule) so that the bucket holds
	// still, then read it. Its credentials go with it.
	e.Inventory = withS3
	e.MustApply(t, harness.Playbook("backup.yml"))
	if out, _ := e.Lab.Run(ctx, "etcd1", "systemctl is-active etcd-backup.service || true"); strings.TrimSpace(out) == "active" || strings.TrimSpace(out) == "activating" {
		t.Fatalf("backup service still running after the timer was removed")
	}
	if got := hostGlob(t, e, "etcd1", "etc/etcdplay/s3-credentials"); len(got) != 0 {
		t.Errorf("the store's credentials stayed on etcd1 after its timer was removed")
	}
	all, err := bucket.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var uploaded int
	for _, e := range all {
		if e.Meta.Origin == "host:etcd1" {
			ours = append(ours, e)
			if e.Meta.Time.After(today) && e.Meta.Encrypted && e.HasMeta && e.Meta.Keys == 200 {
				uploaded++
			}
		}
	}
	// etcdplay backups lists the store's copies and etcd1's local ones.
	list := e.Etcdplay(t, "backups", "-o", "json")
	var rows []struct {
		Location string     `json:"location"`
		Meta     store.Meta `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(list.Stdout), &rows); err != nil || list.Code != 0 {
		t.Fatalf("etcdplay backups -o json: exit %d, %v\n%s%s", list.Code, err, list.Stdout, list.Stderr)
	}
	var local, stored int
	for _, r := range rows {
		switch {
		case strings.HasPrefix(r.Location, "etcd1:/var/backups/etcd/") && r.Meta.Origin == "host:etcd1":
			local++
		case strings.HasPrefix(r.Location, "s3://"+s3.Bucket+"/timers/") && r.Meta.Origin == "host:etcd1":
			stored++
		}
	}
	if local != 2 || stored != len(ours) {
		t.Errorf("etcdplay backups: %d of etcd1's local snapshots (want 2), %d in the store (want %d)", local, stored, len(ours))
	}
	if uploaded < 2 {
		out, _ := e.Lab.Run(ctx, "etcd1", "journalctl -u etcd-backup.service -n 30 --no-pager")
		t.Fatalf("the timer's encrypted uploads from today: %d, want at least 2\n%s", uploaded, out)
	}

	// What the tiers keep, worked out by hand: today's newest two (last
	// 2; today's daily and this month's monthly fall on the newest);
	// the injected noons of the 6 days before today (daily 7); and the
	// newest injected day of each of the 2 months before this one that
	// has any (monthly 3), when not already kept.
	want := map[string]bool{}
	for _, at := range injected {
		if at.After(today.AddDate(0, 0, -6)) {
			want[at.Format(time.RFC3339)] = true
		}
	}
	months := 0
	for m := 1; months < 2 && m <= 3; m++ {
		first := time.Date(today.Year(), today.Month()-time.Month(m), 1, 0, 0, 0, 0, time.UTC)
		var newest time.Time
		for _, at := range injected {
			if !at.Before(first) && at.Before(first.AddDate(0, 1, 0)) && at.After(newest) {
				newest = at
			}
		}
		if !newest.IsZero() {
			want[newest.Format(time.RFC3339)] = true
			months++
		}
	}
	var gotOld []string
	var gotToday int
	for _, e := range ours {
		if e.Meta.Time.After(today) {
			gotToday++
			continue
		}
		gotOld = append(gotOld, e.Meta.Time.Format(time.RFC3339))
	}
	if gotToday != 2 {
		t.Errorf("today's backups kept: %d, want 2 (last: 2)", gotToday)
	}
	for _, g := range gotOld {
		if !want[g] {
			t.Errorf("kept %s, which no tier asks for", g)
		}
		delete(want, g)
	}
	for w := range want {
		t.Errorf("removed %s, which a tier keeps", w)
	}
	other := 0
	for _, e := range all {
		if e.Meta.Origin == "host:etcd2" {
			other++
		}
	}
	if other != 1 {
		t.Errorf("another timer's backup was touched: %d left", other)
	}
	// Locally, the same policy over the timer's own snapshots: today's two.
	if got := hostGlob(t, e, "etcd1", "var/backups/etcd/*-rev*.db"); len(got) != 2 {
		t.Errorf("local snapshots on etcd1: %v, want 2", got)
	}
}

// takeSnapshot runs backup.yml and returns what it took.
func takeSnapshot(t *testing.T, e *harness.Env) *snapdb.Info {
	t.Helper()
	e.MustApply(t, harness.Playbook("backup.yml"))
	files := backups(t, e)
	info, err := snapdb.Inspect(files[len(files)-1], snapdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return info
}
