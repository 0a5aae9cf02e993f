package etcd_config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

func vars(n int, extra map[string]any) map[string]any {
	var hosts []any
	hv := map[string]any{}
	for i := 1; i <= n; i++ {
		h := fmt.Sprintf("etcd%d", i)
		hosts = append(hosts, h)
		m := map[string]any{"ansible_host": fmt.Sprintf("127.0.1.%d", i)}
		for k, v := range extra {
			m[k] = v
		}
		hv[h] = m
	}
	out := map[string]any{"groups": map[string]any{"etcd": hosts}, "hostvars": hv}
	for k, v := range hv["etcd1"].(map[string]any) {
		out[k] = v
	}
	return out
}

func resolve(t *testing.T, v map[string]any, args modules.Args) (modules.Args, error) {
	t.Helper()
	return Module{}.Resolve(args, &modules.ResolveContext{BaseDir: t.TempDir(), Host: "etcd1", Vars: v})
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		extra map[string]any
		args  modules.Args
	}{
		{"one-member-tls", 1, nil, nil},
		{"three-members-tls", 3, nil, nil},
		{"three-members-plain", 3, map[string]any{"etcd_tls": false}, nil},
		{"three-members-v3.7-tuned", 3, map[string]any{
			"etcd_version": "v3.7.3", "etcd_heartbeat_interval": 250, "etcd_election_timeout": 2500,
			"etcd_quota_backend_bytes": "8G", "etcd_max_request_bytes": "10MiB", "etcd_snapshot_count": 100000,
			"etcd_auto_compaction_mode": "revision", "etcd_auto_compaction_retention": 1000,
			"etcd_data_dir": "/data/etcd", "etcd_wal_dir": "/wal/etcd", "etcd_log_level": "warn",
			"etcd_metrics_url": "http://127.0.1.1:2381", "etcd_cluster_token": "prod-1",
			"etcd_extra_config": map[string]any{"max-learners": 2, "strict-reconfig-check": true},
		}, nil},
		{"v3.5-enable-v2-joiner", 3, map[string]any{"etcd_version": "v3.5.21", "etcd_enable_v2": true}, modules.Args{"state": "existing"}},
		{"auto-heartbeat-measured", 3, map[string]any{"etcd_heartbeat_interval": "auto"}, modules.Args{"heartbeat_interval": 150, "election_timeout": 1500}},
		{"v3.4-tls", 3, map[string]any{"etcd_version": "v3.4.37"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if args == nil {
				args = modules.Args{}
			}
			out, err := resolve(t, vars(tt.n, tt.extra), args)
			if err != nil {
				t.Fatal(err)
			}
			if err := (Module{}).Validate(out); err != nil {
				t.Fatal(err)
			}
			got := out.Str(argContent, "")
			golden.Check(t, filepath.Join("testdata", tt.name+".yaml"), got)
			if !strings.HasPrefix(tt.name, "v3.4") {
				parsedByEtcd(t, got)
			}
			if out.Str("dest", "") != "/etc/etcd/etcd.yaml" || out.Str("mode", "") != "0640" || out.Str("group", "") != "etcd" {
				t.Errorf("file args: %v", out)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name  string
		extra map[string]any
		args  modules.Args
		want  string
	}{
		{"enable-v2 on 3.6", map[string]any{"etcd_enable_v2": true}, nil, "removed in etcd 3.6"},
		{"experimental option on 3.7", map[string]any{"etcd_version": "v3.7.3", "etcd_extra_config": map[string]any{"experimental-compact-hash-check-enabled": true}}, nil, `no longer has the option "experimental-compact-hash-check-enabled"`},
		{"extra clashes", map[string]any{"etcd_extra_config": map[string]any{"snapshot-count": 5}}, nil, "etcd_extra_config sets snapshot-count"},
		{"bad state", nil, modules.Args{"state": "old"}, "must be one of new, existing"},
		{"unknown arg", nil, modules.Args{"stat": "new"}, `did you mean "state"`},
		{"measured timeouts too close", nil, modules.Args{"heartbeat_interval": 500}, "at least 5 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if args == nil {
				args = modules.Args{}
			}
			_, err := resolve(t, vars(3, tt.extra), args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestPlaybookTemplateOverrides(t *testing.T) {
	base := t.TempDir()
	if err := os.MkdirAll(filepath.Join(base, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	own := "name: {{ quote .Member.Name }}\ninitial-cluster: {{ quote .InitialCluster }}\n"
	if err := os.WriteFile(filepath.Join(base, "templates", DefaultTemplate), []byte(own), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := Module{}.Resolve(modules.Args{}, &modules.ResolveContext{BaseDir: base, Host: "etcd1", Vars: vars(2, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Str(argContent, ""); got != "name: \"etcd1\"\ninitial-cluster: \"etcd1=https://127.0.1.1:2380,etcd2=https://127.0.1.2:2380\"\n" {
		t.Errorf("override rendered %q", got)
	}
}

func TestWriteIdempotent(t *testing.T) {
	dir := t.TempDir()
	out, err := resolve(t, vars(3, nil), modules.Args{"dest": filepath.Join(dir, "etc/etcd/etcd.yaml"), "owner": "", "group": ""})
	if err != nil {
		t.Fatal(err)
	}
	env := &modules.Env{Host: "etcd1"}
	c, err := Module{}.Plan(context.Background(), env, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Diffs) != 1 || c.Diffs[0].Before != "" || !strings.Contains(c.Diffs[0].After, "initial-cluster-state: new") {
		t.Fatalf("first plan diffs: %+v", c.Diffs)
	}
	if _, err := (Module{}).Apply(context.Background(), env, c); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "etc/etcd/etcd.yaml"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("written: %v %v", fi, err)
	}
	if c, err = (Module{}).Plan(context.Background(), env, out); err != nil || !c.Empty() {
		t.Fatalf("second plan: %v %v", c.Actions, err)
	}

	// A tuning change is a one-line diff.
	out2, err := resolve(t, vars(3, map[string]any{"etcd_snapshot_count": 20000}), modules.Args{"dest": filepath.Join(dir, "etc/etcd/etcd.yaml"), "owner": "", "group": ""})
	if err != nil {
		t.Fatal(err)
	}
	c, err = Module{}.Plan(context.Background(), env, out2)
	if err != nil || len(c.Actions) != 1 || c.Actions[0].Op != "~" || !strings.Contains(c.Diffs[0].Before, "snapshot-count: 10000") || !strings.Contains(c.Diffs[0].After, "snapshot-count: 20000") {
		t.Fatalf("tuning plan: %v %v %v", c.Actions, c.Diffs, err)
	}
}

// The rendered file must be something etcd itself accepts: every key is
// one of etcd's config-file keys for that version.
func TestRenderedKeysExistInEtcd(t *testing.T) {
	c, err := etcd.FromVars(vars(3, nil))
	if err != nil {
		t.Fatal(err)
	}
	_, text, err := load(t.TempDir(), DefaultTemplate)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render("x", text, c, "etcd1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if line == "" || line[0] == '#' || line[0] == ' ' {
			continue
		}
		key := strings.SplitN(line, ":", 2)[0]
		if !c.Version.HasOption(key) {
			t.Errorf("%s renders %s", c.Version, key)
		}
	}
}

// TestBootstrapKeysAloneChangeNothing: once the member has bootstrapped,
// a config that differs only in initial-cluster* is left as it is (etcd
// no longer reads them; a rewrite would restart the member for nothing);
// before that, or with any other key changed, it is written.
func TestBootstrapKeysAloneChangeNothing(t *testing.T) {
	dir := t.TempDir()
	dest, data := filepath.Join(dir, "etcd.yaml"), filepath.Join(dir, "data")
	cur := "name: e1\ninitial-cluster: \"e1=https://a:2380\"\ninitial-cluster-state: existing\nsnapshot-count: 10000\n"
	if err := os.WriteFile(dest, []byte(cur), 0o640); err != nil {
		t.Fatal(err)
	}
	args := func(content string) modules.Args {
		return modules.Args{argContent: content, "dest": dest, "data_dir": data, "mode": "0640"}
	}
	grown := "name: e1\ninitial-cluster: \"e1=https://a:2380,e2=https://b:2380\"\ninitial-cluster-state: new\nsnapshot-count: 10000\n"
	plan := func(content string) *modules.Change {
		t.Helper()
		c, err := (Module{}).Plan(context.Background(), &modules.Env{Host: "e1"}, args(content))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := plan(grown); c.Empty() {
		t.Error("before the member bootstrapped, a new initial-cluster is not written")
	}
	if err := os.MkdirAll(filepath.Join(data, "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if c := plan(grown); !c.Empty() {
		t.Errorf("a bootstrapped member's config changes only in initial-cluster*: %v", c.Actions)
	}
	if c := plan(strings.Replace(grown, "10000", "20000", 1)); c.Empty() {
		t.Error("a change to a key etcd reads is not written")
	}
}

// parsedByEtcd loads a rendered config with etcd's own config-file parser
// (the server module this repository builds against): every key must be
// one etcd reads, of the type it expects, and a TLS config must restrict
// the peer port to member certificates.
func parsedByEtcd(t *testing.T, conf string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "etcd.yaml")
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := embed.ConfigFromFile(p)
	if err != nil {
		t.Fatalf("etcd refuses the rendered config: %v", err)
	}
	if cfg.PeerTLSInfo.CertFile != "" && !slices.Equal(cfg.PeerTLSInfo.AllowedCNs, []string{etcd.PeerCN}) {
		t.Errorf("peer port accepts CNs %v, want only %q", cfg.PeerTLSInfo.AllowedCNs, etcd.PeerCN)
	}
}

// The configs a member passes through on its way to TLS (etcd_enable_tls):
// each phase of etcd1 rendered through HostArgs from etcd.Cluster.AtPhase.
// "on" is not among them: it is three-members-tls.yaml, site.yml's own.
func TestGoldenTLSPhases(t *testing.T) {
	v := vars(3, map[string]any{"etcd_tls": false})
	c, err := etcd.FromVars(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []etcd.TLSPhase{etcd.TLSOff, etcd.TLSBoth, etcd.TLSPeer} {
		t.Run(p.String(), func(t *testing.T) {
			at, err := c.AtPhase("etcd1", p)
			if err != nil {
				t.Fatal(err)
			}
			out, err := HostArgs(at, "etcd1", t.TempDir(), "", v, modules.Args{})
			if err != nil {
				t.Fatal(err)
			}
			got := out.Str(argContent, "")
			golden.Check(t, filepath.Join("testdata", "tls-phase-"+p.String()+".yaml"), got)
			parsedByEtcd(t, got)
			f := filepath.Join(t.TempDir(), "etcd.yaml")
			if err := os.WriteFile(f, []byte(got), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := embed.ConfigFromFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// etcd serves http and https on one client listener when both
			// URLs name the same address.
			wantClient := map[etcd.TLSPhase]int{etcd.TLSOff: 1, etcd.TLSBoth: 2, etcd.TLSPeer: 2}[p]
			if len(cfg.ListenClientUrls) != wantClient || len(cfg.AdvertiseClientUrls) != wantClient || len(cfg.ListenPeerUrls) != 1 {
				t.Errorf("etcd reads client URLs %v (advertised %v), peer %v", cfg.ListenClientUrls, cfg.AdvertiseClientUrls, cfg.ListenPeerUrls)
			}
		})
	}
}

// root's etcdctl environment on a member, with and without TLS.
func TestGoldenCtlEnv(t *testing.T) {
	for _, tls := range []bool{true, false} {
		name := map[bool]string{true: "etcdctl-env-tls.sh", false: "etcdctl-env-plain.sh"}[tls]
		t.Run(name, func(t *testing.T) {
			v := vars(3, map[string]any{"etcd_tls": tls})
			out, err := ctlEnvModule{}.Resolve(modules.Args{}, &modules.ResolveContext{Host: "etcd2", Vars: v})
			if err != nil {
				t.Fatal(err)
			}
			if err := (ctlEnvModule{}).Validate(out); err != nil {
				t.Fatal(err)
			}
			if out.Str("dest", "") != CtlEnvPath || out.Str("mode", "") != "0644" {
				t.Errorf("file args: %v", out)
			}
			golden.Check(t, filepath.Join("testdata", name), out.Str(argContent, ""))
		})
	}
}
