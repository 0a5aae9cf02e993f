package etcd_proxy

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// vars is what the compiler gives client host app1: members etcd1..3 and
// client hosts app1 (with extra) and app2 (a gateway).
func vars(extra map[string]any) map[string]any {
	hostvars := map[string]any{}
	for i, h := range []string{"etcd1", "etcd2", "etcd3"} {
		hostvars[h] = map[string]any{"ansible_host": "10.0.0." + string(rune('1'+i)), "etcd_version": "v3.6.16"}
	}
	app1 := map[string]any{"ansible_host": "10.0.1.1"}
	for k, v := range extra {
		app1[k] = v
	}
	hostvars["app1"] = app1
	hostvars["app2"] = map[string]any{"ansible_host": "10.0.1.2", "etcd_proxy_mode": "gateway"}
	v := map[string]any{
		"inventory_hostname": "app1",
		"groups":             map[string]any{"etcd": []any{"etcd1", "etcd2", "etcd3"}, "etcd_clients": []any{"app1", "app2"}},
		"hostvars":           hostvars,
	}
	for k, val := range app1 {
		v[k] = val
	}
	return v
}

func TestUnitGolden(t *testing.T) {
	for _, tc := range []struct {
		name, host string
		extra      map[string]any
	}{
		{"grpc-proxy", "app1", map[string]any{"etcd_proxy_namespace": "/app/", "etcd_proxy_metrics_url": "http://127.0.0.1:23791",
			"etcd_proxy_resolver_prefix": "/proxies/", "etcd_proxy_listen_address": "10.0.1.1"}},
		{"gateway", "app2", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := etcd.FromVars(vars(tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			px, err := c.Proxy(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			unit, err := renderUnit("", DefaultTemplate, c, *px, nil)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tc.name+".service"), unit)
			if got := joinEndpoints(*px, c.Endpoints()); tc.name == "gateway" && strings.Contains(got, "https://") {
				t.Errorf("gateway endpoints carry a scheme: %s", got)
			}
		})
	}
}

func TestProxyModel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		extra   map[string]any
		wantErr string
		check   func(*testing.T, etcd.Proxy)
	}{
		{name: "loopback default: no local TLS", check: func(t *testing.T, p etcd.Proxy) {
			if p.TLS || p.Listen() != "127.0.0.1:23790" || len(p.Warnings) > 0 {
				t.Errorf("%+v", p)
			}
		}},
		{name: "routable listen: local TLS by default", extra: map[string]any{"etcd_proxy_listen_address": "10.0.1.1"}, check: func(t *testing.T, p etcd.Proxy) {
			if !p.TLS {
				t.Errorf("%+v", p)
			}
		}},
		{name: "routable listen without TLS warns", extra: map[string]any{"etcd_proxy_listen_address": "10.0.1.1", "etcd_proxy_tls": false}, check: func(t *testing.T, p etcd.Proxy) {
			if p.TLS || len(p.Warnings) != 1 {
				t.Errorf("%+v", p)
			}
		}},
		{name: "namespace needs its slash", extra: map[string]any{"etcd_proxy_namespace": "/app"}, wantErr: `etcd_proxy_namespace (host app1): "/app" must end with "/"`},
		{name: "unknown mode", extra: map[string]any{"etcd_proxy_mode": "haproxy"}, wantErr: "etcd_proxy_mode (host app1)"},
		{name: "listen is an IP", extra: map[string]any{"etcd_proxy_listen_address": "app1.example"}, wantErr: "etcd_proxy_listen_address"},
		{name: "ttl without prefix", extra: map[string]any{"etcd_proxy_resolver_ttl": 30}, wantErr: "etcd_proxy_resolver_ttl"},
		{name: "gateway has no namespace", extra: map[string]any{"etcd_proxy_mode": "gateway", "etcd_proxy_namespace": "/a/"}, wantErr: "the gateway has no such option"},
		{name: "local TLS needs a TLS cluster", extra: map[string]any{"etcd_proxy_tls": true, "etcd_tls": false}, wantErr: "etcd_proxy_tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := vars(tc.extra)
			if tls, ok := tc.extra["etcd_tls"]; ok {
				for _, h := range []string{"etcd1", "etcd2", "etcd3"} {
					v["hostvars"].(map[string]any)[h].(map[string]any)["etcd_tls"] = tls
				}
			}
			c, err := etcd.FromVars(v)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			px, err := c.Proxy("app1")
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, *px)
		})
	}
}

// A client host takes the cluster's settings from the members, and its
// gateway's address goes into the members' certificates.
func TestClientHostReadsTheMembersSettings(t *testing.T) {
	v := vars(nil)
	v["etcd_version"] = "v3.5.21" // set for the client host alone: ignored
	c, err := etcd.FromVars(v)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version.String() != "v3.6.16" {
		t.Errorf("client host sees version %s, want the members' v3.6.16", c.Version)
	}
	if c, err = etcd.FromVarsAt(v, "v3.7.3"); err != nil || c.Version.String() != "v3.7.3" {
		t.Errorf("FromVarsAt: %v %v", c, err)
	}
	sans := c.MemberSANs(c.Members[0])
	if !strings.Contains(strings.Join(sans, " "), "127.0.0.1") {
		t.Errorf("SANs %v", sans)
	}
	v = vars(nil)
	v["hostvars"].(map[string]any)["app2"].(map[string]any)["etcd_proxy_listen_address"] = "10.0.1.2"
	c, _ = etcd.FromVars(v)
	if sans := c.MemberSANs(c.Members[0]); sans[len(sans)-1] != "10.0.1.2" {
		t.Errorf("member SANs %v lack the gateway's listen address", sans)
	}
}

func TestHasAddr(t *testing.T) {
	addrs := []string{"127.0.0.1/8", "10.0.1.1/24", "::1/128"}
	for ip, want := range map[string]bool{
		"127.0.0.1": true, "127.0.70.5": true, "10.0.1.1": true, "0.0.0.0": true, "::": true,
		"10.0.1.2": false, "192.0.2.1": false, "bogus": false,
	} {
		if got := hasAddr(addrs, ip); got != want {
			t.Errorf("hasAddr(%s) = %v, want %v", ip, got, want)
		}
	}
}
