package integration

// Issue 12 items 2 and 4: rotate-certs.yml re-issues every member's server and
// peer certificates (and the controller's client certificates) on demand,
// one member at a time, with no restart: etcd 3.6 and 3.7 read their leaf
// certificates at every TLS handshake. Checked against what the members
// serve (serials at both ports), their main PIDs, a client writing
// throughout, and a client still holding the old client certificate. A
// renewal by site.yml (leaves inside etcd_cert_renew_before) goes the same
// way.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/internal/etcdstatus"
)

func TestRotateCertsWithoutRestart(t *testing.T) {
	e := upLab(t, "it-rotate", 46, "v3.6.16", "v3.7.3")
	hosts := bootHostNames(e.Lab)
	rb := harness.Playbook("rotate-certs.yml")

	for _, version := range []string{"v3.6.16", "v3.7.3"} {
		if version != "v3.6.16" {
			e.Vars["etcd_version"] = version
			e.MustApply(t, harness.Playbook("upgrade.yml"))
		}
		// The client certificate as it is now, held by a client that
		// keeps it after the rotation.
		pki := e.PKIDir()
		old, err := tls.LoadX509KeyPair(filepath.Join(pki, "client-etcdplay.crt"), filepath.Join(pki, "client-etcdplay.key"))
		if err != nil {
			t.Fatal(err)
		}
		oldTLS := e.ClientTLS(t)
		oldTLS.Certificates = []tls.Certificate{old}
		oldClient := bootClient(t, e.Endpoints(), oldTLS)

		before := servedSerials(t, e)
		pids := bootPIDs(t, e, hosts)

		untouched := e.CheckSnapshot(t)
		check := e.Apply(t, rb, "--check")
		if check.Code != 0 {
			t.Fatalf("%s: --check: exit %d\n%s", version, check.Code, check.Summary())
		}
		for _, h := range hosts {
			if plan := check.PlanText(h); !strings.Contains(plan, "~ cert "+h+" peer: re-issue: rotation asked for") {
				t.Errorf("%s: --check on %s does not plan the rotation:\n%s", version, h, plan)
			}
		}
		e.Unchanged(t, untouched, version+": --check")

		w := harness.StartWriteLoop(e.Client(t), "/it/rotate", 20*time.Millisecond, 500*time.Millisecond)
		time.Sleep(300 * time.Millisecond)
		o := e.Apply(t, rb)
		time.Sleep(300 * time.Millisecond)
		stats := w.Stop()
		if o.Code != 0 {
			t.Fatalf("%s: rotate-certs.yml: exit %d\n%s\n%s", version, o.Code, o.Summary(), o.Stderr)
		}
		t.Logf("%s: rotation of 3 members: %s; writer: %s", version, o.Elapsed.Round(time.Millisecond), stats)
		if stats.Failed > 0 || stats.MaxGap > electionTimeout {
			t.Errorf("%s: writes failed or stalled during the rotation: %s; first errors: %v", version, stats, stats.Errors)
		}
		after := servedSerials(t, e)
		for what, s := range after {
			if s == "" || s == before[what] {
				t.Errorf("%s: %s serves serial %q, was %q: not rotated", version, what, s, before[what])
			}
		}
		if now := bootPIDs(t, e, hosts); !maps.Equal(now, pids) {
			t.Errorf("%s: etcd restarted by the rotation: main PIDs %v, were %v", version, now, pids)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = oldClient.Put(ctx, "/it/rotate/old-cert", version)
		cancel()
		if err != nil {
			t.Errorf("%s: a client with the old client certificate stopped working: %v", version, err)
		}
		if again := e.MustApply(t, harness.Playbook("site.yml")); again.Changed() != 0 {
			t.Errorf("%s: site.yml after the rotation changed %d things:\n%s", version, again.Changed(), again.Summary())
		}
		if version != "v3.6.16" {
			continue
		}
		// Renewal goes the same way: site.yml with every leaf inside
		// etcd_cert_renew_before re-issues them, checks they are served,
		// and restarts nothing (the restart handler it notifies finds
		// nothing etcd reads only at start changed).
		before, pids = servedSerials(t, e), bootPIDs(t, e, hosts)
		// (A year-long leaf is inside 370d; the window must stay shorter
		// than the validity, so that grows to 400d for this run.)
		if renew := e.MustApply(t, harness.Playbook("site.yml"), "-e", "etcd_cert_renew_before=370d", "-e", "etcd_cert_validity=400d"); renew.Changed() == 0 {
			t.Errorf("site.yml with every leaf inside etcd_cert_renew_before renewed nothing")
		}
		for what, s := range servedSerials(t, e) {
			if s == before[what] {
				t.Errorf("site.yml renewal: %s still serves serial %s", what, s)
			}
		}
		if now := bootPIDs(t, e, hosts); !maps.Equal(now, pids) {
			t.Errorf("site.yml renewal restarted etcd: main PIDs %v, were %v", now, pids)
		}
	}
}

// servedSerials is, from `etcdplay status`, the serial each member serves
// at each port ("etcd1 server", "etcd1 peer") and those of the state dir's
// client certificates.
func servedSerials(t *testing.T, e *harness.Env) map[string]string {
	t.Helper()
	r := statusReport(t, e)
	out := map[string]string{}
	for _, c := range r.Certificates {
		if c.Kind != "ca" {
			out[c.What] = c.Serial
		}
	}
	if len(out) != 3*2+2 {
		t.Fatalf("status lists %d leaf certificates, want 8: %v", len(out), out)
	}
	return out
}

// statusReport runs `etcdplay status -o json` and parses the report; a
// non-zero exit fails the test.
func statusReport(t *testing.T, e *harness.Env) etcdstatus.Report {
	t.Helper()
	o := e.Etcdplay(t, "status", "-o", "json")
	if o.Code != 0 {
		t.Fatalf("status: exit %d\n%s\n%s", o.Code, o.Stdout, o.Stderr)
	}
	var r etcdstatus.Report
	if err := json.Unmarshal([]byte(o.Stdout), &r); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, o.Stdout)
	}
	return r
}
