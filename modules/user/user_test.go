package user

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/moduletest"
)

func useRecorded(t *testing.T) {
	t.Helper()
	oldP, oldG := PasswdFile, GroupFile
	PasswdFile, GroupFile = filepath.Join("testdata", "passwd"), filepath.Join("testdata", "group")
	t.Cleanup(func() { PasswdFile, GroupFile = oldP, oldG })
}

func planOf(t *testing.T, m modules.Module, args modules.Args, check bool) (string, []run, error) {
	t.Helper()
	c, err := m.Plan(context.Background(), &modules.Env{Check: check}, args)
	if err != nil {
		return "", nil, err
	}
	var acts []string
	for _, a := range c.Actions {
		acts = append(acts, a.String())
	}
	runs, _ := c.Payload.([]run)
	return strings.Join(acts, "; "), runs, nil
}

func TestUserPlan(t *testing.T) {
	useRecorded(t)
	tests := []struct {
		name  string
		args  modules.Args
		check bool
		plan  string
		argv  string
		err   string
	}{
		{"converged", modules.Args{"name": "etcd", "system": true, "shell": "/usr/sbin/nologin", "home": "/var/lib/etcd", "group": "etcd"}, false, "", "", ""},
		{"new system user", modules.Args{"name": "etcdbk", "system": true, "shell": "/usr/sbin/nologin", "home": "/var/lib/etcdbk", "create_home": false},
			false, "+ user etcdbk: system, home /var/lib/etcdbk, shell /usr/sbin/nologin",
			"useradd -r -d /var/lib/etcdbk -M -s /usr/sbin/nologin etcdbk", ""},
		{"new user with uid and group", modules.Args{"name": "bob", "uid": float64(1500), "group": "alice", "comment": "Bob"},
			false, "+ user bob: uid 1500, group alice", "useradd -u 1500 -g alice -m -c Bob bob", ""},
		{"shell and home change", modules.Args{"name": "etcd", "shell": "/bin/false", "home": "/srv/etcd"},
			false, "~ user etcd: home /var/lib/etcd->/srv/etcd, shell /usr/sbin/nologin->/bin/false",
			"usermod -d /srv/etcd -s /bin/false etcd", ""},
		{"uid and primary group", modules.Args{"name": "etcd", "uid": "990", "group": "ssl-cert"},
			false, "~ user etcd: uid 998->990, group etcd->ssl-cert", "usermod -u 990 -g ssl-cert etcd", ""},
		{"missing group", modules.Args{"name": "etcd", "group": "nope"}, false, "", "", "group nope does not exist"},
		{"missing group in check mode", modules.Args{"name": "etcd", "group": "nope"}, true, "~ user etcd: group etcd->nope", "usermod -g nope etcd", ""},
		{"absent", modules.Args{"name": "alice", "state": "absent", "remove": true}, false, "- user alice", "userdel -r alice", ""},
		{"absent already", modules.Args{"name": "carol", "state": "absent"}, false, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, runs, err := planOf(t, UserModule{}, tt.args, tt.check)
			if moduletest.Settled(t, err, tt.err) {
				return
			}
			var argv string
			if len(runs) > 0 {
				argv = strings.Join(runs[0].argv, " ")
			}
			if plan != tt.plan || argv != tt.argv {
				t.Errorf("plan %q\n  argv %q\nwant %q\n  argv %q", plan, argv, tt.plan, tt.argv)
			}
		})
	}
}

func TestGroupPlan(t *testing.T) {
	useRecorded(t)
	tests := []struct {
		args modules.Args
		plan string
		argv string
	}{
		{modules.Args{"name": "etcd", "system": true}, "", ""},
		{modules.Args{"name": "etcd", "gid": 998}, "", ""},
		{modules.Args{"name": "etcd", "gid": 990}, "~ group etcd: gid 998->990", "groupmod -g 990 etcd"},
		{modules.Args{"name": "etcdbk", "system": true}, "+ group etcdbk: system", "groupadd -r etcdbk"},
		{modules.Args{"name": "etcdbk", "gid": "1200"}, "+ group etcdbk: gid 1200", "groupadd -g 1200 etcdbk"},
		{modules.Args{"name": "998"}, "+ group 998", "groupadd 998"}, // a gid is not a name
		{modules.Args{"name": "alice", "state": "absent"}, "- group alice", "groupdel alice"},
		{modules.Args{"name": "carol", "state": "absent"}, "", ""},
	}
	for _, tt := range tests {
		plan, runs, err := planOf(t, GroupModule{}, tt.args, false)
		if err != nil {
			t.Fatal(err)
		}
		var argv string
		if len(runs) > 0 {
			argv = strings.Join(runs[0].argv, " ")
		}
		if plan != tt.plan || argv != tt.argv {
			t.Errorf("%v: plan %q argv %q, want %q %q", tt.args, plan, argv, tt.plan, tt.argv)
		}
	}
}

