// Package etcd_restore is whole-cluster disaster recovery from a snapshot,
// the runbook of seeds 001 and 002 done safely:
//
//  1. verify the snapshot on the controller (etcd's integrity hash, the
//     database, its revision and key count); a damaged file stops here;
//  2. push it to every member and check its sha256 there;
//  3. on every member, while etcd still runs, `etcdutl snapshot restore`
//     into a staging dir next to the data dir, with the member's own name
//     and peer URL, the full initial cluster and a NEW cluster token;
//  4. only then stop etcd on every member, move each old data dir aside
//     with a UTC timestamp (never deleted) and the staging dir into place;
//  5. start every member at once, wait until the cluster is healthy, and
//     check that it serves the snapshot's revision and key count.
//
// Any failure before step 4 leaves every member running as it was.
//
// It runs on the controller, once for the cluster (run_once), with the
// connections of every member.
package etcd_restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/snapdb"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

func init() { modules.Register("etcd_restore", Module{}) }

// Module is the etcd_restore module.
type Module struct{}

// RunsOnController marks etcd_restore as controller-side.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	// snapshot is a file on the controller (.db, or .db.age to decrypt
	// with etcd_backup_age_identity), s3://BUCKET/KEY in the store of
	// etcd_backup_s3, or "latest" for the newest backup of this cluster
	// on the controller or in the store.
	"snapshot": {Kind: modules.String, Required: true},
	// bump_revision raises the restored revision by this much and marks
	// everything before it compacted (etcdutl --bump-revision
	// --mark-compacted), so clients watching from a revision the snapshot
	// does not have get a compaction error and re-list instead of silently
	// missing updates; Kubernetes' informers depend on it. Default
	// 1000000000 (more writes than any cluster makes between a backup and
	// a disaster), raised when the snapshot is older than a revision the
	// cluster already served (after an earlier restore); 0 restores the
	// revisions as they were.
	"bump_revision": {Kind: modules.Int},
	// skip_hash_check accepts a db copied out of a data dir (no hash).
	"skip_hash_check": {Kind: modules.Bool},
	// token overrides the new cluster token (<token>-restore-<time>).
	"token": {Kind: modules.String},
	// timeout bounds the wait for a healthy cluster after the start.
	"timeout": {Kind: modules.Duration},
}

const (
	defaultTimeout = 2 * time.Minute
	// DefaultBumpRevision is bump_revision's default.
	DefaultBumpRevision = 1_000_000_000
	// StampLayout timestamps the restore: staging and moved-aside dirs,
	// the uploaded snapshot and the new token.
	StampLayout = "20060102T150405Z"
	unit        = etcd.UnitName
)

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	if err := spec.Check(args); err != nil {
		return err
	}
	if strings.TrimSpace(args.Str("snapshot", "")) == "" {
		return &modules.ArgError{Arg: "snapshot", Msg: "is empty: pass -e snapshot=PATH (or snapshot=latest)"}
	}
	if t := args.Str("token", ""); strings.ContainsAny(t, " \t\n,=") {
		return &modules.ArgError{Arg: "token", Msg: fmt.Sprintf("%q must not contain whitespace, ',' or '='", t)}
	}
	if args.Int("bump_revision", DefaultBumpRevision) < 0 {
		return &modules.ArgError{Arg: "bump_revision", Msg: "must not be negative (0 turns it off)"}
	}
	return nil
}

// memberPlan is what happens on one member.
type memberPlan struct {
	Member   etcd.Member
	Probe    hostProbe
	Data     etcd_install.DirLayout
	WAL      etcd_install.DirLayout // zero without a separate WAL dir
	Upload   string                 // snapshot copy on the host
	Stage    string                 // restored data dir before it moves into place
	StageWAL string                 // "" without a separate WAL dir
	Aside    string                 // where the old data dir goes; "" when there is none
	AsideWAL string
	// Leftovers are earlier restores' staging dirs and uploads, removed
	// once this restore has succeeded.
	Leftovers []string
}

// job is the whole plan, handed from Plan to Apply.
type job struct {
	Cluster  *etcd.Cluster
	Snapshot snapdb.Info
	Fetched  *etcd_snapshot.Fetched
	// Bump is --bump-revision (0: off); Before says to snapshot the
	// running cluster first (it has a healthy member).
	Bump    int64
	Before  bool
	Skip    bool
	Stamp   string
	Token   string
	Members []memberPlan
	Timeout time.Duration
}

