package integration

// Bootstrap of a TLS etcd cluster from bare lab hosts with playbooks/site.yml,
// checked from the outside: etcd's own client (clientv3) with the client
// certificate etcdplay issued, the real etcdctl on the hosts, systemd's and
// the kernel's view of the etcd process, and the files on the hosts' disks.

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/internal/etcdstatus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const bootVersion = "v3.6.16"

// TestBootstrapThreeMembers: bare hosts -> --check --diff (every file and
// action, no key material, hosts untouched) -> apply -> a healthy TLS
// cluster as etcd sees it -> a second apply and a --check change nothing.
func TestBootstrapThreeMembers(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-boot3", Block: 40, Hosts: 3})
	e := bootEnv(t, l)
	pb := harness.Playbook("site.yml")
	hosts := bootHostNames(l)
	bare := e.SnapshotAll(t)

	// Dry run on bare hosts, as JSON (structure) and as text (what a person
	// reads). Neither may show key material or touch a host.
	check := e.Apply(t, pb, "--check", "--diff")
	if check.Code != 0 {
		t.Fatalf("--check --diff on bare hosts: exit %d\n%s%s", check.Code, check.Summary(), check.Stderr)
	}
	text := e.Etcdplay(t, "apply", pb, "--check", "--diff")
	if text.Code != 0 {
		t.Fatalf("--check --diff (text) on bare hosts: exit %d\n%s%s", text.Code, text.Stdout, text.Stderr)
	}
	for _, out := range []string{check.Stdout, check.Stderr, text.Stdout, text.Stderr} {
		if strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("--check --diff prints private key material:\n%s", out)
		}
	}
	textByHost := bootSplitByHost(text.Stdout)
	for _, h := range hosts {
		bootCheckPlanBare(t, check, h, textByHost[h])
		if r := check.Recap[h]; r.Changed == 0 || r.Failed != 0 {
			t.Errorf("--check recap for %s: %+v, want changes and no failure", h, r)
		}
	}
	if !regexp.MustCompile(`start etcd\.service`).MatchString(text.Stdout) {
		t.Errorf("--check --diff text does not plan starting etcd.service:\n%s", text.Stdout)
	}
	if d := e.ChangedSince(t, bare); len(d) > 0 {
		t.Fatalf("--check --diff changed bare hosts:\n%s", strings.Join(d, "\n"))
	}

	apply := e.MustApply(t, pb)
	t.Logf("cold bootstrap of 3 hosts: %s", apply.Elapsed.Round(time.Millisecond))
	for _, h := range hosts {
		if r := apply.Recap[h]; r.Changed == 0 || r.Failed != 0 {
			t.Errorf("apply recap for %s: %+v", h, r)
		}
	}

	bootCheckCluster(t, e, hosts)
	// root's login shell on a member: etcdctl finds its member and
	// certificates (/etc/profile.d/etcdctl.sh) with no flags.
	for _, h := range hosts {
		out, err := l.Run(context.Background(), h, "bash -lc 'etcdctl endpoint health'")
		if err != nil || !strings.Contains(out, "is healthy") {
			t.Errorf("etcdctl in root's login shell on %s: %v\n%s", h, err, out)
		}
	}
	bootCheckWatch(t, e)
	bootCheckRefusals(t, e)
	pids := bootCheckProcesses(t, e, hosts)
	bootCheckCerts(t, e, hosts)
	bootCheckCAKeyStaysHome(t, e, hosts)
	bootCheckStatusCerts(t, e, hosts)

	// Converged: a second apply changes nothing, restarts nothing.
	conv := e.SnapshotAll(t, harness.CheckDirs...)
	again := e.MustApply(t, pb)
	t.Logf("warm no-op apply of 3 hosts: %s", again.Elapsed.Round(time.Millisecond))
	for _, h := range hosts {
		if r := again.Recap[h]; r.Changed != 0 || r.Failed != 0 {
			acts, _ := again.Planned(h)
			t.Errorf("second apply on %s: %+v, want changed=0; it did %v", h, r, acts)
		}
	}
	noop := e.Apply(t, pb, "--check", "--diff")
	if noop.Code != 0 {
		t.Fatalf("--check --diff on a converged cluster: exit %d\n%s", noop.Code, noop.Summary())
	}
	for _, h := range hosts {
		acts, diffs := noop.Planned(h)
		if r := noop.Recap[h]; r.Changed != 0 || len(acts)+len(diffs) > 0 {
			t.Errorf("--check --diff on converged %s: recap %+v, actions %v, diffs %d; want nothing", h, r, acts, len(diffs))
		}
	}
	if d := e.ChangedSince(t, conv, harness.CheckDirs...); len(d) > 0 {
		t.Errorf("second apply or --check changed hosts:\n%s", strings.Join(d, "\n"))
	}
	if now := bootPIDs(t, e, hosts); !maps.Equal(now, pids) {
		t.Errorf("etcd restarted by a no-op apply: main PIDs %v, were %v", now, pids)
	}
}

