package etcdstatus

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 20480: "20 kB", 2_600_000: "2.6 MB", 8 << 30: "8.6 GB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestRenderGolden(t *testing.T) {
	c, err := etcd.FromVars(map[string]any{
		"groups": map[string]any{"etcd": []any{"etcd1", "etcd2", "etcd3"}},
		"hostvars": map[string]any{
			"etcd1": map[string]any{"ansible_host": "127.0.1.1"},
			"etcd2": map[string]any{"ansible_host": "127.0.1.2"},
			"etcd3": map[string]any{"ansible_host": "127.0.1.3"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &etcdclient.Health{
		Members: []etcdclient.MemberHealth{
			{Host: "etcd1", Name: "etcd1", Endpoint: "https://127.0.1.1:2379", Healthy: true, Took: 2 * time.Millisecond,
				ID: 0x97c1c1003e0d4bf, Version: "3.6.16", DBSize: 2_600_000, DBSizeInUse: 1_200_000, Leader: 0xf5b8cb45a0dcf520, RaftTerm: 4, RaftIndex: 388655, RaftAppliedIndex: 388655},
			{Host: "etcd2", Name: "etcd2", Endpoint: "https://127.0.1.2:2379", Healthy: true, Took: 3 * time.Millisecond,
				ID: 0xf5b8cb45a0dcf520, Version: "3.6.16", DBSize: 2_600_000, DBSizeInUse: 1_200_000, Leader: 0xf5b8cb45a0dcf520, RaftTerm: 4, RaftIndex: 388655, RaftAppliedIndex: 388655},
			{Host: "etcd3", Name: "etcd3", Endpoint: "https://127.0.1.3:2379", Took: 3 * time.Second, Error: "connection refused"},
		},
		List: []*etcdserverpb.Member{
			{ID: 0x97c1c1003e0d4bf, Name: "etcd1", PeerURLs: []string{"https://127.0.1.1:2380"}, ClientURLs: []string{"https://127.0.1.1:2379"}},
			{ID: 0xf5b8cb45a0dcf520, Name: "etcd2", PeerURLs: []string{"https://127.0.1.2:2380"}, ClientURLs: []string{"https://127.0.1.2:2379"}},
			{ID: 0xef2fee107aafca91, Name: "etcd3", PeerURLs: []string{"https://127.0.1.3:2380"}, ClientURLs: []string{"https://127.0.1.3:2379"}},
		},
		Alarms: []*etcdserverpb.AlarmMember{{MemberID: 0x97c1c1003e0d4bf, Alarm: etcdserverpb.AlarmType_NOSPACE}},
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r := fromHealth(c, h, now)
	day := 24 * time.Hour
	r.Certificates = []Certificate{
		{What: "etcd1 server", Member: "etcd1", Kind: "server", Source: "served at https://127.0.1.1:2379", Subject: "etcd1", NotAfter: now.Add(300 * day), ClusterCA: true},
		{What: "etcd1 peer", Member: "etcd1", Kind: "peer", Source: "served at https://127.0.1.1:2380", Subject: "etcd-peer", NotAfter: now.Add(10*day + time.Hour), ClusterCA: true},
		{What: "etcd2 server", Member: "etcd2", Kind: "server", Source: "served at https://127.0.1.2:2379", Subject: "etcd2", NotAfter: now.Add(300 * day), ClusterCA: false},
		{What: "etcd3 server", Member: "etcd3", Kind: "server", Source: "served at https://127.0.1.3:2379", Error: "dial tcp 127.0.1.3:2379: connection refused"},
		{What: "CA", Kind: "ca", Source: "/state/etcd/pki/ca.crt", Subject: "etcd-ca", NotAfter: now.Add(200 * day), ClusterCA: true},
		{What: "client etcdplay", Kind: "client", Source: "/state/etcd/pki/client-etcdplay.crt", Subject: "etcdplay", NotAfter: now.Add(-day), ClusterCA: true},
	}
	r.Warnings = judge(r.Certificates, now, 30*day, 365*day)
	var table, js bytes.Buffer
	if err := WriteTable(&table, r); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "unhealthy.txt"), table.String())
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "unhealthy.json"), js.String())
	if r.Healthy || r.Leader != "etcd2" {
		t.Errorf("healthy=%v leader=%q", r.Healthy, r.Leader)
	}
}

func TestCollectLiveCluster(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	r, err := Collect(context.Background(), tc.Model, tc.StateDir, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Healthy || len(r.Endpoints) != 3 || len(r.Members) != 3 || len(r.Alarms) != 0 {
		t.Fatalf("report: %+v", r)
	}
	leaders := 0
	for _, e := range r.Endpoints {
		if e.IsLeader {
			leaders++
		}
		if e.Version != "3.6.16" || e.DBSize == 0 || e.RaftIndex == 0 {
			t.Errorf("endpoint %+v", e)
		}
	}
	if leaders != 1 {
		t.Errorf("%d leaders", leaders)
	}
	// Served server certificates come from the handshake and are the
	// state dir's; this test cluster's peers talk plain HTTP, so their
	// look fails and says why. The CA and etcdplay's client certificate
	// are read from the state dir. The fixture's certificates last a day:
	// every leaf is inside etcd_cert_renew_before.
	pki := tc.Model.PKI(tc.StateDir)
	kinds := map[string]int{}
	for _, c := range r.Certificates {
		kinds[c.Kind]++
		switch c.Kind {
		case "server":
			crt, _ := pki.Server(c.Member)
			onDisk, err := readCert(crt)
			if err != nil || c.Error != "" || !c.ClusterCA || !c.NotAfter.Equal(onDisk.NotAfter) || !strings.Contains(c.Warning, "etcd_cert_renew_before") {
				t.Errorf("served server certificate: %+v (state dir: %v)", c, err)
			}
		case "peer":
			if !strings.Contains(c.Error, "TLS handshake") {
				t.Errorf("a plain-HTTP peer port must say the handshake failed: %+v", c)
			}
		case "ca":
			if c.Error != "" || c.Subject == "" || c.DaysLeft != 0 {
				t.Errorf("CA: %+v", c)
			}
		}
	}
	if kinds["server"] != 3 || kinds["peer"] != 3 || kinds["ca"] != 1 || kinds["client"] < 1 {
		t.Errorf("certificates by kind: %v", kinds)
	}
	if len(r.Warnings) < 3 {
		t.Errorf("day-long certificates not warned about: %v", r.Warnings)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "is healthy: 3 members, leader "+r.Leader) {
		t.Errorf("table:\n%s", b.String())
	}
	var back Report
	b.Reset()
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back.Endpoints) != 3 {
		t.Errorf("json round trip: %v", err)
	}
}
