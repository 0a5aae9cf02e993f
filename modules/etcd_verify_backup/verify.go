// Package etcd_verify_backup proves a backup restores: it fetches the
// snapshot (from the controller or the store, decrypting it), restores it
// with the cluster's own etcdutl into a scratch dir on the controller,
// starts a throw-away etcd on it bound to 127.0.0.1 only, checks that it
// serves the revision and key count the backup's metadata records, then
// stops it and removes the scratch dir. No host is contacted: the etcd
// release comes from the controller's verified release cache (the one
// etcd_binary installs from).
//
// The outcome is the task's result and a Prometheus textfile metric,
// <state>/backups/<cluster>/verify.prom, for alerting on backups that no
// longer restore.
package etcd_verify_backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_binary"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/snapdb"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

func init() { modules.Register("etcd_verify_backup", Module{}) }

// Module is the etcd_verify_backup module.
type Module struct{}

// RunsOnController marks it controller-side: everything happens on the
// controller.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	// snapshot is what restore.yml's snapshot= takes; default latest.
	"snapshot": {Kind: modules.String},
	// timeout bounds the throw-away etcd's start.
	"timeout": {Kind: modules.Duration},
}

const defaultTimeout = 2 * time.Minute

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	return spec.Check(args)
}

type job struct {
	Cluster *etcd.Cluster
	Snap    *etcd_snapshot.Located
	Timeout time.Duration
}

// Plan finds the snapshot and says what will run where. It downloads
// nothing.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != c.Arch {
		return nil, fmt.Errorf("etcd_verify_backup runs etcd %s (linux/%s) on the controller, which is %s/%s", c.Version, c.Arch, runtime.GOOS, runtime.GOARCH)
	}
	timeout, _ := args.Duration("timeout", defaultTimeout)
	l, err := etcd_snapshot.Locate(ctx, env, c, args.Str("snapshot", "latest"))
	if err != nil {
		return nil, fmt.Errorf("etcd_verify_backup: %w", err)
	}
	ch := &modules.Change{Payload: &job{Cluster: c, Snap: l, Timeout: timeout}}
	how := "fetch"
	if l.Encrypted() {
		how = "fetch and decrypt"
	}
	ch.Add("!", l.From(), how+", check its sha256 and integrity hash")
	ch.Add("+", filepath.Join(scratchRoot(env.StateDir, c), "<time>"), "scratch dir on the controller: etcdutl snapshot restore (etcd "+c.Version.String()+" from the release cache)")
	want := "the revision and key count in its metadata"
	if m, ok := l.Meta(); ok {
		want = fmt.Sprintf("revision %d and %d keys (its metadata)", m.Revision, m.Keys)
	}
	ch.Add("!", "throw-away etcd on 127.0.0.1", "serves "+want+"; then stopped")
	ch.Add("-", "the scratch dir", "removed; no host and no member is contacted")
	return ch, nil
}

func scratchRoot(stateDir string, c *etcd.Cluster) string {
	return filepath.Join(stateDir, c.Name, "verify")
}

// Outcome is one verification.
type Outcome struct {
	From     string
	Revision int64
	Keys     int64
	Took     time.Duration
}

// Apply fetches, restores, serves, checks and cleans up, and records the
// outcome in the metric file whatever it is.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	j, ok := ch.Payload.(*job)
	if !ok {
		return nil, errors.New("etcd_verify_backup: plan payload missing")
	}
	start := time.Now()
	out, err := verify(ctx, env, j)
	metrics := writeMetrics(etcd_snapshot.Dir(env.StateDir, j.Cluster), j.Cluster.Name, j.Snap.From(), out, err, start)
	if err != nil {
		return nil, fmt.Errorf("etcd_verify_backup: %s does not restore: %w", j.Snap.From(), err)
	}
	msg := fmt.Sprintf("%s restores: etcd served revision %d with %d keys, as its metadata says, in %s", out.From, out.Revision, out.Keys, out.Took.Round(time.Millisecond))
	if metrics != nil {
		msg += fmt.Sprintf(" (metric file not written: %v)", metrics)
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch, Msg: msg,
		Data: map[string]any{"snapshot": out.From, "revision": out.Revision, "keys": out.Keys, "seconds": out.Took.Seconds()}}, nil
}