// TestBootstrapOneAndFive: the same playbook on a single host and on five.
func TestBootstrapOneAndFive(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block int
		hosts int
	}{
		{"one", 42, 1},
		{"five", 43, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := lab.ForTest(t, lab.Options{Name: "it-boot-" + tc.name, Block: tc.block, Hosts: tc.hosts})
			e := bootEnv(t, l)
			apply := e.MustApply(t, harness.Playbook("site.yml"))
			t.Logf("bootstrap of %d hosts: %s", tc.hosts, apply.Elapsed.Round(time.Millisecond))
			hosts := bootHostNames(l)
			bootCheckCluster(t, e, hosts)
			again := e.MustApply(t, harness.Playbook("site.yml"))
			if n := again.Changed(); n != 0 {
				t.Errorf("second apply on %d hosts: changed=%d, want 0", tc.hosts, n)
			}
		})
	}
}

// bootEnv is an Env for site.yml on l, with the lab mirror as etcd_release_url.
// The lab hosts share one disk with each other and with parallel tests, and
// etcd_tune gates on the p99 of 10 fdatasync samples, i.e. their maximum:
// one slow sync above the 100ms production limit fails a whole run (seen
// about once in 35 runs right after a rolling restart). These tests are not
// about disk speed, so they allow 1s.
func bootEnv(t *testing.T, l *lab.Lab) *harness.Env {
	t.Helper()
	e := harness.New(t, l)
	e.Vars["etcd_release_url"] = harness.Mirror(t, bootVersion)
	e.Vars["etcd_max_fsync_latency"] = "1s"
	return e
}

// siteLab is a 3-host lab named name on block with site.yml applied: the
// lab, its Env, site.yml's path and the host names.
func siteLab(t *testing.T, name string, block int) (*lab.Lab, *harness.Env, string, []string) {
	t.Helper()
	l := lab.ForTest(t, lab.Options{Name: name, Block: block, Hosts: 3})
	e := bootEnv(t, l)
	pb := harness.Playbook("site.yml")
	e.MustApply(t, pb)
	return l, e, pb, bootHostNames(l)
}

func bootHostNames(l *lab.Lab) []string {
	var out []string
	for _, h := range l.Hosts() {
		out = append(out, h.Name)
	}
	return out
}

// bootSplitByHost groups the text output's lines by the host of the result
// line ("changed (check): [etcd2] task") they follow.
func bootSplitByHost(out string) map[string]string {
	res := map[string]string{}
	hostRE := regexp.MustCompile(`^\S.*?\[([^\]]+)\]`)
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		if m := hostRE.FindStringSubmatch(line); m != nil {
			cur = m[1]
		}
		if cur != "" {
			res[cur] += line + "\n"
		}
	}
	return res
}

