package etcd_restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/oplock"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot"
)

// ErrVerify is wrapped when the restored cluster does not serve what the
// snapshot holds.
var ErrVerify = errors.New("restored cluster does not match the snapshot")

// Apply does what Plan laid out, in its order. Until every member has its
// restored data dir staged, no member is stopped; a failure then cleans up
// the staging dirs and uploads and leaves the cluster as it was.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	j, ok := ch.Payload.(*job)
	if !ok {
		return nil, errors.New("etcd_restore: plan payload missing")
	}
	hosts := env.Writers()
	c := j.Cluster
	members := members(j)
	start := time.Now()
	// Staging runs under the operation lock, taken in the cluster being
	// replaced: losing it stops the restore before any member stops.
	sctx := ctx
	var held *oplock.Held
	if j.Before {
		h, closeCli, err := lockCluster(ctx, env, c, j.Timeout)
		if err != nil {
			return nil, fmt.Errorf("etcd_restore: no member was touched: %w", err)
		}
		defer closeCli()
		if held = h; held != nil {
			// Given back unless the stop abandoned it (below).
			defer func() {
				if held != nil {
					held.Release()
				}
			}()
			sctx = held.Ctx
		}
	}
	var before string
	if j.Before {
		b, err := etcd_snapshot.Before(sctx, env, c, "the running cluster is replaced", j.Fetched.Names()...)
		if err != nil {
			return nil, fmt.Errorf("etcd_restore: no member was touched: %w", oplock.Explain(sctx, err))
		}
		before = b.Path
	}

	env.Logf("restore: pushing %s (%d MiB) to %s and restoring into staging dirs", j.Snapshot.Path, j.Snapshot.Size>>20, hostList(j.Members))
	err := forEach(sctx, members, func(ctx context.Context, i int, m etcd.Member) error {
		return stage(ctx, hosts[m.Host], j, j.Members[i])
	})
	if err == nil && sctx.Err() != nil {
		err = context.Cause(sctx)
	}
	if err != nil {
		cleanup(ctx, hosts, j, notRestored)
		return nil, fmt.Errorf("etcd_restore: staging failed, no member was stopped, the cluster is as it was: %w", oplock.Explain(sctx, err))
	}

	// From the first stop to the last start, an interrupt (Ctrl-C, a
	// cancelled run) must not leave members stopped: that section runs to
	// its end on a context of its own, bounded in time, and the run's
	// cancellation is honoured after it. A controller killed in it leaves
	// the marker behind (see Marker).
	crit, cancelCrit := context.WithTimeout(context.WithoutCancel(ctx), criticalTimeout)
	defer cancelCrit()
	if err := markAll(crit, hosts, j); err != nil {
		cleanup(ctx, hosts, j, notRestored)
		return nil, fmt.Errorf("etcd_restore: no member was stopped, the cluster is as it was: %w", err)
	}
	// restart brings every member back on one data set (which names it)
	// once the marker is gone.
	restart := func() error {
		return errors.Join(unmarkAll(crit, hosts, j), startAll(crit, hosts, members))
	}
	env.Logf("restore: stopping etcd on %s", hostList(j.Members))
	stopErr := stopAll(crit, env, c, hosts, members)
	if held != nil {
		// The lock went down with the cluster that held it; its lease
		// is left to expire should the old members come back.
		held.Abandon()
		held = nil
	}
	if err := stopErr; err != nil {
		// The old data dirs are still in place: bring every member back.
		startErr := restart()
		cleanup(ctx, hosts, j, notRestored)
		return nil, fmt.Errorf("etcd_restore: stopping etcd failed, nothing restored; %s: %w", startedOrNot(startErr, "old"), err)
	}
	if ctx.Err() != nil {
		startErr := restart()
		cleanup(ctx, hosts, j, notRestored)
		return nil, fmt.Errorf("etcd_restore: interrupted before any data dir moved, nothing restored; %s: %w", startedOrNot(startErr, "old"), ctx.Err())
	}

	env.Logf("restore: moving the restored data into place on %s", hostList(j.Members))
	err = forEach(crit, members, func(ctx context.Context, i int, m etcd.Member) error {
		return swap(ctx, hosts[m.Host], j, j.Members[i])
	})
	if err != nil {
		// A cluster half on the old data and half on the restored one
		// has no quorum either way: put the old data back everywhere.
		undoErr := forEach(crit, members, func(ctx context.Context, i int, m etcd.Member) error {
			return unswap(ctx, hosts[m.Host], j, j.Members[i])
		})
		if undoErr != nil {
			return nil, fmt.Errorf("etcd_restore: moving the data dirs failed (%v), and putting the old ones back failed too: %w; "+
				"etcd is STOPPED on %s. On each host the old data is at %s (or still in %s) and the restored data at %s: "+
				"move the old data back into %s, remove %s and run `systemctl start etcd`",
				err, undoErr, hostList(j.Members), asidePaths(j), c.DataDir, stagePaths(j), c.DataDir, c.Paths.RestoreMarker)
		}
		startErr := restart()
		cleanup(ctx, hosts, j, notRestored)
		return nil, fmt.Errorf("etcd_restore: moving the data dirs failed, so every member got its old data back, nothing restored; %s: %w", startedOrNot(startErr, "old"), err)
	}

	env.Logf("restore: starting etcd on %s with cluster token %s", hostList(j.Members), j.Token)
	if err := restart(); err != nil {
		return nil, fmt.Errorf("etcd_restore: data restored on every member but etcd did not start (run `systemctl start etcd` on each): %w", err)
	}
	cancelCrit()
	moved := map[string]string{}
	for _, mp := range j.Members {
		if mp.Aside != "" {
			moved[mp.Member.Host] = mp.Aside
		}
	}
	rec := record{Time: j.Stamp, Snapshot: j.Fetched.From, SHA256: j.Snapshot.SHA256, Revision: j.Snapshot.Revision,
		Keys: j.Snapshot.Keys, Bump: j.Bump, Token: j.Token, InitialCluster: c.InitialCluster(), MovedAside: moved}
	if err := writeRecord(env.StateDir, c, rec); err != nil {
		env.Logf("restore: could not write the restore record: %v", err)
	}
	// Interrupted from here on, the members run the restored data: say so
	// rather than report the cancelled wait as a failed restore.
	interrupted := func() error {
		cleanup(ctx, hosts, j, restored)
		return fmt.Errorf("etcd_restore: interrupted after the swap: every member has the restored data and was started (new cluster token %s), "+
			"but its health and key count were not checked: run `etcdplay status`; the old data is kept at %s: %w", j.Token, asidePaths(j), ctx.Err())
	}
	if ctx.Err() != nil {
		return nil, interrupted()
	}
	dial := etcdclient.Dialer(c, env)
	if _, err := etcdclient.WaitHealthy(ctx, c, env.StateDir, dial, etcdclient.WaitOptions{Timeout: j.Timeout, Log: env.Log}); err != nil {
		if ctx.Err() != nil {
			return nil, interrupted()
		}
		return nil, fmt.Errorf("etcd_restore: data restored on every member but the cluster did not become healthy: %w", err)
	}
	// With the bump, the snapshot's revision is compacted away; the
	// bumped one holds the same keys.
	v, err := verify(ctx, c, env.StateDir, dial, j.Snapshot.Revision+j.Bump, len(j.Members))
	if err != nil {
		if ctx.Err() != nil {
			return nil, interrupted()
		}
		return nil, fmt.Errorf("etcd_restore: %w", err)
	}
	if v.Keys != int64(j.Snapshot.Keys) {
		return nil, fmt.Errorf("etcd_restore: %w: %d keys at revision %d, the snapshot has %d", ErrVerify, v.Keys, j.Snapshot.Revision, j.Snapshot.Keys)
	}
	cleanup(ctx, hosts, j, checked)
	j.Fetched.Done()

	took := time.Since(start)
	msg := fmt.Sprintf("restored %d members from %s (revision %d, %d keys) in %s; new cluster token %s",
		len(j.Members), filepath.Base(j.Snapshot.Path), j.Snapshot.Revision, j.Snapshot.Keys, took.Round(time.Millisecond), j.Token)
	if j.Bump > 0 {
		msg += fmt.Sprintf("; revision bumped to %d and marked compacted", v.Revision)
	}
	if len(moved) > 0 {
		msg += "; old data dirs kept at " + asidePaths(j)
	}
	if before != "" {
		msg += "; the replaced cluster's snapshot is " + before
	}
	return &modules.Result{
		Status: modules.StatusChanged,
		Change: ch,
		Msg:    msg,
		Data: map[string]any{
			"snapshot":    j.Snapshot.Path,
			"revision":    j.Snapshot.Revision,
			"keys":        j.Snapshot.Keys,
			"token":       j.Token,
			"moved_aside": moved,
			"seconds":     took.Seconds(),
			"current_rev": v.Revision,
			"bump":        j.Bump,
			"before":      before,
		},
	}, nil
}

