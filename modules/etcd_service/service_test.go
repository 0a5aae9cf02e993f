package etcd_service

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/systemd"
	"github.com/etcdplay/etcdplay/modules/user"
)

// converged is a host where etcd_service has nothing to do. Its ids are
// ones no account has on a test machine, so plan lines that name the
// current owner read the same everywhere.
func converged() (*hostState, *want) {
	w := &want{Name: "etcd.service", UnitPath: DefaultUnitPath, Unit: []byte("unit\n"), User: "etcd", Group: "etcd",
		Home: "/var/lib/etcd", Shell: "/usr/sbin/nologin", Dirs: []string{"/var/lib/etcd"}, Enabled: true, State: "started"}
	st := &hostState{
		User:     &user.Account{Name: "etcd", UID: 4998, GID: 4997, Home: "/var/lib/etcd", Shell: "/usr/sbin/nologin"},
		Group:    &user.Group{Name: "etcd", GID: 4997},
		Dirs:     map[string]hostfile.FileState{"/var/lib/etcd": {Exists: true, Mode: fs.ModeDir | 0o700, UID: 4998, GID: 4997}},
		Unit:     []byte("unit\n"),
		UnitSeen: true,
		Systemd:  systemd.UnitState{LoadState: "loaded", ActiveState: "active", UnitFileState: "enabled"},
	}
	return st, w
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*hostState, *want)
		actions []string
		steps   []step
		waitFor []string
		wantErr string
	}{
		{name: "converged", mutate: func(*hostState, *want) {}},
		{
			name: "bare host",
			mutate: func(st *hostState, w *want) {
				*st = hostState{Dirs: map[string]hostfile.FileState{},
					Systemd: systemd.UnitState{LoadState: "not-found", ActiveState: "inactive"}}
			},
			actions: []string{
				"+ group etcd: system",
				"+ user etcd: system, group etcd, home /var/lib/etcd, shell /usr/sbin/nologin",
				"+ /var/lib/etcd: directory 0700 etcd:etcd",
				"+ /etc/systemd/system/etcd.service: systemd unit (a new unit needs no daemon-reload: systemd reads it when first asked)",
				"! enable etcd.service: start at boot",
				"! start etcd.service: without waiting (--no-block); etcd_health waits for the cluster",
			},
			steps: []step{stepAccounts, stepDirs, stepUnit, stepEnable, stepStart},
		},
		{
			name:    "unit changed on a running member: no restart here",
			mutate:  func(st *hostState, w *want) { w.Unit = []byte("unit v2\n") },
			actions: []string{"~ /etc/systemd/system/etcd.service: systemd unit changed", "! systemctl daemon-reload"},
			steps:   []step{stepUnit, stepReload},
		},
		{
			name: "a unit of the same name loaded from elsewhere (a distribution's package) is reloaded",
			mutate: func(st *hostState, w *want) {
				st.Unit, st.UnitSeen = nil, false
				st.Systemd = systemd.UnitState{LoadState: "loaded", ActiveState: "inactive", UnitFileState: "disabled"}
				w.State = "present"
			},
			actions: []string{
				"+ /etc/systemd/system/etcd.service: systemd unit, in place of the etcd.service systemd has loaded",
				"! systemctl daemon-reload",
				"! enable etcd.service: start at boot",
			},
			steps: []step{stepUnit, stepReload, stepEnable},
		},
		{
			name:    "stopped member is started",
			mutate:  func(st *hostState, w *want) { st.Systemd.ActiveState = "failed" },
			actions: []string{"! start etcd.service: without waiting (--no-block); etcd_health waits for the cluster"},
			steps:   []step{stepStart},
		},
		{
			name: "a member stopped by an unfinished restore is not started",
			mutate: func(st *hostState, w *want) {
				st.Systemd.ActiveState = "inactive"
				w.Marker, st.Marker = "/etc/etcd/restore-in-progress.json", []byte("{\n  \"stamp\": \"20261204T201500Z\"\n}\n")
			},
			wantErr: `/etc/etcd/restore-in-progress.json says: { "stamp": "20261204T201500Z" }. Run the restore again`,
		},
		{
			name: "a running member with a restore marker left behind is left alone",
			mutate: func(st *hostState, w *want) {
				w.Marker, st.Marker = "/etc/etcd/restore-in-progress.json", []byte("{}")
			},
		},
		{
			name:   "present does not start",
			mutate: func(st *hostState, w *want) { st.Systemd.ActiveState = "inactive"; w.State = "present" },
		},
		{
			name: "wrong dir mode and owner, wrong shell",
			mutate: func(st *hostState, w *want) {
				st.Dirs["/var/lib/etcd"] = hostfile.FileState{Exists: true, Mode: fs.ModeDir | 0o755, UID: 0, GID: 0}
				st.User.Shell = "/bin/bash"
			},
			actions: []string{"~ user etcd: shell /bin/bash->/usr/sbin/nologin", "~ /var/lib/etcd: mode 0755->0700, owner root->etcd, group root->etcd"},
			steps:   []step{stepAccounts, stepDirs},
		},
		{
			name: "a user whose group is gone gets it back as its primary group",
			mutate: func(st *hostState, w *want) {
				st.Group = nil
				st.User.GID = 4242 // a gid no group has on the test machine
			},
			actions: []string{"+ group etcd: system", "~ user etcd: group 4242->etcd", "~ /var/lib/etcd: group 4997->etcd (not yet created)"},
			steps:   []step{stepAccounts, stepDirs},
		},
		{
			name:    "daemon reload pending",
			mutate:  func(st *hostState, w *want) { st.Systemd.NeedDaemonReload = true },
			actions: []string{"! systemctl daemon-reload"},
			steps:   []step{stepReload},
		},
		{
			name:   "a static unit has no enablement to change",
			mutate: func(st *hostState, w *want) { st.Systemd.UnitFileState = "static" },
		},
		{
			name:    "enabled for this boot only is enabled for every boot",
			mutate:  func(st *hostState, w *want) { st.Systemd.UnitFileState = "enabled-runtime" },
			actions: []string{"! enable etcd.service: start at boot"},
			steps:   []step{stepEnable},
		},
		{
			name:    "enabled, and to be disabled",
			mutate:  func(st *hostState, w *want) { w.Enabled = false },
			actions: []string{"! disable etcd.service"},
			steps:   []step{stepDisable},
		},
		{
			name:    "disabled",
			mutate:  func(st *hostState, w *want) { st.Systemd.UnitFileState = "disabled" },
			actions: []string{"! enable etcd.service: start at boot"},
			steps:   []step{stepEnable},
		},
		{
			name: "a new cluster's member starts after the members before it",
			mutate: func(st *hostState, w *want) {
				st.Systemd.ActiveState = "inactive"
				st.NewClusterMember = true
				w.StartAfter = []string{"https://10.0.0.1:2380", "https://10.0.0.2:2380"}
			},
			actions: []string{"! start etcd.service: once https://10.0.0.1:2380, https://10.0.0.2:2380 serve " +
				"(a new cluster's members start in order; at most 3s), without waiting (--no-block); etcd_health waits for the cluster"},
			steps:   []step{stepStart},
			waitFor: []string{"https://10.0.0.1:2380", "https://10.0.0.2:2380"},
		},
		{
			name: "a member with data, or joining a cluster, starts at once",
			mutate: func(st *hostState, w *want) {
				st.Systemd.ActiveState = "inactive"
				w.StartAfter = []string{"https://10.0.0.1:2380"}
			},
			actions: []string{"! start etcd.service: without waiting (--no-block); etcd_health waits for the cluster"},
			steps:   []step{stepStart},
		},
		{
			name:    "data dir is a file",
			mutate:  func(st *hostState, w *want) { st.Dirs["/var/lib/etcd"] = hostfile.FileState{Exists: true} },
			wantErr: "not a directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, w := converged()
			tt.mutate(st, w)
			c, err := plan(st, w)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range c.Actions {
				got = append(got, a.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.actions, "\n") {
				t.Errorf("actions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.actions, "\n"))
			}
			if c.Empty() {
				if c.Payload != nil {
					t.Error("empty change carries a payload")
				}
				return
			}
			p := c.Payload.(*payload)
			if len(p.Steps) != len(tt.steps) {
				t.Fatalf("steps %v, want %v", p.Steps, tt.steps)
			}
			for i := range p.Steps {
				if p.Steps[i] != tt.steps[i] {
					t.Errorf("steps %v, want %v", p.Steps, tt.steps)
				}
			}
			if strings.Join(p.WaitFor, " ") != strings.Join(tt.waitFor, " ") {
				t.Errorf("waits for %v, want %v", p.WaitFor, tt.waitFor)
			}
		})
	}
}