// bootCheckPlanBare: the dry run on a bare host names every file and action
// of a bootstrap, with certificates in full and keys as hashes only.
func bootCheckPlanBare(t *testing.T, check *harness.Outcome, host, text string) {
	t.Helper()
	_, diffs := check.Planned(host)
	all := check.PlanText(host)
	for _, want := range []string{
		"/opt/etcd/" + bootVersion,
		"/usr/local/bin/etcd:", "/usr/local/bin/etcdctl:", "/usr/local/bin/etcdutl:",
		"user etcd",
		"/etc/systemd/system/etcd.service",
		"/etc/etcd/pki/ca.crt", "/etc/etcd/pki/server.crt", "/etc/etcd/pki/server.key",
		"/etc/etcd/pki/peer.crt", "/etc/etcd/pki/peer.key",
		"/etc/etcd/etcd.yaml",
		"start etcd.service",
		"/etc/profile.d/etcdctl.sh",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("--check on bare %s plans no %q; actions:\n%s", host, want, all)
		}
		if want != "user etcd" && !strings.Contains(text, strings.TrimSuffix(want, ":")) {
			t.Errorf("--check --diff text for %s does not mention %q", host, want)
		}
	}
	seen := map[string]bool{}
	for _, d := range diffs {
		seen[d.Path] = true
		isKey := strings.HasSuffix(d.Path, ".key")
		switch {
		case isKey && (!d.Secret || !strings.HasPrefix(d.After, "sha256:")):
			t.Errorf("%s: diff of %s shows %q, want a secret shown as its hash", host, d.Path, d.After)
		case !isKey && d.Secret:
			t.Errorf("%s: %s is marked secret", host, d.Path)
		}
	}
	for _, p := range []string{"/etc/etcd/etcd.yaml", "/etc/systemd/system/etcd.service", "/etc/etcd/pki/server.crt", "/etc/etcd/pki/server.key", "/etc/etcd/pki/peer.key"} {
		if !seen[p] {
			t.Errorf("--check --diff on %s has no diff for %s", host, p)
		}
	}
	for _, d := range diffs {
		if d.Path == "/etc/etcd/etcd.yaml" && !strings.Contains(d.After, fmt.Sprintf("name: %q", host)) {
			t.Errorf("%s: planned etcd.yaml does not name the member:\n%s", host, d.After)
		}
	}
}

// bootClient is a clientv3 client with an explicit TLS config (nil: none).
func bootClient(t *testing.T, endpoints []string, tc *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tc, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client for %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// bootCheckCluster: every member healthy and serving, in one cluster with
// one leader; the member list is the inventory; a write through one member
// is read back through every other.
func bootCheckCluster(t *testing.T, e *harness.Env, hosts []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := e.Client(t)

	addrs := map[string]string{}
	for _, h := range e.Lab.Hosts() {
		addrs[h.Name] = h.Addr
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	if len(ml.Members) != len(hosts) {
		t.Fatalf("member list has %d members, want %d: %v", len(ml.Members), len(hosts), ml.Members)
	}
	for _, m := range ml.Members {
		a, ok := addrs[m.Name]
		if !ok {
			t.Errorf("member %q is not an inventory host", m.Name)
			continue
		}
		if m.IsLearner {
			t.Errorf("member %s is still a learner", m.Name)
		}
		if want := []string{"https://" + a + ":2380"}; !slices.Equal(m.PeerURLs, want) {
			t.Errorf("member %s peer URLs %v, want %v", m.Name, m.PeerURLs, want)
		}
		if want := []string{"https://" + a + ":2379"}; !slices.Equal(m.ClientURLs, want) {
			t.Errorf("member %s client URLs %v, want %v", m.Name, m.ClientURLs, want)
		}
	}

	leaders := map[uint64]bool{}
	for _, h := range hosts {
		ep := "https://" + addrs[h] + ":2379"
		st, err := cli.Status(ctx, ep)
		if err != nil {
			t.Errorf("status of %s: %v", ep, err)
			continue
		}
		if len(st.Errors) > 0 || st.Version != strings.TrimPrefix(bootVersion, "v") {
			t.Errorf("status of %s: version %s, errors %v", ep, st.Version, st.Errors)
		}
		leaders[st.Leader] = true
	}
	if len(leaders) != 1 || leaders[0] {
		t.Errorf("members disagree on the leader (or have none): %v", leaders)
	}

	// etcdctl on the first host, over TLS with that member's certificate
	// (server certs carry clientAuth), checks every member's health.
	out, err := e.Lab.Run(ctx, hosts[0], "/usr/local/bin/etcdctl --endpoints="+strings.Join(e.Endpoints(), ",")+
		" --cacert=/etc/etcd/pki/ca.crt --cert=/etc/etcd/pki/server.crt --key=/etc/etcd/pki/server.key endpoint health -w json")
	if err != nil {
		t.Fatalf("etcdctl endpoint health: %v", err)
	}
	var health []struct {
		Endpoint string `json:"endpoint"`
		Health   bool   `json:"health"`
		Error    string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &health); err != nil {
		t.Fatalf("etcdctl endpoint health -w json: %v\n%s", err, out)
	}
	if len(health) != len(hosts) {
		t.Errorf("etcdctl endpoint health: %d endpoints, want %d\n%s", len(health), len(hosts), out)
	}
	for _, h := range health {
		if !h.Health {
			t.Errorf("etcdctl: %s unhealthy: %s", h.Endpoint, h.Error)
		}
	}

	key, val := "/it/bootstrap", fmt.Sprintf("v-%d", time.Now().UnixNano())
	if _, err := bootClient(t, e.Endpoints(hosts[0]), e.ClientTLS(t)).Put(ctx, key, val); err != nil {
		t.Fatalf("put through %s: %v", hosts[0], err)
	}
	for _, h := range hosts {
		resp, err := bootClient(t, e.Endpoints(h), e.ClientTLS(t)).Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != val {
			t.Errorf("get %s through %s: %v %v, want %q", key, h, resp, err, val)
		}
	}
}

// bootCheckWatch: a watch sees a write made after it started.
func bootCheckWatch(t *testing.T, e *harness.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli := e.Client(t)
	wch := cli.Watch(clientv3.WithRequireLeader(ctx), "/it/watch/", clientv3.WithPrefix())
	// The watch is registered asynchronously: write until it reports.
	for i := 0; ; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("/it/watch/%d", i), "x"); err != nil {
			t.Fatalf("put for watch: %v", err)
		}
		select {
		case wr := <-wch:
			if err := wr.Err(); err != nil {
				t.Fatalf("watch: %v", err)
			}
			if len(wr.Events) == 0 || !strings.HasPrefix(string(wr.Events[0].Kv.Key), "/it/watch/") {
				t.Fatalf("watch response without the event: %+v", wr)
			}
			return
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("watch saw no event in 20s")
		}
	}
}

