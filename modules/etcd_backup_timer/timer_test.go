package etcd_backup_timer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
	"github.com/etcdplay/etcdplay/modules/moduletest"
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
	set, err := etcd_install.SetFromArgs(modules.Args(args["files"].(map[string]any)))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Files) != 1 || set.Files[0].Path != ConfigPath || set.Files[0].Mode != "0600" {
		t.Fatalf("files without a store: %+v", set.Files)
	}
	golden.Check(t, filepath.Join("testdata", "etcd-backup.json"), set.Files[0].Content)
}

// With a store, the member gets the credentials as a secret file of its
// own and the store's CA; the config names the member-side paths.
func TestResolveStore(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n"), 0o600)
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644)
	args, err := module.Resolve(modules.Args{}, rc("etcd1", map[string]any{
		"etcd_backup_schedule":  "daily",
		"etcd_backup_s3":        map[string]any{"endpoint": "https://127.0.0.1:9000", "bucket": "b", "prefix": "p", "credentials_file": creds, "ca_file": ca},
		"etcd_backup_retention": map[string]any{"daily": 7, "weekly": 4},
	}))
	if err != nil {
		t.Fatal(err)
	}
	set, _ := etcd_install.SetFromArgs(modules.Args(args["files"].(map[string]any)))
	byPath := map[string]etcd_install.File{}
	for _, f := range set.Files {
		byPath[f.Path] = f
	}
	if f := byPath[CredentialsPath]; !f.Secret || f.Mode != "0600" || f.Owner != "etcd" || !strings.Contains(f.Content, "aws_secret_access_key = SK") {
		t.Errorf("credentials file %+v", f)
	}
	var hc HostConfig
	if err := json.Unmarshal([]byte(byPath[ConfigPath].Content), &hc); err != nil {
		t.Fatal(err)
	}
	if hc.S3 == nil || hc.S3.CredentialsFile != CredentialsPath || hc.S3.CAFile != StoreCAPath || hc.Retention != (store.Policy{Daily: 7, Weekly: 4}) {
		t.Errorf("host config %+v", hc)
	}
	if strings.Contains(byPath[ConfigPath].Content, "SK") || strings.Contains(args.Str("service", ""), "SK") {
		t.Errorf("the secret key is in the config or unit")
	}
	if !strings.Contains(args.Str("service", ""), "and s3://b/p/etcd") {
		t.Errorf("service unit does not name the store:\n%s", args.Str("service", ""))
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
			if moduletest.Settled(t, err, tt.err) {
				return
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

// TestRunHost runs the timer's program against a real (in-process) TLS
// cluster: each run leaves a verified snapshot with its metadata, and
// retention keeps this host's newest and nothing else's.
func TestRunHost(t *testing.T) {
	tc := etcdtest.Start(t, 1)
	pki := tc.Model.PKI(tc.StateDir)
	crt, key := pki.Client(etcd.EtcdplayClientCN)
	dir := filepath.Join(t.TempDir(), "backups")
	os.Mkdir(dir, 0o700)
	foreign := filepath.Join(dir, "20200101T000000Z-etcd1-rev1.db") // no metadata: not this timer's
	os.WriteFile(foreign, nil, 0o600)
	m := tc.Model.Members[0]
	cfg := HostConfig{Cluster: tc.Model.Name, Member: m.Name, Host: "etcd1", Endpoint: m.ClientURL,
		CACert: pki.CACert(), Cert: crt, Key: key, Dir: dir, Retention: store.Policy{Last: 2}}
	b, _ := json.Marshal(cfg)
	conf := filepath.Join(t.TempDir(), "etcd-backup.json")
	os.WriteFile(conf, b, 0o600)
	cli := tc.Client()
	for i := range 3 {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := RunHost(context.Background(), conf, &out); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out.String())
		}
		if !strings.Contains(out.String(), "verified") {
			t.Errorf("run %d said: %s", i, out.String())
		}
	}
	es, _ := store.Dir(dir).List(context.Background())
	mine := store.OfOrigin(es, "host:etcd1")
	if len(mine) != 2 || mine[1].Meta.Keys != 3 || !mine[1].Meta.Verified || mine[1].Meta.Member != m.Name {
		t.Errorf("after 3 runs with last 2: %+v", mine)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("a backup without metadata was removed: %v", err)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"cluster":"etcd","keep":3}`), 0o600)
	if err := RunHost(context.Background(), bad, io.Discard); err == nil || !strings.Contains(err.Error(), "keep") {
		t.Errorf("unknown field: %v", err)
	}
}