func verify(ctx context.Context, env *modules.Env, j *job) (*Outcome, error) {
	start := time.Now()
	c := j.Cluster
	f, err := j.Snap.Fetch(ctx)
	if err != nil {
		return nil, err
	}
	defer f.Done()
	info, err := snapdb.Inspect(f.Path, snapdb.Options{})
	if err != nil {
		return nil, err
	}
	want := store.Meta{Revision: info.Revision, Keys: info.Keys}
	if f.HasMeta {
		want = f.Meta
		if info.Revision != want.Revision || info.Keys != want.Keys {
			return nil, fmt.Errorf("the snapshot holds revision %d and %d keys, its metadata says %d and %d", info.Revision, info.Keys, want.Revision, want.Keys)
		}
	}
	bin, err := tools(ctx, env, c)
	if err != nil {
		return nil, err
	}
	env.Logf("verify: restoring %s into a throw-away etcd on 127.0.0.1", f.From)
	rev, keys, err := etcd_snapshot.Prove(ctx, bin, f.Path, want, scratchRoot(env.StateDir, c), j.Timeout)
	if err != nil {
		return nil, err
	}
	return &Outcome{From: f.From, Revision: rev, Keys: keys, Took: time.Since(start)}, nil
}

// tools are the cluster's etcd and etcdutl on the controller, unpacked
// from the verified release cache into <state>/<cluster>/tools/<version>.
func tools(ctx context.Context, env *modules.Env, c *etcd.Cluster) (string, error) {
	rel, err := etcd_binary.Fetch(ctx, c, env.StateDir, env.Logf)
	if err != nil {
		return "", err
	}
	a := etcd_install.InstallArgs{Version: c.Version.String(), Tarball: rel.Path, SHA256: rel.Files, InstallRoot: filepath.Join(env.StateDir, c.Name, "tools")}
	dir := filepath.Join(a.InstallRoot, a.Version)
	if _, err := os.Stat(filepath.Join(dir, "etcdutl")); err == nil {
		return dir, nil
	}
	if err := etcd_install.Unpack(a); err != nil {
		return "", err
	}
	return dir, nil
}

// writeMetrics records the outcome as a Prometheus textfile, replaced
// atomically.
func writeMetrics(dir, cluster, from string, out *Outcome, verr error, start time.Time) error {
	ok := 0
	if verr == nil {
		ok = 1
	}
	lbl := fmt.Sprintf("cluster=%q", cluster)
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP etcdplay_backup_verify_success 1 when the newest verification of a backup restored and served what it records.\n")
	fmt.Fprintf(&b, "# TYPE etcdplay_backup_verify_success gauge\netcdplay_backup_verify_success{%s,snapshot=%q} %d\n", lbl, from, ok)
	fmt.Fprintf(&b, "# TYPE etcdplay_backup_verify_timestamp_seconds gauge\netcdplay_backup_verify_timestamp_seconds{%s} %d\n", lbl, start.Unix())
	fmt.Fprintf(&b, "# TYPE etcdplay_backup_verify_duration_seconds gauge\netcdplay_backup_verify_duration_seconds{%s} %.3f\n", lbl, time.Since(start).Seconds())
	if out != nil {
		fmt.Fprintf(&b, "# TYPE etcdplay_backup_verify_revision gauge\netcdplay_backup_verify_revision{%s} %d\n", lbl, out.Revision)
		fmt.Fprintf(&b, "# TYPE etcdplay_backup_verify_keys gauge\netcdplay_backup_verify_keys{%s} %d\n", lbl, out.Keys)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return store.WriteFile(filepath.Join(dir, "verify.prom"), strings.NewReader(b.String()))
}
