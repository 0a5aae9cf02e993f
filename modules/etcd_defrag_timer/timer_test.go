package etcd_defrag_timer

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/modules"
)

func rc(extra map[string]any) *modules.ResolveContext {
	hostvars := map[string]any{}
	for i, h := range []string{"etcd1", "etcd2"} {
		hostvars[h] = map[string]any{"ansible_host": "127.0.32." + string(rune('1'+i))}
	}
	vars := map[string]any{"inventory_hostname": "etcd2", "groups": map[string]any{"etcd": []any{"etcd1", "etcd2"}}, "hostvars": hostvars, "ansible_host": "127.0.32.2"}
	for k, v := range extra {
		vars[k] = v
	}
	return &modules.ResolveContext{Host: "etcd2", Vars: vars}
}

func TestResolveGolden(t *testing.T) {
	args, err := module.Resolve(modules.Args{}, rc(map[string]any{
		"etcd_defrag_schedule": "Sun *-*-* 03:00:00", "etcd_defrag_free_above": "64MiB", "etcd_quota_backend_bytes": "8GiB",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := module.Validate(args); err != nil {
		t.Fatalf("resolved args do not validate: %v", err)
	}
	for _, f := range []struct{ arg, golden string }{{"service", "etcd-defrag.service"}, {"timer", "etcd-defrag.timer"}} {
		golden.Check(t, filepath.Join("testdata", f.golden), args.Str(f.arg, ""))
	}
}

func TestResolveStates(t *testing.T) {
	args, err := module.Resolve(modules.Args{}, rc(nil))
	if err != nil || args.Str("state", "") != "absent" {
		t.Errorf("no schedule: %v %v, want state absent", args, err)
	}
	for _, tc := range []struct {
		vars map[string]any
		want string
	}{
		{map[string]any{"etcd_defrag_schedule": "daily\nExecStart=/bin/sh"}, "etcd_defrag_schedule"},
		{map[string]any{"etcd_defrag_schedule": "daily", "etcd_defrag_free_above": "lots"}, "free_above"},
		{map[string]any{"etcd_defrag_schedule": "daily", "etcd_defrag_quota_fraction": "2"}, "quota_fraction"},
	} {
		if _, err := module.Resolve(modules.Args{}, rc(tc.vars)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error naming %s", tc.vars, err, tc.want)
		}
	}
}