// bootCheckRefusals: the client port serves /health to a client with the
// issued certificate (so the refusals below mean something), and refuses
// plain HTTP and TLS without a client certificate.
func bootCheckRefusals(t *testing.T, e *harness.Env) {
	t.Helper()
	full := e.ClientTLS(t)
	noCert := &tls.Config{RootCAs: full.RootCAs, MinVersion: tls.VersionTLS12}
	get := func(url string, tc *tls.Config) (int, string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		resp, err := c.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	for _, h := range e.Lab.Hosts() {
		hp := net.JoinHostPort(h.Addr, "2379")
		if code, body, err := get("https://"+hp+"/health", full); err != nil || code != 200 || !strings.Contains(body, `"health":"true"`) {
			t.Errorf("%s /health with the client cert: %d %q %v, want 200 healthy", h.Name, code, body, err)
		}
		if code, body, err := get("http://"+hp+"/health", nil); err == nil && (code == 200 || strings.Contains(body, "health")) {
			t.Errorf("%s serves plain HTTP: %d %q", h.Name, code, body)
		}
		if code, body, err := get("https://"+hp+"/health", noCert); err == nil {
			t.Errorf("%s serves TLS without a client certificate: %d %q", h.Name, code, body)
		}
		// The peer port takes member certificates only: the client
		// certificate, signed by the same CA, is refused (allowed-cn).
		pp := "https://" + net.JoinHostPort(h.Addr, "2380") + "/members"
		if code, body, err := get(pp, full); err == nil {
			t.Errorf("%s peer port accepts a client certificate: %d %q", h.Name, code, body)
		}
		peer, err := tls.LoadX509KeyPair(filepath.Join(e.PKIDir(), "peer-"+h.Name+".crt"), filepath.Join(e.PKIDir(), "peer-"+h.Name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		asPeer := &tls.Config{Certificates: []tls.Certificate{peer}, RootCAs: full.RootCAs, MinVersion: tls.VersionTLS12}
		if code, _, err := get(pp, asPeer); err != nil || code != 200 {
			t.Errorf("%s peer port with a member's peer certificate: %d %v, want 200", h.Name, code, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var plain []string
	for _, ep := range e.Endpoints() {
		plain = append(plain, strings.Replace(ep, "https://", "http://", 1))
	}
	if _, err := bootClient(t, plain, nil).Put(ctx, "/it/plain", "x"); err == nil {
		t.Error("a plain-HTTP etcd client could write")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	if _, err := bootClient(t, e.Endpoints(), noCert).Put(ctx2, "/it/nocert", "x"); err == nil {
		t.Error("an etcd client without a client certificate could write")
	}
}

// bootPIDs is etcd.service's main PID on each host.
func bootPIDs(t *testing.T, e *harness.Env, hosts []string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, h := range hosts {
		var pid int
		fmt.Sscan(e.UnitProps(t, h, "etcd.service", "MainPID")["MainPID"], &pid)
		out[h] = pid
	}
	return out
}

// bootCheckProcesses: etcd runs as user etcd with best-effort IO priority
// 0, as the kernel reports for the live process (not just the unit file).
func bootCheckProcesses(t *testing.T, e *harness.Env, hosts []string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pids := bootPIDs(t, e, hosts)
	for _, h := range hosts {
		p := e.UnitProps(t, h, "etcd.service", "ActiveState", "User", "IOSchedulingClass", "IOSchedulingPriority", "Type")
		if p["ActiveState"] != "active" || p["User"] != "etcd" || p["Type"] != "notify" {
			t.Errorf("%s etcd.service: %v", h, p)
		}
		if c := p["IOSchedulingClass"]; c != "2" && c != "best-effort" {
			t.Errorf("%s etcd.service IOSchedulingClass=%s, want best-effort", h, c)
		}
		if p["IOSchedulingPriority"] != "0" {
			t.Errorf("%s etcd.service IOSchedulingPriority=%s, want 0", h, p["IOSchedulingPriority"])
		}
		pid := pids[h]
		if pid == 0 {
			t.Errorf("%s: etcd.service has no main PID", h)
			continue
		}
		out, err := e.Lab.Run(ctx, h, fmt.Sprintf(
			"ps -o user= -p %d; ionice -p %d; awk '/^Uid:/{print $2}' /proc/%d/status; id -u etcd; readlink /proc/%d/exe", pid, pid, pid, pid))
		if err != nil {
			t.Errorf("inspect etcd on %s: %v", h, err)
			continue
		}
		f := strings.Split(strings.TrimSpace(out), "\n")
		if len(f) != 5 || strings.TrimSpace(f[0]) != "etcd" || f[1] != "best-effort: prio 0" || f[2] != f[3] || f[2] == "0" ||
			f[4] != "/opt/etcd/"+bootVersion+"/etcd" {
			t.Errorf("%s etcd pid %d: user, ionice, uid, etcd uid, exe = %q; want etcd, best-effort: prio 0, the etcd uid, /opt/etcd/%s/etcd", h, pid, f, bootVersion)
		}
	}
	return pids
}

// bootCheckCerts: each member's server and peer certificates, as pushed to
// the host, chain to the controller's CA, carry the member's address and
// name plus localhost and 127.0.0.1, match their keys, and the keys are
// 0600 etcd-owned in a 0700 directory.
func bootCheckCerts(t *testing.T, e *harness.Env, hosts []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	caPEM, err := os.ReadFile(filepath.Join(e.PKIDir(), "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	addrs := map[string]string{}
	for _, h := range e.Lab.Hosts() {
		addrs[h.Name] = h.Addr
	}
	for _, h := range hosts {
		if got := e.HostFile(t, h, "/etc/etcd/pki/ca.crt"); string(got) != string(caPEM) {
			t.Errorf("%s: /etc/etcd/pki/ca.crt is not the controller's CA", h)
		}
		for _, kind := range []string{"server", "peer"} {
			certPath, keyPath := "/etc/etcd/pki/"+kind+".crt", "/etc/etcd/pki/"+kind+".key"
			certPEM := e.HostFile(t, h, certPath)
			c := harness.ParseCertPEM(t, certPEM, h+":"+certPath)
			usage := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			if kind == "peer" {
				usage = append(usage, x509.ExtKeyUsageClientAuth)
			}
			for _, u := range usage {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("%s %s: %v", h, certPath, err)
				}
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			for _, want := range []string{addrs[h], "127.0.0.1"} {
				if !slices.Contains(ips, want) {
					t.Errorf("%s %s: IP SANs %v lack %s", h, certPath, ips, want)
				}
			}
			for _, want := range []string{h, "localhost"} {
				if !slices.Contains(c.DNSNames, want) {
					t.Errorf("%s %s: DNS SANs %v lack %s", h, certPath, c.DNSNames, want)
				}
			}
			if _, err := tls.X509KeyPair(certPEM, e.HostFile(t, h, keyPath)); err != nil {
				t.Errorf("%s: %s does not match %s: %v", h, keyPath, certPath, err)
			}
		}
		out, err := e.Lab.Run(ctx, h, "stat -c '%n %U:%G %a' /etc/etcd/pki /etc/etcd/pki/*.key")
		if err != nil {
			t.Fatalf("stat keys on %s: %v", h, err)
		}
		want := "/etc/etcd/pki etcd:etcd 700\n/etc/etcd/pki/peer.key etcd:etcd 600\n/etc/etcd/pki/server.key etcd:etcd 600\n"
		if out != want {
			t.Errorf("%s key modes:\n%s\nwant:\n%s", h, out, want)
		}
	}
}

// bootCheckCAKeyStaysHome: neither a file named ca.key nor the CA's private
// key (PEM or raw scalar) is anywhere on a host.
func bootCheckCAKeyStaysHome(t *testing.T, e *harness.Env, hosts []string) {
	t.Helper()
	keyPEM, err := os.ReadFile(filepath.Join(e.PKIDir(), "ca.key"))
	if err != nil {
		t.Fatalf("the controller has no CA key: %v", err)
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		t.Fatal("ca.key is not PEM")
	}
	// The raw private scalar too, in case a host kept the key in another encoding.
	var scalar []byte
	var ek *ecdsa.PrivateKey
	if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		ek = k
	} else if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		ek, _ = k.(*ecdsa.PrivateKey)
	}
	if ek != nil {
		scalar, _ = ek.Bytes()
	}
	body := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")[1] // first base64 line
	dirs := []string{"/etc", "/var", "/opt", "/usr/local", "/root", "/tmp", "/home", "/srv"}
	for _, h := range hosts {
		if hits := e.FindOnHost(t, h, dirs, "ca.key", []byte(body), b.Bytes, scalar); len(hits) > 0 {
			t.Errorf("CA key material on %s: %v", h, hits)
		}
	}
}

// bootCheckStatusCerts: `etcdplay status` reports each member's served
// server and peer certificate (the peer one with the shared peer CN), the
// CA and the controller's client certificates, fresh, from the cluster CA,
// with no warning.
func bootCheckStatusCerts(t *testing.T, e *harness.Env, hosts []string) {
	t.Helper()
	r := statusReport(t, e)
	got := map[string]etcdstatus.Certificate{}
	for _, c := range r.Certificates {
		got[c.What] = c
	}
	for _, h := range hosts {
		for kind, cn := range map[string]string{"server": h, "peer": "etcd-peer"} {
			c := got[h+" "+kind]
			if c.Error != "" || c.Subject != cn || !c.ClusterCA || c.DaysLeft < 360 || c.Warning != "" {
				t.Errorf("status: %s %s certificate %+v, want CN %s from the cluster CA, a year left", h, kind, c, cn)
			}
		}
	}
	for _, what := range []string{"CA", "client etcdplay", "client client"} {
		if c := got[what]; c.Error != "" || c.DaysLeft < 360 || c.Warning != "" {
			t.Errorf("status: %s %+v", what, c)
		}
	}
	if len(r.Warnings) != 0 {
		t.Errorf("status warns on a fresh cluster: %v", r.Warnings)
	}
}
