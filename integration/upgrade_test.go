// Rolling upgrades on real lab hosts (issue 11): real etcd releases built
// from the Go module proxy, checked with etcd's own client and its
// /version endpoint. Lab blocks 63-64.
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
)

// serverVersions is what each member's Status says it runs.
func serverVersions(t *testing.T, e *harness.Env) map[string]string {
	t.Helper()
	cli := e.Client(t)
	out := map[string]string{}
	for _, h := range e.Lab.Hosts() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := cli.Status(ctx, e.Endpoints(h.Name)[0])
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", h.Name, err)
		}
		out[h.Name] = st.Version
	}
	return out
}

// clusterVersionOf reads etcdcluster from a member's /version endpoint.
func clusterVersionOf(t *testing.T, e *harness.Env, host string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: e.ClientTLS(t)}, Timeout: 10 * time.Second}
	resp, err := c.Get(e.Endpoints(host)[0] + "/version")
	if err != nil {
		t.Fatalf("GET /version: %v", err)
	}
	defer resp.Body.Close()
	var v struct {
		Cluster string `json:"etcdcluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Cluster
}

func allAt(vs map[string]string, want string) bool {
	for _, v := range vs {
		if v != want {
			return false
		}
	}
	return len(vs) > 0
}

func upLab(t *testing.T, name string, block int, versions ...string) *harness.Env {
	e := labEnv(t, name, block, versions...)
	e.MustApply(t, harness.Playbook("site.yml"))
	return e
}

// TestUpgrade35To36To37: a 3-member TLS cluster with 10,000 keys and a
// client writing throughout goes 3.5.35 -> 3.6.16 -> 3.7.3 through
// upgrade.yml; site.yml refuses the version change itself; skipping a
// minor, and going down a minor without allow_downgrade, are refused
// before any change; with it, 3.7.3 -> 3.6.16 goes through etcd's
// downgrade API with the data intact.
func TestUpgrade35To36To37(t *testing.T) {
	e := upLab(t, "it-upgrade", 63, "v3.5.35", "v3.6.16", "v3.7.3")
	putKeys(t, e.Client(t), 10000, "orig", 0)
	ub := harness.Playbook("upgrade.yml")
	dirs := []string{"/etc", "/usr/local", "/opt"}
	before := e.SnapshotAll(t, dirs...)

	refusals := []struct {
		playbook, version string
		want              []string
	}{
		{harness.Playbook("site.yml"), "v3.6.16", []string{"etcd_version is v3.6.16 but etcd1 runs v3.5.35", "playbooks/upgrade.yml -e etcd_version=v3.6.16"}},
		{ub, "v3.7.3", []string{"etcd v3.5.35 -> v3.7.3 is not a supported upgrade", "upgrade to the latest v3.6.x first"}},
	}
	for _, r := range refusals {
		e.Vars["etcd_version"] = r.version
		o := e.Apply(t, r.playbook)
		for _, w := range r.want {
			if o.Code == 0 || !strings.Contains(o.Summary(), w) {
				t.Errorf("%s to %s: exit %d, want a refusal saying %q:\n%s", r.playbook, r.version, o.Code, w, o.Summary())
			}
		}
		if d := e.ChangedSince(t, before, dirs...); len(d) > 0 {
			t.Fatalf("a refused version change changed hosts:\n%s", strings.Join(d, "\n"))
		}
	}

	e.Vars["etcd_version"] = "v3.6.16"
	check := e.Etcdplay(t, "apply", ub, "--check", "--diff")
	for _, w := range []string{"upgrade etcd v3.5.35 -> v3.6.16: allowed: one minor up (3.5 -> 3.6); the cluster runs v3.5.35, at least v3.5.26",
		"snapshot to ", "3/3, leader, last", "/opt/etcd/v3.5.35 -> /opt/etcd/v3.6.16", "cluster version 3.6"} {
		if check.Code != 0 || !strings.Contains(check.Stdout, w) {
			t.Errorf("upgrade --check (exit %d) lacks %q:\n%s%s", check.Code, w, check.Stdout, check.Stderr)
		}
	}
	if vs := serverVersions(t, e); !allAt(vs, "3.5.35") {
		t.Fatalf("--check changed versions: %v", vs)
	}

	for _, step := range []struct{ version, server, cluster string }{{"v3.6.16", "3.6.16", "3.6.0"}, {"v3.7.3", "3.7.3", "3.7.0"}} {
		cli := e.Client(t)
		w := harness.StartWriteLoop(cli, "/it/upgrade-"+step.version, 20*time.Millisecond, 900*time.Millisecond)
		time.Sleep(300 * time.Millisecond)
		e.Vars["etcd_version"] = step.version
		o := e.Apply(t, ub)
		time.Sleep(300 * time.Millisecond)
		stats := w.Stop()
		if o.Code != 0 {
			t.Fatalf("upgrade to %s: exit %d\n%s\n%s", step.version, o.Code, o.Summary(), o.Stderr)
		}
		t.Logf("upgrade of 3 members to %s: %s; writer: %s", step.version, o.Elapsed.Round(time.Millisecond), stats)
		if stats.MaxGap > time.Second {
			t.Errorf("writes stopped for %s during the upgrade to %s (> the 1s election timeout): %v", stats.MaxGap, step.version, stats.Errors)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := cli.Get(ctx, "/it/upgrade-"+step.version+"/", clientv3WithPrefixCount()...)
		cancel()
		if err != nil || resp.Count < int64(stats.OK) {
			t.Errorf("acknowledged writes lost: %d acknowledged, %v stored (%v)", stats.OK, resp, err)
		}
		if vs := serverVersions(t, e); !allAt(vs, step.server) {
			t.Errorf("server versions after the upgrade to %s: %v", step.version, vs)
		}
		if cv := clusterVersionOf(t, e, "etcd2"); cv != step.cluster {
			t.Errorf("cluster version after the upgrade to %s: %s, want %s", step.version, cv, step.cluster)
		}
		checkKeys(t, e.Client(t), 10000, "orig", 0)
		if again := e.MustApply(t, harness.Playbook("site.yml")); again.Changed() != 0 {
			t.Errorf("site.yml after the upgrade to %s changed %d things:\n%s", step.version, again.Changed(), again.Stdout)
		}
		if again := e.MustApply(t, ub); again.Changed() != 0 {
			t.Errorf("upgrade.yml again at %s changed %d things:\n%s", step.version, again.Changed(), again.Stdout)
		}
	}
	if files := backups(t, e); len(files) != 2 {
		t.Errorf("snapshots before the two upgrades: %v, want 2", files)
	}
	e.Vars["etcd_version"] = "v3.6.16"
	if o := e.Apply(t, ub); o.Code == 0 || !strings.Contains(o.Summary(), "ask for it with -e allow_downgrade=true") {
		t.Errorf("a minor downgrade without allow_downgrade: exit %d\n%s", o.Code, o.Summary())
	}

	// Down again, asked for: through etcd's downgrade API, data intact.
	e.Vars["allow_downgrade"] = "true"
	check = e.Etcdplay(t, "apply", ub, "--check")
	if !strings.Contains(check.Stdout, "downgrade etcd v3.7.3 -> v3.6.16") || !strings.Contains(check.Stdout, "downgrade enable 3.6") {
		t.Errorf("downgrade --check:\n%s", check.Stdout)
	}
	o := e.Apply(t, ub)
	if o.Code != 0 {
		t.Fatalf("downgrade to v3.6.16: exit %d\n%s\n%s", o.Code, o.Summary(), o.Stderr)
	}
	t.Logf("downgrade of 3 members to v3.6.16: %s", o.Elapsed.Round(time.Millisecond))
	if vs := serverVersions(t, e); !allAt(vs, "3.6.16") {
		t.Errorf("server versions after the downgrade: %v", vs)
	}
	if cv := clusterVersionOf(t, e, "etcd1"); cv != "3.6.0" {
		t.Errorf("cluster version after the downgrade: %s", cv)
	}
	checkKeys(t, e.Client(t), 10000, "orig", 0)
	if again := e.MustApply(t, harness.Playbook("site.yml")); again.Changed() != 0 {
		t.Errorf("site.yml after the downgrade changed %d things:\n%s", again.Changed(), again.Stdout)
	}
}

// TestUpgradePathAndResume: 3.5.21 -> 3.6.16 is refused with the next
// step, and so is any upgrade with a member down; the patch upgrade to
// 3.5.35, with the controller SIGKILLed once two members are done,
// finishes on a re-run without restarting the members already done; a
// member that cannot start on the new version stops the upgrade there, and
// a run after the fix finishes it.
func TestUpgradePathAndResume(t *testing.T) {
	e := upLab(t, "it-upgrade-path", 64, "v3.5.21", "v3.5.35", "v3.6.16")
	ub := harness.Playbook("upgrade.yml")
	e.Vars["etcd_version"] = "v3.6.16"
	o := e.Apply(t, ub)
	if o.Code == 0 || !strings.Contains(o.Summary(), "upgrade to v3.5.26 or a later 3.5 patch first") {
		t.Fatalf("3.5.21 -> 3.6.16: exit %d\n%s", o.Code, o.Summary())
	}
	if vs := serverVersions(t, e); !allAt(vs, "3.5.21") {
		t.Fatalf("a refused upgrade changed versions: %v", vs)
	}

	// A member down: refused in preflight, nothing changed.
	ctx := context.Background()
	if err := e.Lab.StopUnit(ctx, "etcd2", "etcd.service"); err != nil {
		t.Fatal(err)
	}
	e.Vars["etcd_version"] = "v3.5.35"
	if o := e.Apply(t, ub); o.Code == 0 || !strings.Contains(o.Summary(), "preflight failed, nothing was changed: the cluster is not healthy: etcd2") {
		t.Errorf("upgrade with etcd2 down: exit %d\n%s", o.Code, o.Summary())
	}
	if out, err := e.Lab.Run(ctx, "etcd2", "systemctl start etcd"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitHealthy(t, e)

	pidsBefore := bootPIDs(t, e, bootHostNames(e.Lab))
	e.Vars["etcd_version"] = "v3.5.35"
	// Killed as the roll checks the cluster before the third member: the
	// first two are done, the third untouched.
	e.SignalWhen(t, ub, "2/3 done", 0, os.Kill)
	waitHealthy(t, e)
	mid := serverVersions(t, e)
	pidsMid := bootPIDs(t, e, bootHostNames(e.Lab))
	var done []string
	for h, v := range mid {
		if v == "3.5.35" {
			done = append(done, h)
		}
	}
	if len(done) != 2 {
		t.Fatalf("after the kill at the third member: %v, want two members on 3.5.35", mid)
	}
	r := e.MustApply(t, ub)
	if vs := serverVersions(t, e); !allAt(vs, "3.5.35") {
		t.Errorf("after the re-run: %v", vs)
	}
	pidsAfter := bootPIDs(t, e, bootHostNames(e.Lab))
	for _, h := range done {
		if pidsAfter[h] != pidsMid[h] {
			t.Errorf("%s was restarted again by the re-run (pid %d -> %d)", h, pidsMid[h], pidsAfter[h])
		}
		if pidsMid[h] == pidsBefore[h] {
			t.Errorf("%s reports 3.5.35 but was never restarted", h)
		}
	}
	t.Logf("re-run: %s", fmt.Sprint(r.Elapsed.Round(time.Millisecond)))

	// A member that does not come back after its restart: the roll stops
	// there, the others stay as they were, and the message says what to do.
	leader := ""
	for _, h := range e.Lab.Hosts() {
		st, err := e.Client(t).Status(ctx, e.Endpoints(h.Name)[0])
		if err == nil && st.Leader == st.Header.MemberId {
			leader = h.Name
		}
	}
	broken := "etcd1"
	if leader == "etcd1" {
		broken = "etcd2"
	}
	if out, err := e.Lab.Run(ctx, broken, "chmod 000 /var/lib/etcd/member"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	e.Vars["etcd_version"] = "v3.6.16"
	o = e.Apply(t, ub)
	if o.Code == 0 || !strings.Contains(o.Summary(), "of "+broken) || !strings.Contains(o.Summary(), "run upgrade.yml again") {
		t.Errorf("upgrade with %s unable to start: exit %d\n%s", broken, o.Code, o.Summary())
	}
	for _, h := range bootHostNames(e.Lab) {
		if h == broken {
			continue
		}
		st, err := e.Client(t, e.Endpoints(h)...).Status(ctx, e.Endpoints(h)[0])
		if err != nil || st.Version != "3.5.35" {
			t.Errorf("%s after the stopped upgrade: %v %v, want it untouched on 3.5.35", h, st, err)
		}
	}
	if out, err := e.Lab.Run(ctx, broken, "chmod 700 /var/lib/etcd/member && systemctl restart etcd"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitHealthy(t, e)
	e.MustApply(t, ub)
	if vs := serverVersions(t, e); !allAt(vs, "3.6.16") {
		t.Errorf("after fixing %s and running again: %v", broken, vs)
	}
}
