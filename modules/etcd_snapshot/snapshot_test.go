package etcd_snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/snapdb"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		args modules.Args
		ok   bool
	}{
		{modules.Args{}, true},
		{modules.Args{"keep": 3, "member": "etcd2", "timeout": "5m", "dir": "/b"}, true},
		{modules.Args{"keep": 0}, false},
		{modules.Args{"keep": "many"}, false},
		{modules.Args{"timeout": "soon"}, false},
		{modules.Args{"kepe": 3}, false},
	} {
		if err := (Module{}).Validate(tt.args); (err == nil) != tt.ok {
			t.Errorf("Validate(%v) = %v", tt.args, err)
		}
	}
}

// TestSnapshotFromFollowerVerifiedAndPruned takes real snapshots of an
// in-process TLS cluster and checks them against what the cluster says.
func TestSnapshotFromFollowerVerifiedAndPruned(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	cli := tc.Client()
	ctx := context.Background()
	for i := range 200 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%03d", i), strings.Repeat("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Deleted keys must not count, re-put ones must.
	if _, err := cli.Delete(ctx, "k1", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k100", "back"); err != nil {
		t.Fatal(err)
	}
	want, err := cli.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(tc.StateDir, "backups", "etcd")
	env := &modules.Env{Host: "etcd1", Vars: tc.Vars, StateDir: tc.StateDir}
	var paths []string
	for round := range 3 {
		ch, err := Module{}.Plan(ctx, env, modules.Args{"keep": 2})
		if err != nil {
			t.Fatal(err)
		}
		j := ch.Payload.(*job)
		leader := tc.LeaderIndex()
		if j.Source.Name == tc.Model.Members[leader].Name {
			t.Errorf("round %d: source %s is the leader; want a follower", round, j.Source.Name)
		}
		if j.Target.Dir != dir {
			t.Errorf("dir = %s, want %s", j.Target.Dir, dir)
		}
		wantPrune := max(0, round+1-2)
		if got := countOp(ch, "-"); got != wantPrune {
			t.Errorf("round %d: plan prunes %d, want %d: %v", round, got, wantPrune, ch.Actions)
		}
		res, err := Module{}.Apply(ctx, env, ch)
		if err != nil {
			t.Fatal(err)
		}
		p := res.Data["path"].(string)
		paths = append(paths, p)
		if res.Data["revision"].(int64) != want.Header.Revision+int64(round) {
			t.Errorf("revision %v, cluster at %d", res.Data["revision"], want.Header.Revision+int64(round))
		}
		if res.Data["keys"].(int) != int(want.Count)+round {
			t.Errorf("keys %v, cluster has %d", res.Data["keys"], want.Count+int64(round))
		}
		if !strings.HasPrefix(filepath.Base(p), "20") || !strings.Contains(p, "-"+j.Source.Name+"-rev") {
			t.Errorf("name %s", p)
		}
		info, err := snapdb.Inspect(p, snapdb.Options{})
		if err != nil || !info.HashOK || info.SHA256 != res.Data["sha256"] || info.Size != res.Data["size"] {
			t.Errorf("re-inspect %s: %+v %v", p, info, err)
		}
		// The next round's snapshot has one more revision and key, so
		// retention order is tested within one second too.
		if _, err := cli.Put(ctx, fmt.Sprintf("round%d", round), "x"); err != nil {
			t.Fatal(err)
		}
	}
	left, _ := store.Dir(dir).List(ctx)
	if len(left) != 2 || filepath.Join(dir, left[0].Name) != paths[1] || filepath.Join(dir, left[1].Name) != paths[2] {
		t.Errorf("after 3 backups with keep 2: %v, want the last two of %v", left, paths)
	}
	for _, e := range left {
		m := e.Meta
		if !e.HasMeta || m.Cluster != "etcd" || m.ClusterID == "" || m.EtcdVersion == "" || !m.Verified || m.Origin != OriginController || m.Encrypted {
			t.Errorf("metadata of %s: %+v", e.Name, m)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		t.Errorf("want 2 snapshots and their 2 metadata files, have %d entries", len(ents))
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".partial") {
			t.Errorf("temp file left behind: %s", e.Name())
		}
	}
	if st, _ := os.Stat(paths[2]); st.Mode().Perm()&0o077 != 0 {
		t.Errorf("backup mode %v: a snapshot holds every secret in the cluster", st.Mode())
	}

	// The controller's clock went back: two backups are dated after now.
	// The new one, the "oldest" by its name, is kept, and the run says why.
	for i, y := range []int{2098, 2099} {
		m := store.Meta{Cluster: "etcd", Member: "etcd1", Revision: int64(i + 1), Time: time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC), Origin: OriginController, Verified: true}
		if err := store.Dir(dir).Put(ctx, m, strings.NewReader("from the future"), 0); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := Module{}.Plan(ctx, env, modules.Args{"keep": 2})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Module{}.Apply(ctx, env, ch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(res.Data["path"].(string)); err != nil {
		t.Errorf("the backup taken with the clock behind was pruned: %v", err)
	}
	if !strings.Contains(res.Msg, "WARNING: the controller's clock") || !strings.Contains(res.Msg, "2099-01-01") {
		t.Errorf("no warning about the clock: %s", res.Msg)
	}
}

func countOp(ch *modules.Change, op string) int {
	n := 0
	for _, a := range ch.Actions {
		if a.Op == op {
			n++
		}
	}
	return n
}

func TestSourceChoice(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	ctx := context.Background()
	env := &modules.Env{Host: "etcd1", Vars: tc.Vars, StateDir: tc.StateDir, Check: true}

	// An explicit member wins, even the leader.
	leader := tc.Model.Members[tc.LeaderIndex()]
	ch, err := Module{}.Plan(ctx, env, modules.Args{"member": leader.Host})
	if err != nil || ch.Payload.(*job).Source.Name != leader.Name {
		t.Fatalf("member %s: %v %v", leader.Host, ch, err)
	}
	if !strings.Contains(ch.Actions[0].String(), "snapshot "+leader.Name) {
		t.Errorf("plan line %q", ch.Actions[0])
	}
	// Down members are never picked; an explicit down member is an error
	// that names the problem.
	follower := -1
	for i := range tc.Model.Members {
		if i != tc.LeaderIndex() {
			follower = i
			break
		}
	}
	down := tc.Model.Members[follower]
	tc.Stop(follower)
	for range 3 {
		ch, err = Module{}.Plan(ctx, env, modules.Args{})
		if err != nil {
			t.Fatal(err)
		}
		if ch.Payload.(*job).Source.Name == down.Name {
			t.Fatalf("picked the stopped member %s", down.Name)
		}
	}
	_, err = Module{}.Plan(ctx, env, modules.Args{"member": down.Host})
	if err == nil || !strings.Contains(err.Error(), "not healthy") {
		t.Errorf("stopped member asked for: %v", err)
	}
	if _, err := (Module{}).Plan(ctx, env, modules.Args{"member": "web9"}); err == nil {
		t.Error("unknown member accepted")
	}
}

func TestKeepFromVars(t *testing.T) {
	for _, tt := range []struct {
		args modules.Args
		vars map[string]any
		want int
		ok   bool
	}{
		{modules.Args{}, map[string]any{}, DefaultKeep, true},
		{modules.Args{}, map[string]any{"etcd_backup_keep": "3"}, 3, true},
		{modules.Args{"keep": 5}, map[string]any{"etcd_backup_keep": 3}, 5, true},
		{modules.Args{}, map[string]any{"etcd_backup_keep": 0}, 0, false},
		{modules.Args{}, map[string]any{"etcd_backup_keep": "lots"}, 0, false},
	} {
		got, err := keepOf(tt.args, tt.vars)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("keepOf(%v, %v) = %d, %v", tt.args, tt.vars, got, err)
		}
	}
}

// TestSaveTwiceInOneSecond: back-to-back backups of an unchanged cluster
// get the same name; the second must succeed and keep one file.
func TestSaveTwiceInOneSecond(t *testing.T) {
	tc := etcdtest.Start(t, 1)
	dir := t.TempDir()
	m := tc.Model.Members[0]
	ctx := context.Background()
	same := 0
	for range 3 {
		a, err := Save(ctx, tc.Model, m, tc.StateDir, nil, dir)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Save(ctx, tc.Model, m, tc.StateDir, nil, dir)
		if err != nil {
			t.Fatalf("second backup right after the first: %v", err)
		}
		if a.Path == b.Path {
			same++
		}
	}
	if same == 0 {
		t.Skip("no two backups fell in the same second on this machine")
	}
	names, _ := store.Dir(dir).List(ctx)
	if len(names) > 6-same {
		t.Errorf("%d files for %d distinct names: %v", len(names), 6-same, names)
	}
}