func TestResolveRendersUnit(t *testing.T) {
	vars := map[string]any{
		"inventory_hostname":   "etcd1",
		"groups":               map[string]any{"etcd": []any{"etcd1", "etcd2"}},
		"etcd_ionice_priority": 2,
		"hostvars": map[string]any{
			"etcd1": map[string]any{"ansible_host": "127.0.1.1"},
			"etcd2": map[string]any{"ansible_host": "127.0.1.2"},
		},
	}
	out, err := Module{}.Resolve(modules.Args{}, &modules.ResolveContext{Host: "etcd1", Vars: vars, BaseDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := (Module{}).Validate(out); err != nil {
		t.Fatalf("resolved args do not validate: %v", err)
	}
	golden.Check(t, filepath.Join("testdata", "etcd.service.golden"), out.Str("unit", ""))
	if d := out.Strings("dirs"); len(d) != 1 || d[0] != "/var/lib/etcd" {
		t.Errorf("dirs = %v", d)
	}

	if _, err := (Module{}).Resolve(modules.Args{}, &modules.ResolveContext{Host: "other", Vars: vars}); err == nil {
		t.Error("a host outside group etcd must be a compile error")
	}
}

func TestResolvePlaybookTemplateOverrides(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates", DefaultTemplate), []byte("custom {{.Name}} {{.IONicePriority}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{"groups": map[string]any{"etcd": []any{"e1"}}}
	out, err := Module{}.Resolve(modules.Args{"ionice_priority": 4}, &modules.ResolveContext{Host: "e1", Vars: vars, BaseDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Str("unit", ""); got != "custom e1 4\n" {
		t.Errorf("unit = %q", got)
	}
}

func TestValidate(t *testing.T) {
	if err := (Module{}).Validate(modules.Args{"unit": "x", "ionice_priority": 9}); err == nil {
		t.Error("ionice 9 accepted")
	}
	if err := (Module{}).Validate(modules.Args{"unit": "x", "state": "restarted"}); err == nil {
		t.Error("state restarted accepted: restarts belong to etcd_restart")
	}
	if err := (Module{}).Validate(modules.Args{}); err == nil {
		t.Error("missing unit accepted")
	}
}
