// Production safety on real lab hosts (issue 10): what a real estate does
// to a running cluster, checked with etcd's own client. Lab blocks 60-69.
package integration

import (
	"context"
	"fmt"
	"maps"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// TestLostStateDirNeverReplacesCA: a second operator without the state dir
// (or with the cluster renamed) runs site.yml against a healthy TLS
// cluster. Before the fix this made a new CA and pushed it with new leaf
// certificates to every member, and the cluster stopped answering. Now the
// run refuses before any host changes, says how to recover, and the
// cluster keeps serving the original certificates.
func TestLostStateDirNeverReplacesCA(t *testing.T) {
	e := labEnv(t, "it-lost-state", 60, bootVersion)
	l := e.Lab
	e.MustApply(t, harness.Playbook("site.yml"))
	cli := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.Put(ctx, "safety/ca", "kept"); err != nil {
		t.Fatal(err)
	}
	dirs := []string{"/etc", "/usr/local", "/opt"}
	before := e.SnapshotAll(t, dirs...)

	stranger := &harness.Env{Lab: l, StateDir: t.TempDir(), Inventory: e.Inventory, Vars: map[string]string{"etcd_release_url": e.Vars["etcd_release_url"]}}
	cases := []struct {
		name  string
		env   *harness.Env
		extra []string
	}{
		{"empty state dir, check", stranger, []string{"--check", "--diff"}},
		{"empty state dir", stranger, nil},
		{"cluster renamed", e, []string{"-e", "etcd_cluster_name=renamed"}},
	}
	for _, tc := range cases {
		o := tc.env.Apply(t, harness.Playbook("site.yml"), tc.extra...)
		if o.Code == 0 {
			t.Fatalf("%s: site.yml succeeded against a cluster whose CA the controller does not have:\n%s", tc.name, o.Stdout)
		}
		out := o.Summary()
		for _, want := range []string{"already trusts the CA in /etc/etcd/pki/ca.crt", "nothing was changed", "--state-dir", "etcd_ca_cert=PATH"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the refusal does not say %q:\n%s", tc.name, want, out)
			}
		}
		if changed := e.ChangedSince(t, before, dirs...); len(changed) != 0 {
			t.Fatalf("%s: the refused run changed hosts:\n%s", tc.name, strings.Join(changed, "\n"))
		}
	}

	// The cluster never noticed: every member answers over the original
	// certificates, and the owner's state dir still converges with no change.
	for _, h := range l.Hosts() {
		c := e.Client(t, e.Endpoints(h.Name)...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.Get(ctx, "safety/ca")
		cancel()
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
			t.Errorf("%s after the refused runs: %v %v", h.Name, resp, err)
		}
	}
	if again := e.MustApply(t, harness.Playbook("site.yml")); again.Changed() != 0 {
		t.Errorf("site.yml with the original state dir changed %d things:\n%s", again.Changed(), again.Stdout)
	}
}

// mountDataDir gives every lab host a data dir on a filesystem of its own
// (a tmpfs standing in for the dedicated disk etcd's docs recommend), with
// the lost+found a fresh ext4 has.
func mountDataDir(t *testing.T, l *lab.Lab, hosts ...string) {
	t.Helper()
	for _, h := range hosts {
		out, err := l.Run(context.Background(), h, "mkdir -p /var/lib/etcd && mount -t tmpfs -o size=1g,mode=0700 etcd-disk /var/lib/etcd && mkdir /var/lib/etcd/lost+found")
		if err != nil {
			t.Fatalf("mount a data disk on %s: %v\n%s", h, err, out)
		}
	}
}

// assertMounted checks the data dir is still the mount point, with
// lost+found and the given globs inside it.
func assertMounted(t *testing.T, l *lab.Lab, host string, globs ...string) {
	t.Helper()
	out, err := l.Run(context.Background(), host, "mountpoint /var/lib/etcd && ls -d /var/lib/etcd/lost+found "+strings.Join(globs, " "))
	if err != nil {
		t.Errorf("%s: data disk after the run: %v\n%s", host, err, out)
	}
}

