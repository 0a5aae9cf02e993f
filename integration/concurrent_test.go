package integration

// Two operators start a rolling restart of the same cluster at the same
// moment. The real thing exercised: etcdplay's operation lock in the
// cluster's own keyspace (two etcdplay processes, real etcd), judged by
// systemd's journal on each lab host: no two members may be down at once.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/modules/etcd/oplock"
)

func TestConcurrentRollingRestarts(t *testing.T) {
	l, e, _, hosts := siteLab(t, "it-concurrent", 78)
	// The second run starts with the first (its lock attempts then meet
	// the first's leadership handover, a leader dropping proposals: CI
	// once failed it there), or while the first has a follower down, or
	// the former leader (its plan then probes a cluster a member is
	// missing from, or loses a member between probe and member list).
	for _, tc := range []struct{ name, second string }{
		{"at once", ""},
		{"second while the first restarts a follower", " (1/3, follower)"},
		{"second while the first restarts the former leader", " (3/3, "},
	} {
		t.Run(tc.name, func(t *testing.T) { concurrentRestarts(t, l, e, hosts, tc.second) })
	}
}

// concurrentRestarts runs two rolling restarts of every member, the
// second when the first logs marker ("": both at once), and judges them.
func concurrentRestarts(t *testing.T, l *lab.Lab, e *harness.Env, hosts []string, marker string) {
	restart := restartWhenStale(t, l)
	since := time.Now()
	cli := e.Client(t)
	// A write can hang on the member being stopped until its timeout: a
	// short timeout keeps the measured gap close to the time the cluster
	// really refused writes.
	w := harness.StartWriteLoop(cli, "/it/concurrent", 20*time.Millisecond, 250*time.Millisecond)
	time.Sleep(500 * time.Millisecond)

	runs := make([]*harness.Outcome, 2)
	if marker == "" {
		var wg sync.WaitGroup
		for i := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runs[i] = e.Apply(t, restart)
			}()
		}
		wg.Wait()
	} else {
		second := make(chan *harness.Outcome, 1)
		runs[0] = e.ActWhen(t, restart, marker, func(*os.Process) {
			go func() { second <- e.Apply(t, restart) }()
		})
		runs[1] = <-second
	}
	time.Sleep(500 * time.Millisecond)
	stats := w.Stop()

	// One run restarts every member. The other restarts none and never
	// refuses: it waits (for the lock, or, when its plan's quorum guard
	// sees a member the first run has down, for the cluster's health),
	// then finds, probing again, that the first run restarted every
	// member already; or its plan finds that already. (It refused before
	// a rerun waited for a member on its way back, and so did a rerun
	// after a killed roll.)
	restarted := 0
	for i, o := range runs {
		switch {
		case o.Code != 0:
			t.Fatalf("run %d: exit %d\n%s\nits log:\n%s", i+1, o.Code, o.Summary(), o.Logs())
		case o.Changed() != 0:
			restarted++
		case !strings.Contains(o.Stdout, "no restart needed"):
			t.Errorf("run %d restarted nothing without saying why:\n%s", i+1, o.Logs())
		}
	}
	if restarted != 1 {
		t.Errorf("%d runs restarted members, want one of the two\nrun 1:\n%s\nrun 2:\n%s", restarted, runs[0].Logs(), runs[1].Logs())
	}
	t.Logf("run 1:\n%s\nrun 2:\n%s", runs[0].Logs(), runs[1].Logs())
	t.Logf("two concurrent rolling restarts: %s and %s; writer: %s; first errors: %v", runs[0].Elapsed.Round(time.Millisecond), runs[1].Elapsed.Round(time.Millisecond), stats, stats.Errors)
	if stats.MaxGap > electionTimeout {
		t.Errorf("writes stopped for %s (> election timeout %s): %s; first errors: %v", stats.MaxGap, electionTimeout, stats, stats.Errors)
	}

	var windows []downWindow
	for _, h := range hosts {
		ws := etcdDownWindows(t, l, h, since)
		if len(ws) != 1 {
			t.Errorf("%s: etcd was restarted %d times, want once by the two runs together: %v", h, len(ws), ws)
		}
		windows = append(windows, ws...)
	}
	t.Logf("etcd down windows: %v", windows)
	for i, a := range windows {
		for _, b := range windows[i+1:] {
			if a.host != b.host && a.from.Before(b.to) && b.from.Before(a.to) {
				t.Errorf("%s and %s were down at the same time: %v and %v", a.host, b.host, a, b)
			}
		}
	}
	bootCheckCluster(t, e, hosts)
}

