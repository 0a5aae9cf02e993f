package etcd_health

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/modules"
)

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		args modules.Args
		ok   bool
	}{
		{modules.Args{}, true},
		{modules.Args{"timeout": "90s", "members": []any{"etcd1"}}, true},
		{modules.Args{"timeout": 30}, true},
		{modules.Args{"timeout": "soon"}, false},
		{modules.Args{"timeout": -1}, false},
		{modules.Args{"timout": "1s"}, false},
	} {
		if err := (Module{}).Validate(tt.args); (err == nil) != tt.ok {
			t.Errorf("Validate(%v) = %v", tt.args, err)
		}
	}
}

func TestWaitsAndNamesUnhealthyMembers(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	env := &modules.Env{Host: "etcd1", Vars: tc.Vars, StateDir: tc.StateDir}
	ctx := context.Background()
	c, err := Module{}.Plan(ctx, env, modules.Args{})
	if err != nil || !c.Empty() {
		t.Fatalf("healthy cluster: %v %v", c, err)
	}
	tc.Stop(2)
	start := time.Now()
	_, err = Module{}.Plan(ctx, env, modules.Args{"timeout": "1s"})
	if err == nil || !strings.Contains(err.Error(), "etcd3") {
		t.Fatalf("err = %v, want etcd3 named", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("1s timeout took %s", d)
	}
	// Only the live members asked for: ok.
	if _, err := (Module{}).Plan(ctx, env, modules.Args{"members": []any{"etcd1", "etcd2"}}); err != nil {
		t.Errorf("live members: %v", err)
	}
	// Check mode never fails on an unhealthy cluster.
	env.Check = true
	if _, err := (Module{}).Plan(ctx, env, modules.Args{"timeout": "1s"}); err != nil {
		t.Errorf("check mode: %v", err)
	}
}