// TestDataDirOnOwnMount: restore, scale-in and scale-out of a member
// whose data dir is a mount point. Before the fix the restore stopped
// every member and then failed to rename the mount point (EBUSY), leaving
// the cluster down; scale-in failed to move the retired member's data.
// Now the data moves aside inside the mount, nothing is deleted, and the
// cluster serves exactly the snapshot's keys.
func TestDataDirOnOwnMount(t *testing.T) {
	e := labEnv(t, "it-mount", 61, bootVersion)
	l := e.Lab
	e.Vars["etcd_min_free_disk"] = "256MiB" // the tmpfs "disk" is small
	mountDataDir(t, l, "etcd1", "etcd2", "etcd3")
	e.MustApply(t, harness.Playbook("site.yml"))
	putKeys(t, e.Client(t), 200, "snap", 0)
	e.MustApply(t, harness.Playbook("backup.yml"))
	files := backups(t, e)
	if len(files) != 1 {
		t.Fatalf("backups: %v", files)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.Client(t).Put(ctx, "after-backup", "gone after restore"); err != nil {
		t.Fatal(err)
	}

	restoreRefusedOnFullDisks(t, e, files[0])

	check := e.Apply(t, harness.Playbook("restore.yml"), "--check", "-e", "snapshot="+files[0])
	if check.Code != 0 || !strings.Contains(check.Stdout, "moved aside to /var/lib/etcd/etcd.pre-restore-") {
		t.Fatalf("restore --check (exit %d) does not show the move inside the mount:\n%s", check.Code, check.Stdout)
	}
	r := e.Apply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+files[0])
	if r.Code != 0 {
		t.Fatalf("restore onto mounted data dirs: exit %d\n%s\n%s", r.Code, r.Summary(), r.Stderr)
	}
	checkKeys(t, e.Client(t), 200, "snap", 0)
	if resp, err := e.Client(t).Get(ctx, "after-backup"); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("a key written after the backup survived the restore: %v %v", resp, err)
	}
	for _, h := range []string{"etcd1", "etcd2", "etcd3"} {
		assertMounted(t, l, h, "/var/lib/etcd/member", "/var/lib/etcd/etcd.pre-restore-*/member/snap/db")
	}
	if st := readCluster(t, e); st.Members != 3 || st.Healthy != 3 {
		t.Errorf("after restore: %+v", st)
	}
	if again := e.MustApply(t, harness.Playbook("site.yml")); again.Changed() != 0 {
		t.Errorf("site.yml after the restore changed %d things:\n%s", again.Changed(), again.Stdout)
	}

	// Scale-in retires etcd3: its data moves aside inside the mount.
	e.MustApply(t, harness.Playbook("scale-in.yml"), "-e", "remove=etcd3")
	assertMounted(t, l, "etcd3", "/var/lib/etcd/etcd.*Z/member")
	if out, _ := l.Run(ctx, "etcd3", "ls /var/lib/etcd"); strings.Contains(out, "member\n") && !strings.Contains(out, "etcd.") {
		t.Errorf("etcd3's data was not moved aside:\n%s", out)
	}
	// ... and joins again as a new member, on the same disk.
	e.MustApply(t, harness.Playbook("scale-out.yml"))
	if st := readCluster(t, e); st.Members != 3 || st.Healthy != 3 {
		t.Errorf("after scale-out: %+v", st)
	}
	checkKeys(t, e.Client(t, e.Endpoints("etcd3")...), 200, "snap", 0)
	assertMounted(t, l, "etcd3", "/var/lib/etcd/member", "/var/lib/etcd/etcd.*Z/member")
}