func TestValidate(t *testing.T) {
	moduletest.CheckValidate(t, UserModule{}, []moduletest.ArgCase{
		{Args: modules.Args{"name": "etcd", "system": "yes", "shell": "/usr/sbin/nologin", "uid": 998}, WantArg: ""},
		{Args: modules.Args{}, WantArg: "name"},
		{Args: modules.Args{"name": "a:b"}, WantArg: "name"},
		{Args: modules.Args{"name": "etcd", "state": "gone"}, WantArg: "state"},
		{Args: modules.Args{"name": "etcd", "uid": "x"}, WantArg: "uid"},
		{Args: modules.Args{"name": "etcd", "shel": "/bin/sh"}, WantArg: "shel"},
		{Args: modules.Args{"name": "etcd", "create_home": true, "createhome": false}, WantArg: "createhome"},
	})
	moduletest.CheckValidate(t, GroupModule{}, []moduletest.ArgCase{
		{Args: modules.Args{"name": "etcd", "gid": 998, "system": true}, WantArg: ""},
		{Args: modules.Args{"name": "etcd", "shell": "/bin/sh"}, WantArg: "shell"},
	})
}

// TestRealAccounts creates, changes and removes a throwaway group and user
// with the real shadow tools. It only runs where the account database is
// disposable: in a container, or when ETCDPLAY_HOST_TESTS=1.
func TestRealAccounts(t *testing.T) {
	_, inContainer := os.Stat("/.dockerenv")
	switch {
	case os.Getuid() != 0:
		t.Skip("needs root to run useradd")
	case inContainer != nil && os.Getenv("ETCDPLAY_HOST_TESTS") != "1":
		t.Skip("not in a container: set ETCDPLAY_HOST_TESTS=1 to let this test add and remove a user on this machine; the lab integration tests cover it on real hosts")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd not installed")
	}
	name := fmt.Sprintf("ep%d", time.Now().UnixNano()%1e6)
	t.Cleanup(func() {
		exec.Command("userdel", "-r", name).Run()
		exec.Command("groupdel", name+"g").Run()
	})
	home := filepath.Join(t.TempDir(), "home")
	steps := []struct {
		m    modules.Module
		args modules.Args
	}{
		{GroupModule{}, modules.Args{"name": name + "g", "system": true}},
		{UserModule{}, modules.Args{"name": name, "system": true, "group": name + "g", "shell": "/usr/sbin/nologin", "home": home}},
		{UserModule{}, modules.Args{"name": name, "shell": "/bin/false", "comment": "etcdplay test"}},
		{UserModule{}, modules.Args{"name": name, "state": "absent", "remove": true}},
		{GroupModule{}, modules.Args{"name": name + "g", "state": "absent"}},
	}
	for i, s := range steps {
		ctx := context.Background()
		c, err := s.m.Plan(ctx, &modules.Env{}, s.args)
		if err != nil {
			t.Fatalf("step %d plan: %v", i, err)
		}
		if c.Empty() {
			t.Fatalf("step %d: nothing planned", i)
		}
		if _, err := s.m.Apply(ctx, &modules.Env{}, c); err != nil {
			t.Fatalf("step %d apply: %v", i, err)
		}
		if c, err := s.m.Plan(ctx, &modules.Env{}, s.args); err != nil || !c.Empty() {
			t.Fatalf("step %d not idempotent: %v %v", i, c.Actions, err)
		}
		if i == 1 {
			if fi, err := os.Stat(home); err != nil || !fi.IsDir() {
				t.Errorf("home not created: %v", err)
			}
		}
	}
}
