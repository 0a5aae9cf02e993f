package integration

// Issue 10, defect 9: the peer port accepted any certificate the cluster
// CA signed, the user's client certificate included. Member peer
// certificates now share the CN etcd-peer and the peer port allows only
// that CN. A cluster set up before that (per-member peer CNs, no
// allowed-cn) moves over with a plain site.yml: certificates re-issued,
// then a rolling restart, with a client writing throughout.

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/modules/etcd_pki"
)

func TestPeerPortRefusesClientCertsAfterUpgrade(t *testing.T) {
	_, e, pb, hosts := siteLab(t, "it-peercn", 45)

	// Put the cluster back the way an older etcdplay left it.
	peerCNsAsBefore(t, e, hosts)
	for _, h := range hosts {
		if code, err := peerGet(e, h, e.ClientTLS(t)); err != nil || code != 200 {
			t.Fatalf("set-up: %s peer port should accept the client certificate as before: %d %v", h, code, err)
		}
	}

	untouched := e.CheckSnapshot(t)
	check := e.Apply(t, pb, "--check")
	if check.Code != 0 {
		t.Fatalf("--check: exit %d\n%s", check.Code, check.Summary())
	}
	for _, h := range hosts {
		plan := check.PlanText(h)
		if !strings.Contains(plan, "~ cert "+h+" peer: re-issue: CN "+h+" -> etcd-peer") {
			t.Errorf("%s: --check does not plan the peer certificate's re-issue:\n%s", h, plan)
		}
	}
	if !strings.Contains(check.Stdout, "restart "+hosts[0]) {
		t.Errorf("--check plans no rolling restart:\n%s", check.Stdout)
	}
	e.Unchanged(t, untouched, "--check")

	cli := e.Client(t)
	w := harness.StartWriteLoop(cli, "/it/peercn", 20*time.Millisecond, 500*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	apply := e.Apply(t, pb)
	time.Sleep(500 * time.Millisecond)
	stats := w.Stop()
	if apply.Code != 0 {
		t.Fatalf("apply: exit %d\n%s", apply.Code, apply.Summary())
	}
	t.Logf("peer CN switch of 3 members: apply %s; writer: %s", apply.Elapsed.Round(time.Millisecond), stats)
	if stats.MaxGap > electionTimeout || stats.OK < 50 {
		t.Errorf("writes stopped for %s (> %s) or too few: %s; first errors: %v", stats.MaxGap, electionTimeout, stats, stats.Errors)
	}
	for _, h := range hosts {
		if code, err := peerGet(e, h, e.ClientTLS(t)); err == nil {
			t.Errorf("%s peer port still accepts the client certificate: %d", h, code)
		}
		if code, err := peerGet(e, h, peerTLS(t, e, h)); err != nil || code != 200 {
			t.Errorf("%s peer port refuses its member certificate: %d %v", h, code, err)
		}
	}
	bootCheckCluster(t, e, hosts)
	if again := e.MustApply(t, pb); again.Changed() != 0 {
		t.Errorf("site.yml after the switch: changed=%d, want 0\n%s", again.Changed(), again.Summary())
	}
}

// peerGet asks h's peer port for its member list as tc's certificate.
func peerGet(e *harness.Env, h string, tc *tls.Config) (int, error) {
	host, err := e.Lab.Host(h)
	if err != nil {
		return 0, err
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := c.Get("https://" + net.JoinHostPort(host.Addr, "2380") + "/members")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// peerTLS is h's peer certificate from the controller's state dir.
func peerTLS(t *testing.T, e *harness.Env, h string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(e.PKIDir(), "peer-"+h+".crt"), filepath.Join(e.PKIDir(), "peer-"+h+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: e.ClientTLS(t).RootCAs, MinVersion: tls.VersionTLS12}
}

// peerCNsAsBefore puts the cluster back the way an older etcdplay left
// it: first allowed-cn leaves every etcd.yaml, member by member with a
// restart (a member restarted with its old certificate while the others
// still allow only etcd-peer could not rejoin); then every member gets a
// peer certificate whose CN is its name (same CA, same SANs), in the state
// dir and on the host, which etcd picks up at the next handshake.
func peerCNsAsBefore(t *testing.T, e *harness.Env, hosts []string) {
	t.Helper()
	dir := e.PKIDir()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	root := func(h string) string {
		r, err := e.Lab.HostRoot(h)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ctx := context.Background()
	for _, h := range hosts {
		conf := filepath.Join(root(h), "etc/etcd/etcd.yaml")
		var kept []string
		for _, line := range strings.SplitAfter(string(read(conf)), "\n") {
			if !strings.Contains(line, "allowed-cn") && !strings.Contains(line, "Only member certificates") {
				kept = append(kept, line)
			}
		}
		rewriteKeepingOwner(t, conf, []byte(strings.Join(kept, "")))
		if out, err := e.Lab.Run(ctx, h, "systemctl restart etcd"); err != nil {
			t.Fatalf("restart etcd on %s: %v\n%s", h, err, out)
		}
		waitHealthy(t, e)
	}
	ca, err := etcd_pki.LoadCA(read(filepath.Join(dir, "ca.crt")), read(filepath.Join(dir, "ca.key")))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		cur := harness.ParseCertPEM(t, read(filepath.Join(dir, "peer-"+h+".crt")), h+" peer certificate")
		sans := append([]string(nil), cur.DNSNames...)
		for _, ip := range cur.IPAddresses {
			sans = append(sans, ip.String())
		}
		pair, err := ca.Issue(etcd_pki.Peer, h, sans, 365*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// Key first, as etcd_pki writes a pair: a handshake in between
		// fails and is retried.
		for _, f := range []struct {
			state, host string
			data        []byte
		}{
			{filepath.Join(dir, "peer-"+h+".key"), "/etc/etcd/pki/peer.key", pair.Key},
			{filepath.Join(dir, "peer-"+h+".crt"), "/etc/etcd/pki/peer.crt", pair.Cert},
		} {
			if err := os.WriteFile(f.state, f.data, 0o600); err != nil {
				t.Fatal(err)
			}
			rewriteKeepingOwner(t, filepath.Join(root(h), f.host), f.data)
		}
	}
	waitHealthy(t, e)
}

// rewriteKeepingOwner replaces p's content, keeping its mode and owner.
func rewriteKeepingOwner(t *testing.T, p string, data []byte) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Chown(p, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
}