// restoreRefusedOnFullDisks: etcd2's upload dir is a filesystem with no
// byte left, etcd3's data disk has less free than the restored db needs.
// Before the fix a full upload filesystem (0 bytes free) passed the check
// (0 read as "not measured"). Now the plan refuses, naming both hosts'
// filesystems, before any member stops or anything is written; with the
// disks freed the restore goes on.
func restoreRefusedOnFullDisks(t *testing.T, e *harness.Env, snap string) {
	t.Helper()
	l := e.Lab
	l.MustRun(t, "etcd2", "mkdir -p /var/tmp/etcdplay && mount -t tmpfs -o size=1m,mode=0700 upload-disk /var/tmp/etcdplay && "+
		"{ dd if=/dev/zero of=/var/tmp/etcdplay/filler bs=64k 2>/dev/null; test \"$(df --output=avail /var/tmp/etcdplay | tail -1)\" -eq 0; }")
	l.MustRun(t, "etcd3", "fallocate -l $(( $(df --output=avail -B1 /var/lib/etcd | tail -1) - 16*1024*1024 )) /var/lib/etcd/filler")
	pids := etcdPIDs(t, e)

	o := e.Apply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+snap)
	if o.Code == 0 {
		t.Fatalf("restore onto full disks succeeded:\n%s", o.Stdout)
	}
	for _, want := range []string{"etcd2", "only 0 MiB free for the uploaded snapshot", "etcd3", "free on the filesystem of /var/lib/etcd"} {
		if !strings.Contains(o.Summary(), want) {
			t.Errorf("refused restore does not say %q:\n%s", want, o.Summary())
		}
	}
	if now := etcdPIDs(t, e); !maps.Equal(now, pids) {
		t.Errorf("etcd processes changed by a refused restore: %v -> %v", pids, now)
	}
	for _, h := range e.Lab.Hosts() {
		if got := hostGlob(t, e, h.Name, "var/lib/etcd/etcd.*"); len(got) != 0 {
			t.Errorf("refused restore left %v on %s", got, h.Name)
		}
		if got := hostGlob(t, e, h.Name, "var/tmp/etcdplay/restore-*"); len(got) != 0 {
			t.Errorf("refused restore uploaded %v to %s", got, h.Name)
		}
	}
	l.MustRun(t, "etcd2", "umount /var/tmp/etcdplay")
	l.MustRun(t, "etcd3", "rm /var/lib/etcd/filler")
}

// TestRestoreInterruptedLeavesMembersRunning: Ctrl-C while a restore is
// stopping the members. Before the fix the members were restarted with the
// already cancelled context, so they stayed stopped while the message said
// they were restarted. Now the stop finishes, every member starts again on
// its old data, staging is cleaned up, and the message says nothing was
// restored; a second restore then goes through.
func TestRestoreInterruptedLeavesMembersRunning(t *testing.T) {
	e := labEnv(t, "it-restore-int", 62, bootVersion)
	l := e.Lab
	snap := backedUp(t, e, 100)
	files := []string{snap}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.Client(t).Put(ctx, "after-backup", "kept when nothing is restored"); err != nil {
		t.Fatal(err)
	}

	// At once (the stop in flight), 300 ms later (followers stopped, the
	// leader stopping: the case that left the cluster down) and 800 ms
	// later (the swap, the wait for health, or done).
	for _, delay := range []time.Duration{0, 300 * time.Millisecond, 800 * time.Millisecond} {
		o := e.SignalWhen(t, harness.Playbook("restore.yml"), "restore: stopping etcd", delay, os.Interrupt, "-e", "snapshot="+files[0])
		// The interrupt may land before the data dirs move (the members
		// go back to their old data) or after (the restore finishes its
		// swap and start): either way every member runs, on one data set,
		// and the message says which.
		out := o.Summary()
		wantOld := 1
		switch {
		case o.Code == 0: // the restore was done before the signal came
			wantOld = 0
		case strings.Contains(out, "nothing restored") && strings.Contains(out, "every member was started again on its old data"):
		case strings.Contains(out, "interrupted after the swap: every member has the restored data and was started"):
			wantOld = 0
		default:
			t.Errorf("interrupt after %s: the restore does not say what state it left:\n%s\n%s", delay, out, o.Stderr)
		}
		t.Logf("interrupt after %s: exit %d: %s", delay, o.Code, out)
		for _, h := range l.Hosts() {
			out, err := l.Run(ctx, h.Name, "systemctl is-active etcd; ls -d /var/lib/etcd.restore-* /var/tmp/etcdplay/restore-* 2>/dev/null; true")
			if !strings.HasPrefix(out, "activ") || strings.Contains(out, "restore-") { // active, or activating after --no-block
				t.Errorf("interrupt after %s: %s (want etcd active, no staging left; err %v):\n%s", delay, h.Name, err, out)
			}
		}
		waitHealthy(t, e)
		if resp, err := e.Client(t).Get(ctx, "after-backup"); err != nil || len(resp.Kvs) != wantOld {
			t.Errorf("interrupt after %s: the members do not serve the data the message names (old: %d): %v %v", delay, wantOld, resp, err)
		}
		if wantOld == 0 {
			if _, err := e.Client(t).Put(ctx, "after-backup", "kept when nothing is restored"); err != nil {
				t.Fatal(err)
			}
		}
	}

	e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+files[0])
	checkKeys(t, e.Client(t), 100, "snap", 0)
	if resp, err := e.Client(t).Get(ctx, "after-backup"); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("after the second restore: %v %v", resp, err)
	}
}