// downWindow is one stop-to-started span of etcd.service on a host.
type downWindow struct {
	host     string
	from, to time.Time
}

func (w downWindow) String() string {
	return fmt.Sprintf("%s %s..%s", w.host, w.from.Format("15:04:05.000"), w.to.Format("15:04:05.000"))
}

// systemd's catalogue ids for a unit beginning to stop and having started.
const (
	msgUnitStopping = "de5b426a63be47a7b6ac3eaac82e2f6f"
	msgUnitStarted  = "39f53479d3a045ac8e11786248231fbf"
)

// etcdDownWindows reads host's journal since then: every span from
// "Stopping etcd.service" to the next "Started". The lab hosts share the
// machine's clock, so the spans of different hosts compare.
func etcdDownWindows(t *testing.T, l *lab.Lab, host string, since time.Time) []downWindow {
	t.Helper()
	out, err := l.Run(context.Background(), host,
		fmt.Sprintf("journalctl -u etcd.service -o json --output-fields=MESSAGE_ID,__REALTIME_TIMESTAMP --since=@%d --no-pager", since.Unix()))
	if err != nil {
		t.Fatalf("journal of %s: %v\n%s", host, err, out)
	}
	var ws []downWindow
	var open *downWindow
	for line := range strings.Lines(out) {
		var ent struct {
			ID string `json:"MESSAGE_ID"`
			At string `json:"__REALTIME_TIMESTAMP"`
		}
		if json.Unmarshal([]byte(line), &ent) != nil || !slices.Contains([]string{msgUnitStopping, msgUnitStarted}, ent.ID) {
			continue
		}
		us, err := strconv.ParseInt(ent.At, 10, 64)
		if err != nil {
			continue
		}
		at := time.UnixMicro(us)
		if at.Before(since) {
			continue
		}
		switch {
		case ent.ID == msgUnitStopping:
			open = &downWindow{host: host, from: at}
		case open != nil:
			open.to = at
			ws = append(ws, *open)
			open = nil
		}
	}
	if open != nil {
		t.Errorf("%s: etcd.service stopped at %s and never started again", host, open.from.Format(time.RFC3339Nano))
	}
	return ws
}

// restartWhenStale writes a playbook that runs a rolling restart and
// makes every member's config newer than its process, so the restart
// has every member to do (etcd_restart restarts only stale members).
func restartWhenStale(t *testing.T, l *lab.Lab) string {
	t.Helper()
	pb := filepath.Join(t.TempDir(), "restart.yml")
	writeFile(t, pb, `- hosts: etcd
  tasks:
    - name: rolling restart
      etcd_restart: {}
      run_once: true
`)
	for _, h := range bootHostNames(l) {
		if out, err := l.Run(context.Background(), h, "sleep 0.01; touch /etc/etcd/etcd.yaml"); err != nil {
			t.Fatalf("touch etcd.yaml on %s: %v\n%s", h, err, out)
		}
	}
	return pb
}