// Plan verifies the snapshot, probes every member and lays out every step.
// It changes nothing, here or on any host.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	timeout, _ := args.Duration("timeout", defaultTimeout)
	if c.WALDir != "" && strings.HasPrefix(path.Clean(c.WALDir)+"/", path.Clean(c.DataDir)+"/") {
		// Moving the data dir aside would carry the WAL dir with it.
		return nil, fmt.Errorf("etcd_restore: etcd_wal_dir %s is inside etcd_data_dir %s: restore needs them apart (or no etcd_wal_dir)", c.WALDir, c.DataDir)
	}
	fetched, err := etcd_snapshot.Fetch(ctx, env, c, args.Str("snapshot", ""))
	if err != nil {
		return nil, fmt.Errorf("etcd_restore: refusing the snapshot, no member touched: %w", err)
	}
	skip := args.Bool("skip_hash_check", false)
	info, err := snapdb.Inspect(fetched.Path, snapdb.Options{SkipHashCheck: skip})
	if err != nil {
		fetched.Done()
		return nil, fmt.Errorf("etcd_restore: refusing the snapshot %s, no member touched: %w", fetched.From, err)
	}
	if args.Str("token", "") == c.Token {
		return nil, fmt.Errorf("etcd_restore: the new cluster token must differ from the current one (%s)", c.Token)
	}
	hosts := env.Remotes()
	var missing []string
	for _, m := range c.Members {
		if r := hosts[m.Host]; r == nil || !r.Reachable() {
			missing = append(missing, m.Host)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("etcd_restore: every member must be reachable to restore the cluster; not reachable in this play: %s", strings.Join(missing, ", "))
	}

	// The stamp names this restore's dirs and files on every member. A
	// restore run again within the second of one a killed controller left
	// behind would get that run's names, whose staging dirs etcdutl
	// refuses to restore into: the next second's stamp is free.
	var stamp string
	var plans []memberPlan
	for try := 0; ; try++ {
		stamp = time.Now().UTC().Format(StampLayout)
		plans, err = planMembers(ctx, hosts, c, stamp, info.Size)
		if !errors.Is(err, errStampTaken) || try == 2 {
			break
		}
		next := time.Now().Truncate(time.Second).Add(time.Second)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(next)):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("etcd_restore: %w", err)
	}
	token := args.Str("token", "")
	if token == "" {
		token = c.Token + "-restore-" + stamp
	}

	j := &job{Cluster: c, Snapshot: *info, Fetched: fetched, Skip: skip, Stamp: stamp, Token: token, Members: plans, Timeout: timeout,
		Bump: int64(args.Int("bump_revision", DefaultBumpRevision))}
	ch := &modules.Change{}
	// The restored revisions must stay above every revision clients may
	// have seen, or a watcher resuming from one would miss writes. The
	// bump counts from the highest revision served so far (the live
	// cluster's, a newer backup's, the last restore's), not from the
	// snapshot's: the old cluster keeps taking writes until its members
	// stop, and with a snapshot nearly a bump older than the live revision
	// (the soak's seed 20261203, iteration 74) those writes reached the
	// restored cluster's first revision, which then reused it.
	if j.Bump > 0 {
		if served := servedRevision(ctx, env, c); served > info.Revision {
			j.Bump += served - info.Revision
		}
	}
	// The cluster being replaced is snapshotted first when it can be: a
	// restore of the wrong snapshot is then one more restore away from
	// undone. A cluster with no healthy member has nothing to snapshot.
	if h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, etcdclient.Dialer(c, env), etcdclient.CheckOptions{}); err == nil && anyHealthy(h) {
		if err := etcd_snapshot.PlanBefore(ctx, ch, env, c, "the running cluster is replaced"); err != nil {
			return nil, fmt.Errorf("etcd_restore: %w", err)
		}
		j.Before = true
		ch.Add("!", "operation lock", "taken in the running cluster before the snapshot and staging, held until its members stop")
	} else {
		ch.Add("!", "no snapshot of the running cluster", "no member is healthy; the old data dirs are moved aside, never deleted")
	}
	return describe(ch, j), nil
}

// errStampTaken: a path named after the stamp already exists on a member.
var errStampTaken = errors.New("already exists, left by an earlier restore")