// TestRestoreResumesAfterControllerKilled: the controller is SIGKILLed at
// each phase of a restore (staging, the stop, the swap, the start); the
// operator then runs site.yml, then the restore again, which must finish
// the job with the members never serving two cluster IDs, and remove the
// staging dirs and uploads the killed run left.
//
// Before the fix the fourth restore failed: each restore's snapshot of the
// running cluster applied retention, which removed the snapshot being
// restored (the oldest backup) before it was pushed. Retention now spares
// it. And a kill between one member's swap and another's (a window of
// milliseconds) left members stopped on different data, which site.yml
// would start as two clusters: a marker on every member, written before
// the first stop, now makes site.yml refuse to start a member a restore
// stopped, naming the restore to run again.
func TestRestoreResumesAfterControllerKilled(t *testing.T) {
	e := labEnv(t, "it-restore-kill", 87, bootVersion)
	l := e.Lab
	snap := backedUp(t, e, 100)
	restore := harness.Playbook("restore.yml")
	site := harness.Playbook("site.yml")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	marker := "/etc/etcd/restore-in-progress.json"
	for _, kill := range []struct {
		at    string
		delay time.Duration
	}{
		{"restore: pushing", 0},
		{"restore: pushing", 300 * time.Millisecond},
		{"restore: stopping etcd", 0},
		// Every member stopped, the data dirs moving: a kill here left
		// members stopped on different data. A fixed delay after the
		// stop once found this window; the stop and swap now take less
		// than it did, so the kill follows the log line of the swap.
		{"restore: moving the restored data", 0},
		{"restore: starting etcd", 0},
	} {
		name := fmt.Sprintf("killed %s after %q", kill.delay, kill.at)
		if _, err := e.Client(t).Put(ctx, "after-backup", "only in the data the restore replaces"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		killed := e.SignalWhen(t, restore, kill.at, kill.delay, syscall.SIGKILL, "-e", "snapshot="+snap)
		if killed.Code == 0 {
			t.Fatalf("%s: the killed run exited 0", name)
		}
		marked := 0
		for _, h := range l.Hosts() {
			if strings.TrimSpace(l.MustRun(t, h.Name, "test -e "+marker+" && echo marked; true")) == "marked" {
				marked++
			}
		}
		o := e.Apply(t, site)
		switch {
		case o.Code == 0 && marked == 0:
		case o.Code == 0:
			// Every member stopped by the restore was running again
			// (killed after the start): nothing for site.yml to refuse.
		case strings.Contains(o.Summary(), "a restore stopped this member and did not finish") && strings.Contains(o.Summary(), "Run the restore again"):
			// Killed while the restore took its markers down (in
			// parallel, just before the start), some hosts may have
			// lost theirs already: site.yml starts those and refuses
			// the others. It must never refuse with no marker left.
			if marked == 0 {
				t.Errorf("%s: site.yml refused with no marker on any host", name)
			}
		default:
			t.Fatalf("%s: site.yml after the kill: exit %d\n%s", name, o.Code, o.Summary())
		}
		t.Logf("%s: marker on %d hosts; site.yml exit %d", name, marked, o.Code)
		requireOneCluster(t, e, name)

		e.MustApply(t, restore, "-e", "snapshot="+snap)
		waitHealthy(t, e)
		requireOneCluster(t, e, name)
		checkKeys(t, e.Client(t), 100, "snap", 0)
		if resp, err := e.Client(t).Get(ctx, "after-backup"); err != nil || len(resp.Kvs) != 0 {
			t.Errorf("%s: the restore run again did not replace the data: %v %v", name, resp, err)
		}
		// Nor is what the killed run staged or uploaded left behind.
		for _, h := range l.Hosts() {
			if out := l.MustRun(t, h.Name, "systemctl is-active etcd; ls -d "+marker+" /var/lib/etcd.restore-* /var/tmp/etcdplay/restore-* 2>/dev/null; true"); strings.TrimSpace(out) != "active" {
				t.Errorf("%s: %s after the restore ran again (want etcd active, no marker, no staging dir or upload): %s", name, h.Name, out)
			}
		}
		if acts, _ := e.MustApply(t, site, "--check").Planned("etcd1"); len(acts) > 0 {
			t.Errorf("%s: site.yml --check after the restore plans %v", name, acts)
		}
	}
}

// requireOneCluster fails the test when the members that answer do not all
// belong to one cluster (a restore half done, started as two).
func requireOneCluster(t *testing.T, e *harness.Env, name string) {
	t.Helper()
	ids := map[uint64][]string{}
	for _, h := range e.Lab.Hosts() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ep := e.Endpoints(h.Name)[0]
		st, err := e.Client(t, ep).Status(ctx, ep)
		cancel()
		if err == nil {
			ids[st.Header.ClusterId] = append(ids[st.Header.ClusterId], h.Name)
		}
	}
	if len(ids) > 1 {
		t.Fatalf("%s: the members serve %d clusters: %v", name, len(ids), ids)
	}
}

