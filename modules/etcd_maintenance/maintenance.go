// Package etcd_maintenance holds the keyspace maintenance modules, the
// runbook of seeds 001 and 003 (compact, defrag, `endpoint status`, alarm
// list and disarm) done safely:
//
//   - etcd_compact compacts the keyspace to the current revision minus a
//     retention (etcd_compact_keep revisions), physically, through the API;
//   - etcd_defrag defragments, one member at a time through the rolling
//     primitive (followers first, the leader last, each caught up before
//     the next), only the members a rule says need it: free space inside
//     the db above a size, or the db above a fraction of the quota;
//   - etcd_alarm disarms NOSPACE only once every member's db is back under
//     the quota, then proves a write goes through; CORRUPT is never
//     disarmed: it names the member and the runbook that replaces it.
//
// They run on the controller, once for the cluster (run_once), through the
// members' own SSH connections.
package etcd_maintenance

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

func init() {
	modules.Register("etcd_compact", compactModule{})
	modules.Register("etcd_defrag", defragModule{})
	modules.Register("etcd_alarm", alarmModule{})
}

// controllerSide marks the modules controller-side.
type controllerSide struct{}

func (controllerSide) RunsOnController() {}

// nospace is the alarm defrag cures, so maintenance runs while it is
// raised.
const nospace = "NOSPACE"

// healthFor checks the cluster for maintenance: every member must answer,
// with one leader; a NOSPACE alarm is allowed (maintenance is its cure),
// any other problem refuses.
func healthFor(ctx context.Context, env *modules.Env, c *etcd.Cluster, what string) (*etcdclient.Health, error) {
	h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, etcdclient.Dialer(c, env), etcdclient.CheckOptions{IgnoreAlarms: []string{nospace}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if probs := h.Problems(); len(probs) > 0 {
		return nil, fmt.Errorf("%s: refusing, nothing was changed: the cluster is not healthy: %s", what, strings.Join(probs, "; "))
	}
	return h, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func timeoutArg(args modules.Args, def time.Duration) time.Duration {
	d, _ := args.Duration("timeout", def)
	return d
}
