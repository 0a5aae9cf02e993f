// Package etcd_snapshot is the backup task: it takes a snapshot from one
// healthy member (a follower when there is one, so the leader keeps its
// disk for the raft log) through etcd's client API, streams it to the
// controller under <state>/backups/<cluster>/, verifies it (integrity hash,
// database structure, revision and key count) and keeps the newest N.
//
// It runs on the controller and once per play (run_once): the snapshot is
// of the cluster, not of a host.
package etcd_snapshot

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

func init() { modules.Register("etcd_snapshot", Module{}) }

// Module is the etcd_snapshot module.
type Module struct{}

// RunsOnController marks etcd_snapshot as controller-side: it talks to the
// etcd API with the etcdplay client certificate and writes the controller's
// backup directory.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	// dir overrides <state>/backups/<cluster>.
	"dir": {Kind: modules.String},
	// keep is how many snapshots to keep (default etcd_backup_keep, 7).
	"keep": {Kind: modules.Int},
	// member prefers this member (inventory host or etcd name) as source.
	"member": {Kind: modules.String},
	// timeout bounds the whole snapshot transfer.
	"timeout": {Kind: modules.String},
}

const (
	// DefaultKeep is etcd_backup_keep's default: a week of dailies.
	DefaultKeep    = 7
	defaultTimeout = 30 * time.Minute
	// TimeLayout is the UTC timestamp that starts every backup's name, so
	// names sort by time.
	TimeLayout = "20060102T150405Z"
)

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	if err := spec.Check(args); err != nil {
		return err
	}
	if _, ok := args["keep"]; ok && args.Int("keep", DefaultKeep) < 1 {
		return &modules.ArgError{Arg: "keep", Msg: "must be at least 1"}
	}
	_, err := etcd.ArgDuration(args, "timeout", defaultTimeout)
	return err
}

// job is what Plan hands to Apply.
type job struct {
	Cluster *etcd.Cluster
	Source  etcd.Member
	Dir     string
	Keep    int
	Timeout time.Duration
}

// Dir is where the cluster's controller-side backups live.
func Dir(stateDir string, c *etcd.Cluster) string {
	return filepath.Join(stateDir, "backups", c.Name)
}

// Plan picks the source member and says where the snapshot will go and
// which old snapshots retention would remove. It reads only.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	keep, err := keepOf(args, env.Vars)
	if err != nil {
		return nil, err
	}
	timeout, _ := etcd.ArgDuration(args, "timeout", defaultTimeout)
	dir := args.Str("dir", "")
	if dir == "" {
		if env.StateDir == "" {
			return nil, errors.New("etcd_snapshot: no controller state directory")
		}
		dir = Dir(env.StateDir, c)
	}
	h, err := etcd.CheckHealth(ctx, c, env.StateDir, etcd.Dialer(c, env), etcd.CheckOptions{})
	if err != nil {
		return nil, fmt.Errorf("etcd_snapshot: %w", err)
	}
	src, why, err := pickSource(c, h, args.Str("member", ""))
	if err != nil {
		return nil, fmt.Errorf("etcd_snapshot: %w", err)
	}
	existing, err := listBackups(dir)
	if err != nil {
		return nil, fmt.Errorf("etcd_snapshot: %w", err)
	}
	ch := &modules.Change{Payload: &job{Cluster: c, Source: src, Dir: dir, Keep: keep, Timeout: timeout}}
	name := fmt.Sprintf("%s-%s-rev<revision>.db", time.Now().UTC().Format(TimeLayout), src.Name)
	ch.Add("!", "snapshot "+src.Name, fmt.Sprintf("%s; stream to %s, verify hash, revision and keys", why, filepath.Join(dir, name)))
	for _, old := range prunable(existing, keep-1) {
		ch.Add("-", filepath.Join(dir, old), fmt.Sprintf("retention: keep the newest %d", keep))
	}
	return ch, nil
}

// Apply streams, verifies, names and prunes.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	j, ok := ch.Payload.(*job)
	if !ok {
		return nil, errors.New("etcd_snapshot: plan payload missing")
	}
	ctx, cancel := context.WithTimeout(ctx, j.Timeout)
	defer cancel()
	env.Logf("snapshot from %s (%s) to %s", j.Source.Name, j.Source.ClientURL, j.Dir)
	b, err := Save(ctx, j.Cluster, j.Source, env.StateDir, etcd.Dialer(j.Cluster, env), j.Dir)
	if err != nil {
		return nil, fmt.Errorf("etcd_snapshot from %s: %w", j.Source.Name, err)
	}
	removed, err := Prune(j.Dir, j.Keep)
	if err != nil {
		return nil, fmt.Errorf("etcd_snapshot: snapshot %s saved, but retention failed: %w", b.Path, err)
	}
	mb := float64(b.Size) / (1 << 20)
	msg := fmt.Sprintf("%s: revision %d, %d keys, %.1f MiB in %s (%.1f MiB/s)",
		b.Path, b.Revision, b.Keys, mb, b.Took.Round(time.Millisecond), mb/max(b.Took.Seconds(), 1e-6))
	if len(removed) > 0 {
		msg += "; removed " + strings.Join(removed, ", ")
	}
	return &modules.Result{
		Status: modules.StatusChanged,
		Change: ch,
		Msg:    msg,
		Data: map[string]any{
			"path":     b.Path,
			"member":   j.Source.Name,
			"revision": b.Revision,
			"keys":     b.Keys,
			"size":     b.Size,
			"sha256":   b.SHA256,
			"seconds":  b.Took.Seconds(),
			"removed":  removed,
		},
	}, nil
}

func keepOf(args modules.Args, vars map[string]any) (int, error) {
	if _, ok := args["keep"]; ok {
		return args.Int("keep", DefaultKeep), nil
	}
	v := modules.Args(vars)
	if _, ok := v["etcd_backup_keep"]; !ok {
		return DefaultKeep, nil
	}
	n := v.Int("etcd_backup_keep", -1)
	if n < 1 {
		return 0, &etcd.VarError{Var: "etcd_backup_keep", Msg: fmt.Sprintf("%v must be a number of snapshots, at least 1", vars["etcd_backup_keep"])}
	}
	return n, nil
}

// pickSource chooses the member to snapshot: the preferred one if it is
// healthy, else the first healthy follower in inventory order, else the
// healthy leader. It says why in operator terms.
func pickSource(c *etcd.Cluster, h *etcd.Health, prefer string) (etcd.Member, string, error) {
	healthy := map[string]etcd.MemberHealth{}
	for _, m := range h.Members {
		if m.Healthy {
			healthy[m.Host] = m
		}
	}
	if prefer != "" {
		sel, err := c.Select([]string{prefer})
		if err != nil {
			return etcd.Member{}, "", err
		}
		if _, ok := healthy[sel[0].Host]; !ok {
			return etcd.Member{}, "", fmt.Errorf("member %s is not healthy: %s", prefer, strings.Join(h.Problems(), "; "))
		}
		return sel[0], "the member asked for", nil
	}
	var leader *etcd.Member
	for i, m := range c.Members {
		mh, ok := healthy[m.Host]
		if !ok {
			continue
		}
		if mh.IsLeader() {
			leader = &c.Members[i]
			continue
		}
		return m, "a healthy follower", nil
	}
	if leader != nil {
		return *leader, "the leader (no healthy follower)", nil
	}
	return etcd.Member{}, "", fmt.Errorf("no healthy member to take a snapshot from: %s", strings.Join(h.Problems(), "; "))
}