// waitHealthy waits until every member answers through etcd's client.
func waitHealthy(t *testing.T, e *harness.Env) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := readCluster(t, e)
		if st.Members == 3 && st.Healthy == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not healthy a minute after the run: %+v", st)
		}
		time.Sleep(time.Second)
	}
}

// TestRestoreUploadDirNotHijacked: another local user pre-creates the
// upload dir in /var/tmp. Before the fix the restore reused a planted
// directory as it was (0777, theirs) for the snapshot, the whole keyspace.
// Now a planted symlink is refused before any member stops, and a planted
// directory is taken over (root, 0700) before the snapshot goes in.
func TestRestoreUploadDirNotHijacked(t *testing.T) {
	e := labEnv(t, "it-tmp-hijack", 65, bootVersion)
	l := e.Lab
	files := []string{backedUp(t, e, 50)}
	ctx := context.Background()
	for _, h := range []string{"etcd1", "etcd2", "etcd3"} {
		l.MustRun(t, h, "useradd -m mallory && rm -rf /var/tmp/etcdplay && runuser -u mallory -- mkdir /home/mallory/loot && runuser -u mallory -- ln -s /home/mallory/loot /var/tmp/etcdplay")
	}
	pids := bootPIDs(t, e, bootHostNames(l))
	o := e.Apply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+files[0])
	if o.Code == 0 || !strings.Contains(o.Summary(), "/var/tmp/etcdplay is a symlink (to /home/mallory/loot)") || !strings.Contains(o.Summary(), "no member was stopped") {
		t.Errorf("restore through a planted symlink: exit %d\n%s", o.Code, o.Summary())
	}
	if now := bootPIDs(t, e, bootHostNames(l)); !maps.Equal(now, pids) {
		t.Errorf("the refused restore restarted etcd: %v, were %v", now, pids)
	}
	for _, h := range []string{"etcd1", "etcd2", "etcd3"} {
		if out := l.MustRun(t, h, "ls -A /home/mallory/loot"); strings.TrimSpace(out) != "" {
			t.Errorf("%s: the snapshot went behind the planted symlink: %s", h, out)
		}
		l.MustRun(t, h, "rm /var/tmp/etcdplay && runuser -u mallory -- mkdir -m 0777 /var/tmp/etcdplay")
	}
	e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+files[0])
	checkKeys(t, e.Client(t), 50, "snap", 0)
	for _, h := range []string{"etcd1", "etcd2", "etcd3"} {
		if out := l.MustRun(t, h, "stat -c '%U %a' /var/tmp/etcdplay"); strings.TrimSpace(out) != "root 700" {
			t.Errorf("%s: the planted upload dir is %q after the restore, want root 700", h, out)
		}
		if out, err := l.Run(ctx, h, "runuser -u mallory -- ls /var/tmp/etcdplay"); err == nil {
			t.Errorf("%s: mallory can still list the upload dir: %s", h, out)
		}
	}
}