// planMembers probes every member and lays out its paths under stamp.
func planMembers(ctx context.Context, hosts map[string]modules.Host, c *etcd.Cluster, stamp string, size int64) ([]memberPlan, error) {
	etcdutl := path.Join(c.Paths.BinDir, "etcdutl")
	plans := make([]memberPlan, len(c.Members))
	err := forEach(ctx, c.Members, func(ctx context.Context, i int, m etcd.Member) error {
		lay, err := etcd_install.ProbeDirs(ctx, hosts[m.Host], dataDirs(c)...)
		if err != nil {
			return err
		}
		// An upload dir that is not a plain dir (a symlink another user
		// planted) is refused by staging, which names it, before any
		// member stops; here it only means no earlier uploads to list.
		var uploads etcd_install.DirLayout
		if up, err := etcd_install.ProbeDirs(ctx, hosts[m.Host], c.Paths.UploadDir); err == nil {
			uploads = up[0]
		}
		// Staging and moved-aside dirs sit on the data dir's own
		// filesystem (inside it when it is a mount point), so the swap
		// is renames only.
		mp := memberPlan{
			Member: m,
			Data:   lay[0],
			Upload: path.Join(c.Paths.UploadDir, "restore-"+stamp+".db"),
			Stage:  lay[0].Beside(stageSuffix(stamp)),
		}
		if lay[0].HasData() {
			mp.Aside = lay[0].Beside(asideSuffix(stamp))
		}
		if c.WALDir != "" {
			mp.WAL = lay[1]
			mp.StageWAL = lay[1].Beside(stageSuffix(stamp))
			if lay[1].HasData() {
				mp.AsideWAL = lay[1].Beside(asideSuffix(stamp))
			}
		}
		mp.Leftovers = leftovers(lay, uploads)
		named := []string{mp.Upload, mp.Stage, mp.StageWAL, mp.Aside, mp.AsideWAL}
		p, taken, err := probe(ctx, hosts[m.Host], etcdutl, c.Paths.UploadDir, named)
		if err != nil {
			return err
		}
		if taken != "" {
			return fmt.Errorf("%s %w", taken, errStampTaken)
		}
		mp.Probe = p
		plans[i] = mp
		return checkHost(mp, etcdutl, size)
	})
	return plans, err
}

// leftovers are the staging dirs and snapshot uploads of earlier restores
// that a killed controller left on the member: copies of a snapshot the
// controller keeps, never data a member ran on (a staging dir moved into
// place is the data dir; old data dirs are set aside as pre-restore-*,
// which stay).
func leftovers(data []etcd_install.DirLayout, uploads etcd_install.DirLayout) []string {
	var out []string
	// stamped: name is prefix, a restore's stamp, suffix.
	stamped := func(name, prefix, suffix string) bool {
		rest, hasPrefix := strings.CutPrefix(name, prefix)
		stamp, hasSuffix := strings.CutSuffix(rest, suffix)
		_, err := time.Parse(StampLayout, stamp)
		return hasPrefix && hasSuffix && err == nil
	}
	for _, l := range data {
		for _, p := range l.Besides {
			if stamped(path.Base(p), path.Base(l.Path)+"."+stageSuffix(""), "") {
				out = append(out, p)
			}
		}
	}
	for _, name := range uploads.Data {
		if stamped(name, "restore-", ".db") {
			out = append(out, path.Join(uploads.Path, name))
		}
	}
	return out
}

func stageSuffix(stamp string) string { return "restore-" + stamp }
func asideSuffix(stamp string) string { return "pre-restore-" + stamp }

func dataDirs(c *etcd.Cluster) []string {
	if c.WALDir != "" {
		return []string{c.DataDir, c.WALDir}
	}
	return []string{c.DataDir}
}

// checkHost refuses a member that cannot be restored, before anything
// happens anywhere.
func checkHost(mp memberPlan, etcdutl string, size int64) error {
	var probs []string
	if !mp.Probe.Etcdutl {
		probs = append(probs, etcdutl+" is missing (run site.yml first: etcd_binary installs it)")
	}
	if !mp.Probe.User {
		probs = append(probs, "no etcd user (run site.yml first: etcd_service creates it)")
	}
	// The restored db is about the snapshot's size, plus its WAL's first
	// segment (64 MiB, preallocated); the old data dir stays where it is.
	// And one more segment: the member keeps running on that disk while
	// staging, and when it cuts its WAL it preallocates the next 64 MiB.
	// Staging must never take the space the live member needs (etcd
	// stops on a WAL write that fails); seen when the cut came mid-restore.
	need := uint64(size + 2*64<<20)
	if mp.Data.FreeBytes < need {
		probs = append(probs, fmt.Sprintf("only %d MiB free on the filesystem of %s, the restore needs about %d MiB", mp.Data.FreeBytes>>20, mp.Data.Path, need>>20))
	}
	// Measured always (at the nearest existing dir): 0 is a full disk.
	if mp.Probe.UpAvailKB < size/1024+1024 {
		probs = append(probs, fmt.Sprintf("only %d MiB free for the uploaded snapshot (%d MiB)", mp.Probe.UpAvailKB/1024, size>>20))
	}
	if len(probs) > 0 {
		return errors.New(strings.Join(probs, "; "))
	}
	return nil
}

