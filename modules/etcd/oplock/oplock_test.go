package oplock_test

// The real thing exercised: etcd's own server (three members in-process,
// internal/etcdtest), losing its leader while a run waits for the lock.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd/oplock"
)

// TestAcquireWaitsOutALeaderlessCluster: a lock taken while the cluster
// has no leader (two of three members down) is retried, not failed, and
// is taken once the members are back. CI once failed a second operator's
// run this way, its lock attempt landing in the leadership transfer of
// the first run's rolling restart ("raft proposal dropped").
func TestAcquireWaitsOutALeaderlessCluster(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	cli := tc.Client()
	tc.Stop(1)
	tc.Stop(2)

	type result struct {
		held *oplock.Held
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	go func() {
		h, err := oplock.Acquire(context.Background(), cli, "test", time.Minute, t.Logf)
		done <- result{h, err, time.Now()}
	}()
	outage := 3 * time.Second
	time.Sleep(outage)
	select {
	case r := <-done:
		t.Fatalf("Acquire ended while the cluster had no leader: %v", r.err)
	default:
	}
	back := time.Now()
	tc.Restart(1)
	tc.Restart(2)
	r := <-done
	if r.err != nil {
		t.Fatalf("Acquire after the leader came back: %v", r.err)
	}
	defer r.held.Release()
	t.Logf("lock taken %s after the members were back", r.at.Sub(back).Round(time.Millisecond))
	resp, err := cli.Get(context.Background(), oplock.Key)
	if err != nil || len(resp.Kvs) != 1 || !strings.HasPrefix(string(resp.Kvs[0].Value), "test by etcdplay pid") {
		t.Fatalf("the lock key after Acquire: %v %v", resp, err)
	}
}

// TestAcquireGivesUpOnALostQuorum: a cluster that stays without a leader
// is not waited on for the whole (long) lock timeout: Acquire gives up
// after the lease's TTL, saying why.
func TestAcquireGivesUpOnALostQuorum(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	cli := tc.Client()
	tc.Stop(1)
	tc.Stop(2)
	start := time.Now()
	_, err := oplock.Acquire(context.Background(), cli, "test", 10*time.Minute, nil)
	took := time.Since(start)
	if err == nil || !etcdclient.Transient(err) || !strings.Contains(err.Error(), "no quorum?") {
		t.Fatalf("Acquire on a cluster without quorum: %v, want the cluster's error and the remedy", err)
	}
	if limit := 3 * oplock.TTL * time.Second; took > limit {
		t.Errorf("Acquire gave up after %s, want within %s", took, limit)
	}
	t.Logf("gave up after %s: %v", took.Round(time.Millisecond), err)
}
