package etcd_maintenance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// compactModule is etcd_compact.
type compactModule struct{ controllerSide }

var compactSpec = modules.Spec{
	// keep: revisions kept behind the current one (etcd_compact_keep,
	// default 10000): watchers that fall this far behind must re-list.
	"keep":    {Kind: modules.Int},
	"timeout": {Kind: modules.Duration},
}

const defaultKeep = 10000

func (compactModule) Validate(args modules.Args) error {
	if err := compactSpec.Check(args); err != nil {
		return err
	}
	if k := args.Int("keep", defaultKeep); k < 1 {
		return &modules.ArgError{Arg: "keep", Msg: fmt.Sprintf("must be at least 1, got %d", k)}
	}
	return nil
}

type compactJob struct {
	Cluster *etcd.Cluster
	Target  int64
	Timeout time.Duration
}

// keepOf is the retention: the argument, else etcd_compact_keep.
func keepOf(args modules.Args, vars map[string]any) int64 {
	if _, ok := args["keep"]; ok {
		return int64(args.Int("keep", defaultKeep))
	}
	return int64(modules.Args(vars).Int("etcd_compact_keep", defaultKeep))
}

// Plan reads the current revision and whether history older than the
// retention (plus a tenth of it, at least 10 revisions, so a few writes
// do not make every run compact again) is still there.
func (compactModule) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	if _, err := healthFor(ctx, env, c, "etcd_compact"); err != nil {
		return nil, err
	}
	keep := keepOf(args, env.Vars)
	cli, err := etcdclient.NewClient(ctx, c, env.StateDir, etcdclient.Dialer(c, env))
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return nil, fmt.Errorf("etcd_compact: %w", err)
	}
	rev := resp.Header.Revision
	// Keeping K revisions means the current one and the K-1 before it
	// (keep 1: compact everything but the current state).
	target := rev - keep + 1
	probe := target - max(keep/10, 10)
	if probe < 1 {
		return &modules.Change{}, nil // less history than the retention
	}
	if _, err := cli.Get(ctx, "\x00", clientv3.WithCountOnly(), clientv3.WithRev(probe)); errors.Is(err, rpctypes.ErrCompacted) {
		return &modules.Change{}, nil // compacted recently enough
	} else if err != nil {
		return nil, fmt.Errorf("etcd_compact: %w", err)
	}
	ch := &modules.Change{Payload: &compactJob{Cluster: c, Target: target, Timeout: timeoutArg(args, 2*time.Minute)}}
	ch.Add("~", fmt.Sprintf("compact to revision %d", target), fmt.Sprintf("current revision %d, keeping the last %d; physical (awaited)", rev, keep))
	return ch, nil
}

func (compactModule) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	j := ch.Payload.(*compactJob)
	cctx, cancel := context.WithTimeout(ctx, j.Timeout)
	defer cancel()
	cli, err := etcdclient.NewClient(cctx, j.Cluster, env.StateDir, etcdclient.Dialer(j.Cluster, env))
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	start := time.Now()
	if _, err := cli.Compact(cctx, j.Target, clientv3.WithCompactPhysical()); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return nil, fmt.Errorf("etcd_compact: compact to revision %d: %w", j.Target, err)
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch, Data: map[string]any{"revision": j.Target},
		Msg: fmt.Sprintf("compacted to revision %d in %s", j.Target, time.Since(start).Round(time.Millisecond))}, nil
}