// stopAll stops etcd on every member: the followers at once, then the
// leader. A leader that stops while its followers are still up hands over
// leadership first and, with every follower stopping at the same moment,
// waits for that hand-over to time out (seconds); stopped last, it sees no
// follower to hand over to and stops at once.
func stopAll(ctx context.Context, env *modules.Env, c *etcd.Cluster, hosts map[string]modules.HostWriter, members []etcd.Member) error {
	leader := ""
	if h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, etcdclient.Dialer(c, env), etcdclient.CheckOptions{ProbeTimeout: time.Second}); err == nil {
		if l, ok := h.Leader(); ok {
			leader = l.Host
		}
	}
	var first, last []etcd.Member
	for _, m := range members {
		if m.Host == leader {
			last = append(last, m)
		} else {
			first = append(first, m)
		}
	}
	stop := func(ctx context.Context, _ int, m etcd.Member) error {
		_, err := command.Run(ctx, hosts[m.Host], "systemctl", "stop", unit)
		return err
	}
	if err := forEach(ctx, first, stop); err != nil {
		return err
	}
	return forEach(ctx, last, stop)
}

// stage pushes the snapshot to one member, checks it arrived intact and
// restores it into the staging dir, while etcd keeps running.
func stage(ctx context.Context, r modules.HostWriter, j *job, mp memberPlan) error {
	c := j.Cluster
	// The snapshot is the whole keyspace: it goes into a directory only
	// root can enter (a symlink there is refused, an existing directory
	// taken over), never a world-readable one.
	dir := etcd_install.Set{Dirs: []etcd_install.Dir{{Path: path.Dir(mp.Upload), Mode: "0700", Owner: "root", Group: "root"}}}
	if res, err := r.Apply(ctx, "etcd_files", dir.Args()); err != nil || res.Status == modules.StatusFailed {
		if err == nil {
			err = errors.New(res.Msg)
		}
		return fmt.Errorf("upload dir: %w", err)
	}
	f, err := os.Open(j.Snapshot.Path)
	if err != nil {
		return err
	}
	err = r.Upload(ctx, f, mp.Upload, 0o600)
	f.Close()
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	out, err := command.Run(ctx, r, "sha256sum", mp.Upload)
	if err != nil {
		return err
	}
	if got, _, _ := strings.Cut(strings.TrimSpace(out), " "); got != j.Snapshot.SHA256 {
		return fmt.Errorf("the snapshot copy %s has sha256 %s, the controller's has %s: damaged in transit", mp.Upload, got, j.Snapshot.SHA256)
	}
	argv := []string{path.Join(c.Paths.BinDir, "etcdutl"), "snapshot", "restore", mp.Upload,
		"--name", mp.Member.Name,
		"--initial-cluster", c.InitialCluster(),
		"--initial-cluster-token", j.Token,
		"--initial-advertise-peer-urls", mp.Member.PeerURL,
		"--data-dir", mp.Stage,
	}
	if mp.StageWAL != "" {
		argv = append(argv, "--wal-dir", mp.StageWAL)
	}
	if j.Skip {
		argv = append(argv, "--skip-hash-check")
	}
	if j.Bump > 0 {
		argv = append(argv, "--bump-revision", fmt.Sprint(j.Bump), "--mark-compacted")
	}
	if _, err := command.Run(ctx, r, argv...); err != nil {
		if j.Bump > 0 && strings.Contains(err.Error(), "unknown flag: --bump-revision") {
			return fmt.Errorf("%w: this etcdutl predates --bump-revision (etcd 3.5.10/3.6): upgrade etcd first, or pass bump_revision: 0 to restore the old revisions as they were", err)
		}
		return fmt.Errorf("etcdutl snapshot restore into %s failed: %s", mp.Stage, etcdutlFailure(err.Error()))
	}
	chown := []string{"chown", "-R", "etcd:etcd", mp.Stage}
	if mp.StageWAL != "" {
		chown = append(chown, mp.StageWAL)
	}
	_, err = command.Run(ctx, r, chown...)
	return err
}

