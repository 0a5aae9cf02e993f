package etcd_restore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/oplock"
)

// Marker is the restore-in-progress file (etcd.HostPaths.RestoreMarker):
// on every member from before the first stop until the members run again
// on one data set. A controller killed in between leaves it, and
// etcd_service then refuses to start the member, because some members may
// have the restored data and others the old: started together they would
// be two clusters. Re-running the restore finishes the job.
type Marker struct {
	Stamp      string `json:"stamp"`
	Snapshot   string `json:"snapshot"`
	SHA256     string `json:"sha256"`
	Token      string `json:"token"`
	Controller string `json:"controller"`
	// Aside and Stage are this host's moved-aside old data dir and the
	// staged restored one, for an operator who recovers by hand.
	Aside string `json:"aside,omitempty"`
	Stage string `json:"stage"`
}

// markAll writes the marker on every member; on an error it takes back
// the ones written.
func markAll(ctx context.Context, hosts map[string]modules.HostWriter, j *job) error {
	host, _ := os.Hostname()
	err := forEach(ctx, members(j), func(ctx context.Context, i int, m etcd.Member) error {
		mp := j.Members[i]
		b, err := json.MarshalIndent(Marker{Stamp: j.Stamp, Snapshot: j.Fetched.From, SHA256: j.Snapshot.SHA256, Token: j.Token,
			Controller: fmt.Sprintf("etcdplay pid %d on %s", os.Getpid(), host), Aside: mp.Aside, Stage: mp.Stage}, "", "  ")
		if err != nil {
			return err
		}
		return hosts[m.Host].Upload(ctx, bytes.NewReader(append(b, '\n')), j.Cluster.Paths.RestoreMarker, 0o600)
	})
	if err != nil {
		return fmt.Errorf("writing %s: %w", j.Cluster.Paths.RestoreMarker, errors.Join(err, unmarkAll(ctx, hosts, j)))
	}
	return nil
}

// unmarkAll removes the marker from every member.
func unmarkAll(ctx context.Context, hosts map[string]modules.HostWriter, j *job) error {
	return forEach(ctx, members(j), func(ctx context.Context, _ int, m etcd.Member) error {
		_, err := command.Run(ctx, hosts[m.Host], "rm", "-f", "--", j.Cluster.Paths.RestoreMarker)
		return err
	})
}

// lockCluster takes the operation lock in the running cluster, so no
// rolling restart, membership change or upgrade has a member down while
// the restore stages and then stops every member. A cluster without a
// leader takes no writes, so no other run can take the lock either: the
// restore goes on without it (the disaster it exists for).
func lockCluster(ctx context.Context, env *modules.Env, c *etcd.Cluster, timeout time.Duration) (*oplock.Held, func(), error) {
	dial := etcdclient.Dialer(c, env)
	h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, dial, etcdclient.CheckOptions{ProbeTimeout: 2 * time.Second})
	if err != nil {
		return nil, func() {}, err
	}
	if _, ok := h.Leader(); !ok {
		env.Logf("restore: the running cluster has no leader, so it takes no writes and no run can hold the operation lock: going on without it")
		return nil, func() {}, nil
	}
	cli, err := etcdclient.NewClient(ctx, c, env.StateDir, dial)
	if err != nil {
		return nil, func() {}, err
	}
	held, err := oplock.Acquire(ctx, cli, "restore", timeout, env.Logf)
	if err != nil {
		cli.Close()
		return nil, func() {}, err
	}
	return held, func() { _ = cli.Close() }, nil
}

func members(j *job) []etcd.Member {
	ms := make([]etcd.Member, len(j.Members))
	for i, mp := range j.Members {
		ms[i] = mp.Member
	}
	return ms
}