// backedUp deploys site.yml, writes n keys (key/NNNNNN = value-NNNNNN-snap)
// and takes one backup, whose path it returns.
func backedUp(t *testing.T, e *harness.Env, n int) string {
	t.Helper()
	e.MustApply(t, harness.Playbook("site.yml"))
	putKeys(t, e.Client(t), n, "snap", 0)
	e.MustApply(t, harness.Playbook("backup.yml"))
	files := backups(t, e)
	if len(files) != 1 {
		t.Fatalf("backups: %v", files)
	}
	return files[0]
}

// TestRestoreWhenDiskFills: a disk has room when the plan checks, and
// another process fills it during staging: first etcd2's /var/tmp while
// the snapshot streams in, then etcd3's data disk (its own mount) while
// etcdutl restores into it. Each time the restore must fail in staging,
// before any member stops: every member keeps running on its data (a key
// written after the backup is still there), no partial upload or staging
// dir is left on any host, and the error names the host and the full
// disk. With the space back, the same restore goes through.
func TestRestoreWhenDiskFills(t *testing.T) {
	e := labEnv(t, "it-upload-full", 83, bootVersion)
	l := e.Lab
	// etcd3's data dir is a disk of its own (resized below).
	l.MustRun(t, "etcd3", "mkdir -p /var/lib/etcd && mount -t tmpfs -o size=1g,mode=0700 etcd-disk /var/lib/etcd")
	e.MustApply(t, harness.Playbook("site.yml"))
	const keys, pad = 400, 150 << 10 // a 60 MB snapshot: the upload takes a while
	putKeys(t, e.Client(t), keys, "full", pad)
	e.MustApply(t, harness.Playbook("backup.yml"))
	files := backups(t, e)
	if len(files) != 1 {
		t.Fatalf("backups: %v", files)
	}
	st, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := e.Client(t).Put(ctx, "after-backup", "kept: the restore never happened"); err != nil {
		t.Fatal(err)
	}
	// /var/tmp on etcd2 is a disk of its own with room for the snapshot
	// and 16 MiB more, as the plan requires.
	l.MustRun(t, "etcd2", fmt.Sprintf("mount -t tmpfs -o size=%dk,mode=1777 var-tmp /var/tmp", (st.Size()>>10)+16<<10))
	defer l.Run(context.Background(), "etcd2", "umount -l /var/tmp")

	// Once more than 1 MiB of the upload is on disk, fill what is left.
	filled := make(chan string, 1)
	go func() {
		out, err := l.Run(ctx, "etcd2", `for i in $(seq 6000); do
  if [ -n "$(find /var/tmp/etcdplay -type f -size +1M 2>/dev/null | head -1)" ]; then
    avail=$(df --output=avail -B1 /var/tmp | tail -1)
    dd if=/dev/zero of=/var/tmp/filler bs=64k 2>/dev/null; echo "filled the last $avail bytes"; exit 0
  fi
  sleep 0.01
done; echo "the upload never started"; exit 1`)
		if err != nil {
			out += err.Error()
		}
		filled <- out
	}()
	pids := etcdPIDs(t, e)
	o := e.Apply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+files[0])
	fill := <-filled
	if !strings.Contains(fill, "filled") {
		t.Fatalf("the disk was not filled during the upload: %s\nrestore exit %d\n%s", fill, o.Code, o.Summary())
	}
	t.Logf("etcd2 during the upload: %s", strings.TrimSpace(fill))
	if o.Code == 0 {
		t.Fatalf("restore with etcd2's upload disk filled mid-upload succeeded:\n%s", o.Stdout)
	}
	for _, want := range []string{"no member was stopped", "etcd2", "no space left on device"} {
		if !strings.Contains(o.Summary(), want) {
			t.Errorf("the failed restore does not say %q:\n%s", want, o.Summary())
		}
	}
	if now := etcdPIDs(t, e); !maps.Equal(now, pids) {
		t.Errorf("etcd processes changed by the failed restore: %v -> %v", pids, now)
	}
	resp, err := e.Client(t).Get(ctx, "after-backup")
	if err != nil || len(resp.Kvs) != 1 {
		t.Errorf("the key written after the backup is gone: %v %v", resp, err)
	}
	for _, h := range l.Hosts() {
		if out := l.MustRun(t, h.Name, "ls -A /var/tmp/etcdplay 2>/dev/null; ls -d /var/lib/etcd/etcd.* 2>/dev/null; true"); strings.TrimSpace(out) != "" {
			t.Errorf("the failed restore left files on %s:\n%s", h.Name, out)
		}
	}

	l.MustRun(t, "etcd2", "rm /var/tmp/filler")

	// etcd3's data disk now has room for the restored db and its WAL
	// (the snapshot and 64 MiB), the running member's next WAL segment
	// (64 MiB) and 32 MiB more, as the plan requires.
	// Once the snapshot's upload to etcd3 begins (after the plan checked
	// the space), fill the disk, so etcdutl, which runs after the upload
	// and its hash check, always finds it full (filling once its staging
	// dir appeared raced etcdutl, which sometimes finished first); once
	// the failed restore has removed the upload and the staging dir, free
	// it again, so the running member is short of space only while
	// staging fails.
	l.MustRun(t, "etcd3", fmt.Sprintf("mount -o remount,size=$(( $(df --output=used -B1 /var/lib/etcd | tail -1) + %d )) /var/lib/etcd", st.Size()+160<<20))
	go func() {
		out, err := l.Run(ctx, "etcd3", `for i in $(seq 6000); do
  if ls -d /var/tmp/etcdplay/restore-* >/dev/null 2>&1; then
    avail=$(df --output=avail -B1 /var/lib/etcd | tail -1)
    dd if=/dev/zero of=/var/lib/etcd/filler bs=64k 2>/dev/null; echo "filled the last $avail bytes"
    for j in $(seq 3000); do ls -d /var/tmp/etcdplay/restore-* /var/lib/etcd/etcd.restore-* 2>/dev/null | grep -q . || break; sleep 0.01; done
    rm /var/lib/etcd/filler; exit 0
  fi
  sleep 0.01
done; echo "staging never started"; exit 1`)
		if err != nil {
			out += err.Error()
		}
		filled <- out
	}()
	pids = etcdPIDs(t, e)
	o = e.Apply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+files[0])
	fill = <-filled
	if !strings.Contains(fill, "filled") {
		t.Fatalf("the data disk was not filled during staging: %s\nrestore exit %d\n%s", fill, o.Code, o.Summary())
	}
	t.Logf("etcd3 during staging: %s; the restore says:\n%s", strings.TrimSpace(fill), o.Summary())
	if o.Code == 0 {
		t.Fatalf("restore with etcd3's data disk filled during staging succeeded:\n%s", o.Stdout)
	}
	for _, want := range []string{"no member was stopped", "etcd3", "no space left on device"} {
		if !strings.Contains(o.Summary(), want) {
			t.Errorf("the failed restore does not say %q:\n%s", want, o.Summary())
		}
	}
	if now := etcdPIDs(t, e); !maps.Equal(now, pids) {
		t.Errorf("etcd processes changed by the failed restore: %v -> %v", pids, now)
	}
	if resp, err := e.Client(t).Get(ctx, "after-backup"); err != nil || len(resp.Kvs) != 1 {
		t.Errorf("the key written after the backup is gone: %v %v", resp, err)
	}
	for _, h := range l.Hosts() {
		if out := l.MustRun(t, h.Name, "ls -A /var/tmp/etcdplay 2>/dev/null; ls -d /var/lib/etcd/etcd.* /var/lib/etcd.* 2>/dev/null; true"); strings.TrimSpace(out) != "" {
			t.Errorf("the failed restore left files on %s:\n%s", h.Name, out)
		}
	}

	// The space back (the disk's first size): the same restore goes
	// through. Sized as for the fill, the running member could take the
	// margin meanwhile (a WAL cut preallocates 64 MiB).
	l.MustRun(t, "etcd3", "mount -o remount,size=1g /var/lib/etcd")
	e.MustApply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+files[0])
	checkKeys(t, e.Client(t), keys, "full", pad)
	if resp, err := e.Client(t).Get(ctx, "after-backup"); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("after the restore, a key written after the backup: %v %v", resp, err)
	}
}