// etcdutlFailure is the gist of a failed etcdutl run, whose output is
// its whole log: the final "Error:" line and the last warning or error
// logged before it (which names the file), or the output as it was.
func etcdutlFailure(out string) string {
	var final, last string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if msg, ok := strings.CutPrefix(line, "Error: "); ok {
			final = msg
			continue
		}
		// zap's console lines: time, level, [logger,] file.go:line,
		// message, fields.
		f := strings.Split(line, "\t")
		if len(f) < 4 || (f[1] != "warn" && f[1] != "error") {
			continue
		}
		for i := 2; i < len(f)-1; i++ {
			if strings.Contains(f[i], ".go:") {
				last = strings.Join(f[i+1:], " ")
				break
			}
		}
	}
	switch {
	case final != "" && last != "":
		return final + " (etcdutl: " + last + ")"
	case final != "":
		return final
	}
	return out
}

// criticalTimeout bounds the stop-swap-start section, which an interrupt
// does not cut short.
const criticalTimeout = 2 * time.Minute

// swap moves the old data (and WAL) dir aside and the staged one in place,
// by renames on the dir's own filesystem (see etcd_install.MoveAside).
func swap(ctx context.Context, r modules.HostWriter, j *job, mp memberPlan) error {
	c := j.Cluster
	if err := etcd_install.MoveAside(ctx, r, asideSuffix(j.Stamp), "", dataDirs(c)...); err != nil {
		return err
	}
	if err := etcd_install.Promote(ctx, r, mp.Stage, c.DataDir); err != nil {
		return err
	}
	if mp.StageWAL != "" {
		return etcd_install.Promote(ctx, r, mp.StageWAL, c.WALDir)
	}
	return nil
}