// TestLockHolderCutOffPastItsLease: a rolling restart holds the operation
// lock; right as its first member restarts, the controller is cut off
// from every member's client port (a partition: packets dropped) for
// twice the lease. The lease expires in etcd, so another run could take
// the lock; the cut-off run must notice and stop instead of restarting
// the next member once the partition heals. Exactly one member is
// restarted, the run says it lost the lock, the lock key is gone, and the
// next run finishes the roll.
func TestLockHolderCutOffPastItsLease(t *testing.T) {
	l, e, pb, hosts := siteLab(t, "it-lock-lease", 84)
	before := rollUnitTimes(t, e, hosts)

	healed := make(chan error, 1)
	o := e.ActWhen(t, pb, "restart of etcd", func(*os.Process) {
		for _, h := range hosts {
			if err := l.BlockPort(h, 2379); err != nil {
				t.Error(err)
			}
		}
		go func() {
			time.Sleep(2 * oplock.TTL * time.Second)
			var err error
			for _, h := range hosts {
				err = errors.Join(err, l.UnblockPort(h, 2379))
			}
			healed <- err
		}()
	}, "-e", "etcd_snapshot_count=20000")
	if err := <-healed; err != nil {
		t.Fatal(err)
	}
	if o.Code == 0 || !strings.Contains(o.Summary(), "lost the etcdplay operation lock") {
		t.Fatalf("the roll cut off past its lease: exit %d, want a failure saying it lost the operation lock\n%s", o.Code, o.Summary())
	}
	t.Logf("the cut-off run ended after %s", o.Elapsed.Round(time.Millisecond))
	after := rollUnitTimes(t, e, hosts)
	var restarted []string
	for _, h := range hosts {
		if after[h].pid != before[h].pid {
			restarted = append(restarted, h)
		}
	}
	if len(restarted) != 1 {
		t.Fatalf("the run that lost its lock restarted %v, want exactly the member it was restarting", restarted)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := e.Client(t).Get(ctx, oplock.Key); err != nil || len(r.Kvs) != 0 {
		t.Errorf("the operation lock after its lease ran out: %v %v, want it gone", r, err)
	}

	// Nothing is left to notify the restart handler (etcd.yaml is written
	// already): --check still shows the two members waiting for it.
	check := e.MustApply(t, pb, "--check", "-e", "etcd_snapshot_count=20000")
	var pending []string
	for _, h := range hosts {
		acts, _ := check.Planned(h)
		for _, a := range acts {
			if a.Op == "!" && strings.HasPrefix(a.Target, "restart ") {
				pending = append(pending, strings.TrimPrefix(a.Target, "restart "))
			}
		}
	}
	if slices.Sort(pending); len(pending) != 2 || slices.Contains(pending, restarted[0]) {
		t.Errorf("--check after the interrupted roll plans restarts of %v, want the two members it did not reach", pending)
	}
	e.MustApply(t, pb, "-e", "etcd_snapshot_count=20000")
	final := rollUnitTimes(t, e, hosts)
	for _, h := range hosts {
		if final[h].pid == before[h].pid {
			t.Errorf("%s never restarted onto the new config", h)
		}
	}
}

// TestRestoreWaitsForRollingRestart: a restore is started while a rolling
// restart is at its first member. Before the fix the restore took no lock:
// it would stop every member while the roll had one down, or the roll
// would restart (and so start) a member the restore had stopped. Now the
// restore waits for the operation lock, naming the roll that holds it;
// the roll finishes every member before the restore stops any; and the
// cluster then serves the snapshot.
func TestRestoreWaitsForRollingRestart(t *testing.T) {
	e := labEnv(t, "it-restore-roll", 88, bootVersion)
	l := e.Lab
	hosts := bootHostNames(l)
	snap := backedUp(t, e, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := e.Client(t).Put(ctx, "after-backup", "replaced by the restore"); err != nil {
		t.Fatal(err)
	}

	restart := restartWhenStale(t, l)
	since := time.Now()
	restored := make(chan *harness.Outcome, 1)
	roll := e.ActWhen(t, restart, fmt.Sprintf(" (1/%d, ", len(hosts)), func(*os.Process) {
		go func() { restored <- e.Apply(t, harness.Playbook("restore.yml"), "-e", "snapshot="+snap) }()
	})
	rst := <-restored
	if roll.Code != 0 || rst.Code != 0 {
		t.Fatalf("rolling restart exit %d, restore exit %d\nroll:\n%s\nrestore:\n%s", roll.Code, rst.Code, roll.Summary(), rst.Summary())
	}
	if !strings.Contains(rst.Stdout, "waiting: the operation lock") || !strings.Contains(rst.Stdout, "(restart by etcdplay pid") {
		t.Errorf("the restore did not wait for the rolling restart's lock:\n%s", rst.Stdout)
	}

	// Each host: the roll's restart, then the restore's stop and start.
	var rollEnd, restoreStop time.Time
	for _, h := range hosts {
		ws := etcdDownWindows(t, l, h, since)
		if len(ws) != 2 {
			t.Fatalf("%s: etcd was down %d times, want twice (the roll, then the restore): %v", h, len(ws), ws)
		}
		if ws[0].to.After(rollEnd) {
			rollEnd = ws[0].to
		}
		if restoreStop.IsZero() || ws[1].from.Before(restoreStop) {
			restoreStop = ws[1].from
		}
	}
	if !rollEnd.Before(restoreStop) {
		t.Errorf("the restore stopped a member at %s, before the roll's last member was back at %s",
			restoreStop.Format("15:04:05.000"), rollEnd.Format("15:04:05.000"))
	}
	checkKeys(t, e.Client(t), 100, "snap", 0)
	if resp, err := e.Client(t).Get(ctx, "after-backup"); err != nil || len(resp.Kvs) != 0 {
		t.Errorf("the cluster does not serve the snapshot: %v %v", resp, err)
	}
	bootCheckCluster(t, e, hosts)
}