// describe turns the plan into the lines --check shows, in the order Apply
// does them.
func describe(ch *modules.Change, j *job) *modules.Change {
	ch.Payload = j
	s := j.Snapshot
	integrity := "integrity hash ok"
	if !s.HasHash {
		integrity = "no integrity hash (skip_hash_check)"
	}
	from := j.Fetched.From
	if j.Fetched.Download {
		from += " (fetched to " + s.Path + ")"
	}
	ch.Actions = append([]modules.Action{{Op: "!", Target: "snapshot " + from, Detail: fmt.Sprintf("verified: revision %d, %d keys, %d bytes, sha256 %s, %s", s.Revision, s.Keys, s.Size, s.SHA256, integrity)}}, ch.Actions...)
	for _, mp := range j.Members {
		h := mp.Member.Host
		ch.Add("+", h+":"+mp.Upload, "upload the snapshot, check its sha256 on the host")
		detail := fmt.Sprintf("etcdutl snapshot restore --name %s --initial-advertise-peer-urls %s", mp.Member.Name, mp.Member.PeerURL)
		if j.Bump > 0 {
			detail += fmt.Sprintf(" --bump-revision %d --mark-compacted", j.Bump)
		}
		if mp.StageWAL != "" {
			detail += " --wal-dir " + mp.StageWAL
		}
		ch.Add("+", h+":"+mp.Stage, detail+" (etcd still running)")
	}
	ch.Add("+", j.Cluster.Paths.RestoreMarker+" on "+hostList(j.Members), "until the members run again: etcd_service starts no member while it is there")
	ch.Add("!", "stop etcd on "+hostList(j.Members), "only after every member's restore succeeded")
	ch.Disruptive = "stops every member and replaces the cluster's data with the snapshot"
	for _, mp := range j.Members {
		h := mp.Member.Host
		if mp.Aside != "" {
			ch.Add("~", h+":"+j.Cluster.DataDir, "moved aside to "+mp.Aside+" (kept, never deleted)")
		}
		if mp.AsideWAL != "" {
			ch.Add("~", h+":"+j.Cluster.WALDir, "moved aside to "+mp.AsideWAL+" (kept, never deleted)")
		}
		ch.Add("~", h+":"+mp.Stage, "moved into place as "+j.Cluster.DataDir+", owner etcd")
		if mp.StageWAL != "" {
			ch.Add("~", h+":"+mp.StageWAL, "moved into place as "+j.Cluster.WALDir+", owner etcd")
		}
	}
	ch.Add("!", "start etcd on "+hostList(j.Members), fmt.Sprintf("all at once; new cluster token %s; initial cluster %s", j.Token, j.Cluster.InitialCluster()))
	ch.Add("!", "verify the restored cluster", fmt.Sprintf("%d healthy members serving revision %d with %d keys", len(j.Members), s.Revision+j.Bump, s.Keys))
	for _, mp := range j.Members {
		for _, p := range mp.Leftovers {
			ch.Add("-", mp.Member.Host+":"+p, "left by an interrupted restore (a copy of its snapshot); removed once this restore is verified")
		}
	}
	return ch
}

func hostList(ms []memberPlan) string {
	n := make([]string, len(ms))
	for i, m := range ms {
		n[i] = m.Member.Host
	}
	return strings.Join(n, ", ")
}

// forEach runs f for every member at once and joins the errors, each
// naming its host.
func forEach(ctx context.Context, ms []etcd.Member, f func(ctx context.Context, i int, m etcd.Member) error) error {
	errs := make([]error, len(ms))
	done := make(chan struct{}, len(ms))
	for i, m := range ms {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := f(ctx, i, m); err != nil {
				errs[i] = fmt.Errorf("%s: %w", m.Host, err)
			}
		}()
	}
	for range ms {
		<-done
	}
	return errors.Join(errs...)
}

// servedRevision is the highest revision the cluster is known to have
// served: the live cluster's, when it answers; the newest one any backup
// on the controller records (a dead cluster's last known); and where the
// last restore started its revisions (a restore that got as far as
// starting the members served from there, even if it then failed).
func servedRevision(ctx context.Context, env *modules.Env, c *etcd.Cluster) int64 {
	var top int64
	if b, err := os.ReadFile(RecordPath(env.StateDir, c)); err == nil {
		var rec record
		if json.Unmarshal(b, &rec) == nil {
			top = rec.Revision + rec.Bump
		}
	}
	if es, err := store.Dir(etcd_snapshot.Dir(env.StateDir, c)).List(ctx); err == nil {
		for _, e := range es {
			top = max(top, e.Meta.Revision)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cli, err := etcdclient.NewClient(rctx, c, env.StateDir, etcdclient.Dialer(c, env))
	if err != nil {
		return top
	}
	defer cli.Close()
	if resp, err := cli.Get(rctx, "health", clientv3.WithCountOnly(), clientv3.WithSerializable()); err == nil {
		top = max(top, resp.Header.Revision)
	}
	return top
}

func anyHealthy(h *etcdclient.Health) bool {
	for _, m := range h.Members {
		if m.Healthy {
			return true
		}
	}
	return false
}