// unswap undoes as much of swap as happened: restored data goes back to
// its staging dir, the old data back into place.
func unswap(ctx context.Context, r modules.HostWriter, j *job, mp memberPlan) error {
	c := j.Cluster
	pairs := [][2]string{{c.DataDir, mp.Aside}}
	if c.WALDir != "" {
		pairs = append(pairs, [2]string{c.WALDir, mp.AsideWAL})
	}
	for _, p := range pairs {
		dir, aside := p[0], p[1]
		moved := false
		if aside != "" {
			lay, err := etcd_install.ProbeDirs(ctx, r, aside)
			if err != nil {
				return err
			}
			if moved = lay[0].Exists; !moved {
				continue // swap never reached this dir: it holds the old data
			}
		}
		// Whatever dir holds now is restored data (or nothing).
		if err := etcd_install.MoveAside(ctx, r, stageSuffix(j.Stamp), "", dir); err != nil {
			return err
		}
		if moved {
			if err := etcd_install.Promote(ctx, r, aside, dir); err != nil {
				return err
			}
		}
	}
	return nil
}

func startAll(ctx context.Context, hosts map[string]modules.HostWriter, members []etcd.Member) error {
	return forEach(ctx, members, func(ctx context.Context, _ int, m etcd.Member) error {
		r := hosts[m.Host]
		// A unit that failed before (the disaster) refuses to start
		// until its failed state is cleared.
		_, _ = command.Run(ctx, r, "systemctl", "reset-failed", unit)
		_, err := command.Run(ctx, r, "systemctl", "start", "--no-block", unit)
		return err
	})
}

// startedOrNot says whether every member was started again on its data.
func startedOrNot(err error, which string) string {
	if err == nil {
		return "every member was started again on its " + which + " data"
	}
	return fmt.Sprintf("starting the members again failed (%v): run `systemctl start etcd` on each", err)
}

