package etcd_backup_timer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/modules"
)

func rc(host string, extra map[string]any) *modules.ResolveContext {
	hosts := []any{"etcd1", "etcd2"}
	hostvars := map[string]any{}
	for i, h := range []string{"etcd1", "etcd2"} {
		hv := map[string]any{"ansible_host": "127.0.32." + string(rune('1'+i))}
		if h == host {
			for k, v := range extra {
				hv[k] = v
			}
		}
		hostvars[h] = hv
	}
	vars := map[string]any{"inventory_hostname": host, "groups": map[string]any{"etcd": hosts}, "hostvars": hostvars}
	for k, v := range hostvars[host].(map[string]any) {
		vars[k] = v
	}
	return &modules.ResolveContext{Host: host, Vars: vars}
}

func TestResolveGolden(t *testing.T) {
	args, err := module.Resolve(modules.Args{}, rc("etcd2", map[string]any{
		"etcd_backup_schedule": "*-*-* 00/6:00:00", "etcd_backup_local_keep": 4,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := module.Validate(args); err != nil {
		t.Fatalf("resolved args do not validate: %v", err)
	}
	for _, f := range []struct{ arg, golden string }{{"service", "etcd-backup.service"}, {"timer", "etcd-backup.timer"}} {
		golden.Check(t, filepath.Join("testdata", f.golden), args.Str(f.arg, ""))
	}
	if args.Str("state", "") != "present" || args.Str("dir", "") != DefaultDir || args.Int("keep", 0) != 4 {
		t.Errorf("args %v", args)
	}
}

func TestResolveStateAndErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  modules.Args
		vars  map[string]any
		state string
		err   string
	}{
		{name: "no schedule: absent", state: "absent"},
		{name: "schedule from args", args: modules.Args{"schedule": "daily"}, state: "present"},
		{name: "explicit absent", args: modules.Args{"state": "absent"}, vars: map[string]any{"etcd_backup_schedule": "daily"}, state: "absent"},
		{name: "present without schedule", args: modules.Args{"state": "present"}, err: "schedule"},
		{name: "dir with a space", vars: map[string]any{"etcd_backup_schedule": "daily", "etcd_backup_dir": "/var/my backups"}, err: "etcd_backup_dir"},
		{name: "relative dir", vars: map[string]any{"etcd_backup_schedule": "daily", "etcd_backup_dir": "backups"}, err: "etcd_backup_dir"},
		{name: "root dir", vars: map[string]any{"etcd_backup_schedule": "daily", "etcd_backup_dir": "/"}, err: "etcd_backup_dir"},
		{name: "keep 0", vars: map[string]any{"etcd_backup_schedule": "daily", "etcd_backup_local_keep": 0}, err: "etcd_backup_local_keep"},
		{name: "specifier in schedule", vars: map[string]any{"etcd_backup_schedule": "%H"}, err: "etcd_backup_schedule"},
		{name: "newline in schedule", vars: map[string]any{"etcd_backup_schedule": "daily\nExecStart=/bin/sh"}, err: "etcd_backup_schedule"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if args == nil {
				args = modules.Args{}
			}
			out, err := module.Resolve(args, rc("etcd1", tt.vars))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.Str("state", "") != tt.state {
				t.Errorf("state %q, want %q", out.Str("state", ""), tt.state)
			}
			if err := module.Validate(out); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestScript runs the installed script's logic with a stand-in etcdctl
// (a shell function would not do: the script execs a path) and checks
// retention keeps exactly the newest files it made and nothing else.
func TestScript(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "etcd-backup")
	if err := os.WriteFile(script, []byte(Script), 0o755); err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(dir, "etcdctl")
	// Writes its last argument, like `etcdctl snapshot save PATH`.
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nfor a; do last=$a; done\necho snap > \"$last\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	backups := filepath.Join(dir, "b")
	os.Mkdir(backups, 0o700)
	old := []string{"snapshot-20200101T000000Z.db", "snapshot-20200102T000000Z.db", "snapshot-20200103T000000Z.db"}
	keepers := []string{"notes.txt", "snapshot-manual.db", "snapshot-20200101T000000Z.db.part"}
	for _, n := range append(old, keepers...) {
		os.WriteFile(filepath.Join(backups, n), nil, 0o600)
	}
	cmd := exec.Command(script)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "ETCD_BACKUP_DIR=" + backups, "ETCD_BACKUP_KEEP=2", "ETCD_BACKUP_ETCDCTL=" + fake}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	ents, _ := os.ReadDir(backups)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	got := strings.Join(names, " ")
	// The new snapshot and the newest old one stay, plus everything not ours.
	if len(names) != 5 || !strings.Contains(got, "snapshot-20200103T000000Z.db ") || strings.Contains(got, "snapshot-20200102T000000Z.db") {
		t.Errorf("after the run: %s", got)
	}
	for _, k := range keepers {
		if !strings.Contains(got, k) {
			t.Errorf("%s removed", k)
		}
	}
	for _, bad := range []string{"0", "x", ""} {
		cmd := exec.Command(script)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "ETCD_BACKUP_DIR=" + backups, "ETCD_BACKUP_KEEP=" + bad, "ETCD_BACKUP_ETCDCTL=" + fake}
		if err := cmd.Run(); err == nil {
			t.Errorf("ETCD_BACKUP_KEEP=%q accepted", bad)
		}
	}
}
