package etcd

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// lab returns the vars of host etcd1 in a cluster of n lab hosts, with
// extra cluster-wide vars and per-host overrides.
func lab(n int, extra map[string]any, perHost map[string]map[string]any) map[string]any {
	hosts := []any{}
	hostvars := map[string]any{}
	for i := 1; i <= n; i++ {
		h := "etcd" + string(rune('0'+i))
		hosts = append(hosts, h)
		hv := map[string]any{"inventory_hostname": h, "ansible_host": "127.0.1." + string(rune('0'+i))}
		for k, v := range extra {
			hv[k] = v
		}
		for k, v := range perHost[h] {
			hv[k] = v
		}
		hostvars[h] = hv
	}
	vars := map[string]any{}
	first, _ := hostvars["etcd1"].(map[string]any)
	for k, v := range first {
		vars[k] = v
	}
	vars["groups"] = map[string]any{"all": hosts, "etcd": hosts}
	vars["hostvars"] = hostvars
	return vars
}

func TestFromVarsDefaults(t *testing.T) {
	c, err := FromVars(lab(3, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.InitialCluster(), "etcd1=https://127.0.1.1:2380,etcd2=https://127.0.1.2:2380,etcd3=https://127.0.1.3:2380"; got != want {
		t.Errorf("InitialCluster = %q, want %q", got, want)
	}
	if got := strings.Join(c.Endpoints(), ","); got != "https://127.0.1.1:2379,https://127.0.1.2:2379,https://127.0.1.3:2379" {
		t.Errorf("Endpoints = %s", got)
	}
	if c.Version.String() != DefaultVersion || c.Token != "etcd" || c.Name != "etcd" || !c.TLS {
		t.Errorf("defaults: %+v", c)
	}
	if c.QuotaBackendBytes != 2<<30 || c.MaxRequestBytes != 1572864 || c.HeartbeatInterval != 100 || c.ElectionTimeout != 1000 {
		t.Errorf("tuning defaults: %+v", c.Tuning)
	}
	if c.TarballURL() != "https://github.com/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz" {
		t.Errorf("TarballURL = %s", c.TarballURL())
	}
	m, err := c.Member("etcd2")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.SANs(), ","); got != "127.0.1.2,etcd2,localhost,127.0.0.1" {
		t.Errorf("SANs = %s", got)
	}
	if _, err := c.Member("web1"); err == nil {
		t.Error("Member(web1) should fail")
	}
}

func TestFromVarsOverrides(t *testing.T) {
	c, err := FromVars(lab(2, map[string]any{
		"etcd_tls": false, "etcd_cluster_name": "prod", "etcd_version": "v3.5.21",
		"etcd_enable_v2": "yes", "etcd_quota_backend_bytes": "8G", "etcd_max_request_bytes": "10MiB",
		"etcd_heartbeat_interval": "auto", "etcd_auto_compaction_mode": "revision",
		"etcd_auto_compaction_retention": 1000, "etcd_cert_renew_before": "60d",
	}, map[string]map[string]any{
		"etcd2": {"etcd_name": "infra2", "etcd_address": "10.0.0.2", "etcd_client_port": "12379", "etcd_extra_sans": []any{"etcd.example.com"}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.InitialCluster(); got != "etcd1=http://127.0.1.1:2380,infra2=http://10.0.0.2:2380" {
		t.Errorf("InitialCluster = %s", got)
	}
	m, _ := c.Member("etcd2")
	if m.ListenClientURL != "http://10.0.0.2:12379" {
		t.Errorf("ListenClientURL = %s", m.ListenClientURL)
	}
	if m.ClientURL != "http://10.0.0.2:12379" {
		t.Errorf("ClientURL = %s", m.ClientURL)
	}
	if got := strings.Join(m.SANs(), ","); got != "10.0.0.2,infra2,etcd2,127.0.1.2,etcd.example.com,localhost,127.0.0.1" {
		t.Errorf("SANs = %s", got)
	}
	if c.Token != "prod" || !c.EnableV2 || c.QuotaBackendBytes != 8<<30 || c.MaxRequestBytes != 10<<20 || !c.HeartbeatAuto {
		t.Errorf("cluster = %+v", c)
	}
	if c.CertRenewBefore != 60*24*time.Hour {
		t.Errorf("CertRenewBefore = %s", c.CertRenewBefore)
	}
}

func TestListenAddressForHostnames(t *testing.T) {
	c, err := FromVars(lab(1, nil, map[string]map[string]any{"etcd1": {"etcd_address": "etcd1.example.com"}}))
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Members[0]; m.ListenClientURL != "https://0.0.0.0:2379" || m.ClientURL != "https://etcd1.example.com:2379" {
		t.Errorf("listen %s advertise %s", m.ListenClientURL, m.ClientURL)
	}
}

func TestFromVarsErrors(t *testing.T) {
	tests := []struct {
		name    string
		extra   map[string]any
		perHost map[string]map[string]any
		n       int
		wantVar string
		wantMsg string
	}{
		{"duplicate name", nil, map[string]map[string]any{"etcd2": {"etcd_name": "etcd1"}}, 3, "etcd_name", "also the name of etcd1"},
		{"duplicate address", nil, map[string]map[string]any{"etcd3": {"etcd_address": "127.0.1.1"}}, 3, "etcd_address", "127.0.1.1 is also the address of etcd1 (client and peer ports collide)"},
		{"client port = peer port", nil, map[string]map[string]any{"etcd1": {"etcd_client_port": 2380}}, 1, "etcd_peer_port", "also used by etcd1"},
		{"bad version", map[string]any{"etcd_version": "3.6.16"}, nil, 1, "etcd_version", "want vX.Y.Z"},
		{"old version", map[string]any{"etcd_version": "v3.3.10"}, nil, 1, "etcd_version", "not supported"},
		{"v4", map[string]any{"etcd_version": "v4.0.0"}, nil, 1, "etcd_version", "not supported"},
		{"enable-v2 on 3.6", map[string]any{"etcd_enable_v2": true}, nil, 1, "etcd_enable_v2", "removed in etcd 3.6"},
		{"bad quota", map[string]any{"etcd_quota_backend_bytes": "8 lots"}, nil, 1, "etcd_quota_backend_bytes", "not a size"},
		{"request > quota", map[string]any{"etcd_quota_backend_bytes": "1M", "etcd_max_request_bytes": "2M"}, nil, 1, "etcd_max_request_bytes", "larger than"},
		{"election too short", map[string]any{"etcd_heartbeat_interval": 300}, nil, 1, "etcd_election_timeout", "at least 5 times"},
		{"election too long", map[string]any{"etcd_election_timeout": 60000}, nil, 1, "etcd_election_timeout", "limit"},
		{"heartbeat not a number", map[string]any{"etcd_heartbeat_interval": "fast"}, nil, 1, "etcd_heartbeat_interval", "integer"},
		{"compaction mode", map[string]any{"etcd_auto_compaction_mode": "hourly"}, nil, 1, "etcd_auto_compaction_mode", "periodic or revision"},
		{"retention", map[string]any{"etcd_auto_compaction_retention": "soon"}, nil, 1, "etcd_auto_compaction_retention", "duration"},
		{"ionice", map[string]any{"etcd_ionice_priority": 9}, nil, 1, "etcd_ionice_priority", "between 0"},
		{"no group", nil, nil, 0, "groups", "has no hosts"},
		{"bad name", nil, map[string]map[string]any{"etcd1": {"etcd_name": "a,b"}}, 1, "etcd_name", "must be letters"},
		{"bad port", nil, map[string]map[string]any{"etcd1": {"etcd_client_port": 70000}}, 1, "etcd_client_port", "not a TCP port"},
		{"relative data dir", map[string]any{"etcd_data_dir": "data"}, nil, 1, "etcd_data_dir", "absolute"},
		{"root as data dir", map[string]any{"etcd_data_dir": "/"}, nil, 1, "etcd_data_dir", "system directory"},
		{"/var/lib/ as data dir", map[string]any{"etcd_data_dir": "/var/lib/"}, nil, 1, "etcd_data_dir", `"/var/lib/" is a system directory`},
		{"/var//tmp as WAL dir", map[string]any{"etcd_wal_dir": "/var//tmp"}, nil, 1, "etcd_wal_dir", "system directory"},
		{"WAL dir = data dir", map[string]any{"etcd_data_dir": "/data/etcd", "etcd_wal_dir": "/data/etcd/"}, nil, 1, "etcd_wal_dir", "is etcd_data_dir too"},
		{"bad url", map[string]any{"etcd_release_url": "ftp://mirror"}, nil, 1, "etcd_release_url", "http"},
		{"bad arch", map[string]any{"etcd_arch": "x86"}, nil, 1, "etcd_arch", "architecture"},
		{"experimental on 3.7", map[string]any{"etcd_version": "v3.7.3", "etcd_extra_config": map[string]any{"experimental-initial-corrupt-check": true}}, nil, 1, "etcd_extra_config", "removed in v3.7.0"},
		{"half a CA", map[string]any{"etcd_ca_cert": "/x/ca.crt"}, nil, 1, "etcd_ca_cert", "both"},
		{"renew > validity", map[string]any{"etcd_cert_renew_before": "400d"}, nil, 1, "etcd_cert_renew_before", "shorter"},
		{"client cn clash", map[string]any{"etcd_client_cert_names": []any{"etcdplay"}}, nil, 1, "etcd_client_cert_names", "other than"},
		{"listen on a name", nil, map[string]map[string]any{"etcd1": {"etcd_listen_address": "etcd1.example.com"}}, 1, "etcd_listen_address", "IP"},
		{"bad metrics", nil, map[string]map[string]any{"etcd1": {"etcd_metrics_url": "127.0.1.1:2381"}}, 1, "etcd_metrics_url", "http"},
		{"one member's version", nil, map[string]map[string]any{"etcd3": {"etcd_version": "v3.5.21"}}, 3, "etcd_version", `(host etcd3): "v3.5.21" here but "v3.6.16" on etcd1: the members of a cluster must agree`},
		{"one member's token", nil, map[string]map[string]any{"etcd2": {"etcd_cluster_token": "t2"}}, 3, "etcd_cluster_token", `"t2" here but "etcd" on etcd1`},
		{"one member plain", nil, map[string]map[string]any{"etcd2": {"etcd_tls": "no"}}, 2, "etcd_tls", `"false" here but "true" on etcd1`},
		{"one member's timing", nil, map[string]map[string]any{"etcd2": {"etcd_heartbeat_interval": 150, "etcd_election_timeout": 1500}}, 2, "etcd_heartbeat_interval", `"150" here but "100" on etcd1`},
		{"first member's CA", nil, map[string]map[string]any{"etcd1": {"etcd_ca_cert": "/pki/ca.crt", "etcd_ca_key": "/pki/ca.key"}}, 2, "etcd_ca_cert", `unset here but "/pki/ca.crt" on etcd1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromVars(lab(tt.n, tt.extra, tt.perHost))
			if err == nil {
				t.Fatal("no error")
			}
			var ve *VarError
			if !errors.As(err, &ve) {
				t.Fatalf("%v is not a *VarError", err)
			}
			if ve.Var != tt.wantVar || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got %q (var %s), want var %s and %q", err, ve.Var, tt.wantVar, tt.wantMsg)
			}
		})
	}
}

func TestDataDirsNormalised(t *testing.T) {
	c, err := FromVars(lab(1, map[string]any{"etcd_data_dir": "/data//etcd/", "etcd_wal_dir": "/wal/etcd/"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/data/etcd" || c.WALDir != "/wal/etcd" {
		t.Errorf("data dir %q, WAL dir %q: want them cleaned", c.DataDir, c.WALDir)
	}
}

func TestFromVarsReportsEveryProblem(t *testing.T) {
	_, err := FromVars(lab(1, map[string]any{"etcd_version": "latest", "etcd_snapshot_count": 0}, nil))
	if err == nil || !strings.Contains(err.Error(), "etcd_version") || !strings.Contains(err.Error(), "etcd_snapshot_count") {
		t.Errorf("want both problems, got %v", err)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   any
		want int64
		bad  bool
	}{
		{2147483648, 2 << 30, false},
		{"8G", 8 << 30, false},
		{"8GiB", 8 << 30, false},
		{"8Gi", 8 << 30, false},
		{"8GB", 8e9, false},
		{"1.5MiB", 1572864, false},
		{"512k", 512 << 10, false},
		{"100B", 100, false},
		{"1024", 1024, false},
		{float64(4096), 4096, false},
		{"-1G", 0, true},
		{"G", 0, true},
		{"eight", 0, true},
		{1.5, 0, true},
		{true, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("ParseSize(%v) = %d, %v; want %d, bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestVersion(t *testing.T) {
	v36, _ := ParseVersion("v3.6.16")
	v37, _ := ParseVersion("v3.7.3")
	v35, _ := ParseVersion("v3.5.0")
	if !v35.Less(v36) || v37.Less(v36) || !v36.AtLeast(3, 6) || v35.AtLeast(3, 6) {
		t.Error("ordering broken")
	}
	if v36.HasOption("enable-v2") || !v35.HasOption("enable-v2") {
		t.Error("enable-v2 is in 3.5, not in 3.6")
	}
	if !v36.HasOption("experimental-initial-corrupt-check") || v37.HasOption("experimental-initial-corrupt-check") {
		t.Error("experimental-* options are in 3.6, not in 3.7")
	}
	if !v37.HasOption("quota-backend-bytes") {
		t.Error("quota-backend-bytes is current")
	}
}

func TestStateLayout(t *testing.T) {
	c, err := FromVars(lab(1, map[string]any{"etcd_cluster_name": "prod"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	p := c.PKI("/state")
	crt, key := p.Server("etcd1")
	if p.CAKey() != "/state/prod/pki/ca.key" || crt != "/state/prod/pki/server-etcd1.crt" || key != "/state/prod/pki/server-etcd1.key" {
		t.Errorf("pki layout: %s %s %s", p.CAKey(), crt, key)
	}
	if c.CacheDir("/state") != "/state/cache/v3.6.16" {
		t.Errorf("cache = %s", c.CacheDir("/state"))
	}
	if c.Paths.InstallDir(c.Version) != "/opt/etcd/v3.6.16" {
		t.Errorf("install dir = %s", c.Paths.InstallDir(c.Version))
	}
}

// TestSeveralClustersInOneInventory: the etcd group of one inventory may
// hold several clusters told apart by etcd_cluster_name; each host's
// members are its own cluster's, and a play spanning two is refused.
func TestSeveralClustersInOneInventory(t *testing.T) {
	perHost := map[string]map[string]any{
		"etcd1": {"etcd_cluster_name": "blue"},
		"etcd2": {"etcd_cluster_name": "blue"},
		"etcd3": {"etcd_cluster_name": "green"},
		"etcd4": {"etcd_cluster_name": "green"},
		"etcd5": {"etcd_cluster_name": "green"},
	}
	tests := []struct {
		name      string
		playHosts []any
		members   []string
		wantErr   string
	}{
		{"play limited to blue", []any{"etcd1", "etcd2"}, []string{"etcd1", "etcd2"}, ""},
		{"play of one blue host", []any{"etcd1"}, []string{"etcd1", "etcd2"}, ""},
		{"play spans both", []any{"etcd1", "etcd2", "etcd3", "etcd4", "etcd5"}, nil,
			"the play's hosts belong to 2 etcd clusters: blue (etcd1, etcd2); green (etcd3, etcd4, etcd5)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := lab(5, nil, perHost)
			vars["ansible_play_hosts"] = tt.playHosts
			c, err := FromVars(vars)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "--limit") {
					t.Fatalf("err = %v, want it to contain %q and the --limit remedy", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range c.Members {
				got = append(got, m.Name)
			}
			if strings.Join(got, ",") != strings.Join(tt.members, ",") {
				t.Errorf("members = %v, want %v", got, tt.members)
			}
		})
	}
}

// TestMembersAgreeInEffect: a cluster-wide setting spelt differently but
// read the same (a default written out, a number as a string, yes for
// true) is agreement, and so are different values in different clusters.
func TestMembersAgreeInEffect(t *testing.T) {
	perHost := map[string]map[string]any{
		"etcd1": {"etcd_version": "v3.6.16", "etcd_heartbeat_interval": "100", "etcd_tls": "yes", "etcd_cluster_token": "etcd"},
		"etcd2": {"etcd_election_timeout": 1000},
		"etcd4": {"etcd_cluster_name": "green", "etcd_heartbeat_interval": 150, "etcd_election_timeout": 1500},
		"etcd5": {"etcd_cluster_name": "green", "etcd_heartbeat_interval": "150", "etcd_election_timeout": "1500"},
	}
	vars := lab(5, nil, perHost)
	vars["ansible_play_hosts"] = []any{"etcd1", "etcd2", "etcd3"}
	if _, err := FromVars(vars); err != nil {
		t.Error(err)
	}
}