func asidePaths(j *job) string {
	var out []string
	for _, mp := range j.Members {
		for _, a := range []string{mp.Aside, mp.AsideWAL} {
			if a != "" {
				out = append(out, mp.Member.Host+":"+a)
			}
		}
	}
	return strings.Join(out, ", ")
}

func stagePaths(j *job) string {
	var out []string
	for _, mp := range j.Members {
		out = append(out, mp.Member.Host+":"+mp.Stage)
	}
	return strings.Join(out, ", ")
}

// outcome is how far a restore got, which decides what cleanup removes.
type outcome int

const (
	notRestored outcome = iota // the staging dirs go too
	restored                   // moved into place: only the uploads go
	checked                    // and what interrupted restores left
)

// cleanup removes the uploaded snapshots and what the outcome says. It
// never touches a data dir. Errors are ignored: it runs after the outcome
// is decided.
func cleanup(ctx context.Context, hosts map[string]modules.HostWriter, j *job, o outcome) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = forEach(cctx, members(j), func(ctx context.Context, i int, m etcd.Member) error {
		mp := j.Members[i]
		argv := []string{"rm", "-rf", "--", mp.Upload}
		switch o {
		case notRestored:
			argv = append(argv, mp.Stage)
			if mp.StageWAL != "" {
				argv = append(argv, mp.StageWAL)
			}
		case checked:
			argv = append(argv, mp.Leftovers...)
		}
		_, err := command.Run(ctx, hosts[m.Host], argv...)
		return err
	})
}

// verified is what the restored cluster serves.
type verified struct {
	Revision int64 // current
	Keys     int64 // alive at the snapshot's revision
}

// verify reads the key count at the snapshot's revision (leases expiring
// after the start may already have moved the store on, so "now" is not
// the right point) and checks every member is in the member list.
func verify(ctx context.Context, c *etcd.Cluster, stateDir string, dial etcdclient.DialFunc, rev int64, members int) (verified, error) {
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cli, err := etcdclient.NewClient(vctx, c, stateDir, dial)
	if err != nil {
		return verified{}, err
	}
	defer cli.Close()
	resp, err := cli.Get(vctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
	if err != nil {
		return verified{}, fmt.Errorf("%w: reading revision %d: %v", ErrVerify, rev, err)
	}
	v := verified{Revision: resp.Header.Revision, Keys: resp.Count}
	if v.Revision < rev {
		return v, fmt.Errorf("%w: it is at revision %d, the snapshot at %d", ErrVerify, v.Revision, rev)
	}
	ml, err := cli.MemberList(vctx)
	if err != nil {
		return v, fmt.Errorf("%w: member list: %v", ErrVerify, err)
	}
	if len(ml.Members) != members {
		return v, fmt.Errorf("%w: %d members in the member list, want %d", ErrVerify, len(ml.Members), members)
	}
	return v, nil
}

// record is kept on the controller beside the PKI: the restore token is
// not in etcd.yaml (etcd reads initial-cluster-* only when its data dir is
// empty), so this is where an operator finds it.
type record struct {
	Time     string `json:"time"`
	Snapshot string `json:"snapshot"`
	SHA256   string `json:"sha256"`
	Revision int64  `json:"revision"`
	Keys     int    `json:"keys"`
	// Bump is how far the revision was raised (--bump-revision).
	Bump           int64             `json:"bump"`
	Token          string            `json:"token"`
	InitialCluster string            `json:"initial_cluster"`
	MovedAside     map[string]string `json:"moved_aside,omitempty"`
}

// RecordPath is where the last restore of the cluster is recorded.
func RecordPath(stateDir string, c *etcd.Cluster) string {
	return filepath.Join(stateDir, c.Name, "restores", "last.json")
}

func writeRecord(stateDir string, c *etcd.Cluster, rec record) error {
	if stateDir == "" {
		return nil
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(RecordPath(stateDir, c))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// One file per restore plus last.json, so history is kept.
	if err := os.WriteFile(filepath.Join(dir, rec.Time+".json"), append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.WriteFile(RecordPath(stateDir, c), append(b, '\n'), 0o600)
}
