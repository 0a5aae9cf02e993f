package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/internal/etcdstatus"
	"github.com/etcdplay/etcdplay/internal/runner"
)

// TestTwoClustersInOneRun exercises site.yml's partition_by on six lab
// hosts holding two clusters in one inventory (etcd_cluster_name blue on
// etcd1-3, green on etcd4-6): one run bootstraps both side by side, each
// with its own CA; `status --cluster` reports each; backup.yml snapshots
// each into its own directory; maintenance.yml compacts each; a change to
// green's config rolls green only. Checked
// with etcd's own client (member lists, cluster ids, each cluster's
// certificates refused by the other) and systemd (blue's etcd processes
// untouched by green's roll).
func TestTwoClustersInOneRun(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "multi", Block: 92, Hosts: 6})
	e := bootEnv(t, l)
	clusterOf := map[string]string{"etcd1": "blue", "etcd2": "blue", "etcd3": "blue", "etcd4": "green", "etcd5": "green", "etcd6": "green"}
	hostsOf := map[string][]string{"blue": {"etcd1", "etcd2", "etcd3"}, "green": {"etcd4", "etcd5", "etcd6"}}
	withClusters := func(extra map[string]map[string]any) string {
		return editInventory(t, l.InventoryFile, func(inv map[string]any) {
			for h, c := range clusterOf {
				hv := etcdHostVars(t, inv, h)
				hv["etcd_cluster_name"] = c
				for k, v := range extra[c] {
					hv[k] = v
				}
			}
		})
	}
	e.Inventory = withClusters(nil)
	pb := harness.Playbook("site.yml")
	o := e.MustApply(t, pb)

	ids := map[string]uint64{}
	for c, hosts := range hostsOf {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := e.ClientOf(t, c, e.Endpoints(hosts...)...).MemberList(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: member list: %v", c, err)
		}
		var names []string
		for _, m := range resp.Members {
			names = append(names, m.Name)
		}
		sort.Strings(names)
		if strings.Join(names, ",") != strings.Join(hosts, ",") {
			t.Errorf("cluster %s has members %v, want %v", c, names, hosts)
		}
		ids[c] = resp.Header.ClusterId
	}
	if ids["blue"] == ids["green"] {
		t.Errorf("blue and green share cluster id %x", ids["blue"])
	}
	// Each cluster has a CA of its own: a client of blue's (blue's CA and
	// client certificate) gets nowhere with a green member.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := e.ClientOf(t, "blue", e.Endpoints("etcd4")...).Put(ctx, "/it/cross", "x")
	cancel()
	if err == nil {
		t.Error("blue's client certificate could write to green's etcd4")
	}

	// Side by side: each cluster's work in the play spans the other's.
	spans := clusterSpans(o.Events, clusterOf)
	b, g := spans["blue"], spans["green"]
	if !(b[0].Before(g[1]) && g[0].Before(b[1])) {
		t.Errorf("the clusters ran one after the other: blue %s..%s, green %s..%s",
			b[0].Format(time.StampMilli), b[1].Format(time.StampMilli), g[0].Format(time.StampMilli), g[1].Format(time.StampMilli))
	}

	// status (and ctl, backups) picks one cluster with --cluster, and
	// without it says which there are.
	if o := e.Etcdplay(t, "status", "-o", "json"); o.Code != 4 || !strings.Contains(o.Stderr, "pass --cluster NAME") {
		t.Errorf("status on two clusters without --cluster: exit %d, %s", o.Code, o.Stderr)
	}
	for c, hosts := range hostsOf {
		o := e.Etcdplay(t, "status", "--cluster", c, "-o", "json")
		var r etcdstatus.Report
		if err := json.Unmarshal([]byte(o.Stdout), &r); o.Code != 0 || err != nil {
			t.Fatalf("status --cluster %s: exit %d, %v\n%s\n%s", c, o.Code, err, o.Stdout, o.Stderr)
		}
		var names []string
		for _, m := range r.Members {
			names = append(names, m.Name)
		}
		sort.Strings(names)
		if !r.Healthy || r.Cluster != c || strings.Join(names, ",") != strings.Join(hosts, ",") {
			t.Errorf("status --cluster %s: cluster %s healthy %v members %v, want %v", c, r.Cluster, r.Healthy, names, hosts)
		}
	}

	// backup.yml snapshots each cluster into its own directory, from
	// that cluster (etcd's cluster id in the metadata).
	e.MustApply(t, harness.Playbook("backup.yml"))
	for c := range hostsOf {
		metas, _ := filepath.Glob(filepath.Join(e.StateDir, "backups", c, "*-rev*.json"))
		if len(metas) != 1 {
			t.Fatalf("backups of %s: %v, want one snapshot's metadata", c, metas)
		}
		b, err := os.ReadFile(metas[0])
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			Cluster   string `json:"cluster"`
			ClusterID string `json:"cluster_id"`
		}
		if err := json.Unmarshal(b, &meta); err != nil {
			t.Fatalf("%s: %v", metas[0], err)
		}
		if want := fmt.Sprintf("%x", ids[c]); meta.Cluster != c || meta.ClusterID != want {
			t.Errorf("%s: cluster %q id %s, want %q %s", metas[0], meta.Cluster, meta.ClusterID, c, want)
		}
	}

	// maintenance.yml compacts each cluster (its own operation lock, its
	// own revisions): an old revision is gone from both afterwards.
	for c, hosts := range hostsOf {
		cli := e.ClientOf(t, c, e.Endpoints(hosts...)...)
		for i := range 40 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := cli.Put(ctx, "/it/"+c, fmt.Sprint(i))
			cancel()
			if err != nil {
				t.Fatalf("%s: put: %v", c, err)
			}
		}
	}
	e.MustApply(t, harness.Playbook("maintenance.yml"), "-e", "etcd_compact_keep=10")
	for c, hosts := range hostsOf {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := e.ClientOf(t, c, e.Endpoints(hosts...)...).Get(ctx, "/it/"+c, clientv3.WithRev(2))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "compacted") {
			t.Errorf("%s: revision 2 after maintenance.yml: %v, want it compacted", c, err)
		}
	}

	// A change to green only rolls green: blue's partition has no
	// notification of its own, so its handler does not run.
	before := bootPIDs(t, e, hostsOf["blue"])
	greenBefore := bootPIDs(t, e, hostsOf["green"])
	e.Inventory = withClusters(map[string]map[string]any{"green": {"etcd_heartbeat_interval": 150}})
	e.MustApply(t, pb)
	if after := bootPIDs(t, e, hostsOf["blue"]); !maps.Equal(before, after) {
		t.Errorf("blue's members restarted for green's change: etcd PIDs %v -> %v", before, after)
	}
	for h, pid := range bootPIDs(t, e, hostsOf["green"]) {
		if pid == greenBefore[h] {
			t.Errorf("green member %s was not restarted for its new heartbeat interval (PID %d)", h, pid)
		}
	}
	if o := e.MustApply(t, pb); o.Changed() != 0 {
		t.Errorf("the re-run changed %d things:\n%s", o.Changed(), o.Summary())
	}
}

// clusterSpans is, for each cluster, the start of its first and the end of
// its last task in the run's first play.
func clusterSpans(events []runner.Event, clusterOf map[string]string) map[string][2]time.Time {
	out := map[string][2]time.Time{}
	for _, ev := range events {
		c := clusterOf[ev.Host]
		if ev.Type != runner.EventNodeDone || c == "" || !strings.HasPrefix(ev.Node, "p1.") {
			continue
		}
		start := ev.Time.Add(-time.Duration(ev.Elapsed * float64(time.Second)))
		s, ok := out[c]
		if !ok || start.Before(s[0]) {
			s[0] = start
		}
		if ev.Time.After(s[1]) {
			s[1] = ev.Time
		}
		out[c] = s
	}
	return out
}
