package etcd_maintenance

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

func TestDefragRule(t *testing.T) {
	c := &etcd.Cluster{Tuning: etcd.Tuning{QuotaBackendBytes: 2 << 30}}
	tests := []struct {
		name        string
		args        modules.Args
		size, inUse int64
		want        string // "" = no defrag
	}{
		{"compact db", nil, 100 << 20, 90 << 20, ""},
		{"much free inside", nil, 500 << 20, 100 << 20, "400.0 MiB free inside the db > 200.0 MiB"},
		{"near the quota", nil, 1800 << 20, 1700 << 20, "db above 80% of the 2048.0 MiB quota"},
		{"lower threshold", modules.Args{"free_above": "10MiB"}, 50 << 20, 30 << 20, "20.0 MiB free inside the db > 10.0 MiB"},
		{"forced", modules.Args{"force": true}, 10 << 20, 10 << 20, "forced"},
		{"fraction", modules.Args{"quota_fraction": "0.5"}, 1100 << 20, 1090 << 20, "db above 50%"},
	}
	for _, tt := range tests {
		r, err := etcd.DefragRuleOf(tt.args, c)
		if err != nil {
			t.Fatal(err)
		}
		got := r.Why(tt.size, tt.inUse)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	for _, bad := range []modules.Args{{"free_above": "lots"}, {"quota_fraction": "2"}, {"quota_fraction": "0"}} {
		if err := (defragModule{}).Validate(bad); err == nil {
			t.Errorf("Validate(%v) accepted", bad)
		}
	}
	if err := (compactModule{}).Validate(modules.Args{"keep": 0}); err == nil {
		t.Error("keep 0 accepted")
	}
}

// TestConsistencyAgrees: the members of a real (in-process) cluster with
// writes behind it agree on their KV hash, and the check changes nothing.
func TestConsistencyAgrees(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	ctx := context.Background()
	cli := tc.Client()
	for i := range 50 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	var logged []string
	env := &modules.Env{Host: "etcd1", Vars: tc.Vars, StateDir: tc.StateDir, Log: func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }}
	ch, err := consistencyModule{}.Plan(ctx, env, modules.Args{})
	if err != nil || !ch.Empty() {
		t.Fatalf("consistency on a healthy cluster: %v %v", ch, err)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "3 members agree on the KV hash at revision") {
		t.Errorf("log: %q", logged)
	}
}

func TestMajorityNamed(t *testing.T) {
	if got := tie([][]string{{"a", "b"}, {"c"}}); got != "" {
		t.Errorf("2-1 split called a tie: %q", got)
	}
	if got := tie([][]string{{"a"}, {"b"}}); !strings.Contains(got, "no majority") {
		t.Errorf("1-1 split: %q", got)
	}
}
