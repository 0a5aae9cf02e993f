// Package etcd_snapshot is the backup task: it takes a snapshot from one
// healthy member (a follower when there is one, so the leader keeps its
// disk for the raft log) through etcd's client API, streams it to the
// controller under <state>/backups/<cluster>/, verifies it (integrity hash,
// database structure, revision and key count), writes its metadata,
// uploads it to the S3 store when there is one (age-encrypted when there
// are recipients) and applies tiered retention to both places.
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
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
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
	// keep is how many snapshots to keep, replacing etcd_backup_retention
	// (default: etcd_backup_retention, else the newest etcd_backup_keep, 7).
	"keep": {Kind: modules.Int},
	// member prefers this member (inventory host or etcd name) as source.
	"member": {Kind: modules.String},
	// timeout bounds the whole snapshot transfer.
	"timeout": {Kind: modules.Duration},
}

const (
	// DefaultKeep is etcd_backup_keep's default: a week of dailies.
	DefaultKeep    = 7
	defaultTimeout = 30 * time.Minute
)

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	if err := spec.Check(args); err != nil {
		return err
	}
	if _, ok := args["keep"]; ok && args.Int("keep", DefaultKeep) < 1 {
		return &modules.ArgError{Arg: "keep", Msg: "must be at least 1"}
	}
	return nil
}

// job is what Plan hands to Apply.
type job struct {
	Cluster *etcd.Cluster
	Source  etcd.Member
	Target  *Target
	Timeout time.Duration
}

// Dir is where the cluster's controller-side backups live.
func Dir(stateDir string, c *etcd.Cluster) string {
	return filepath.Join(stateDir, "backups", c.Name)
}

// Plan picks the source member, proves the store answers, and says where
// the snapshot will go and which old backups retention would remove. It
// reads only.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	if _, err := keepOf(args, env.Vars); err != nil {
		return nil, err
	}
	timeout, _ := args.Duration("timeout", defaultTimeout)
	t, err := OpenTarget(ctx, env, c, args.Str("dir", ""))
	if err != nil {
		return nil, fmt.Errorf("etcd_snapshot: %w", err)
	}
	if _, ok := args["keep"]; ok {
		t.Config.Policy = store.Policy{Last: args.Int("keep", DefaultKeep)}
	}
	h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, etcdclient.Dialer(c, env), etcdclient.CheckOptions{})
	if err != nil {
		return nil, fmt.Errorf("etcd_snapshot: %w", err)
	}
	src, why, err := pickSource(c, h, args.Str("member", ""))
	if err != nil {
		return nil, fmt.Errorf("etcd_snapshot: %w", err)
	}
	ch := &modules.Change{Payload: &job{Cluster: c, Source: src, Target: t, Timeout: timeout}}
	if err := t.Describe(ctx, ch, src, why); err != nil {
		return nil, fmt.Errorf("etcd_snapshot: %w", err)
	}
	return ch, nil
}

// Apply streams, verifies, names, uploads and prunes.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	j, ok := ch.Payload.(*job)
	if !ok {
		return nil, errors.New("etcd_snapshot: plan payload missing")
	}
	ctx, cancel := context.WithTimeout(ctx, j.Timeout)
	defer cancel()
	env.Logf("snapshot from %s (%s) to %s", j.Source.Name, j.Source.ClientURL, j.Target.Dir)
	b, err := j.Target.Take(ctx, j.Cluster, j.Source, env.StateDir, etcdclient.Dialer(j.Cluster, env))
	if err != nil {
		return nil, fmt.Errorf("etcd_snapshot from %s: %w", j.Source.Name, err)
	}
	return &modules.Result{
		Status: modules.StatusChanged,
		Change: ch,
		Msg:    b.Summary(),
		Data: map[string]any{
			"path":     b.Path,
			"object":   b.Object,
			"member":   j.Source.Name,
			"revision": b.Revision,
			"keys":     b.Keys,
			"size":     b.Size,
			"sha256":   b.SHA256,
			"seconds":  b.Took.Seconds(),
			"removed":  b.Removed,
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
func pickSource(c *etcd.Cluster, h *etcdclient.Health, prefer string) (etcd.Member, string, error) {
	healthy := map[string]etcdclient.MemberHealth{}
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
