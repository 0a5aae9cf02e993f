package etcd_pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/localhost"
	"github.com/etcdplay/etcdplay/modules"
	_ "github.com/etcdplay/etcdplay/modules/etcd_install"
)

var hosts = []string{"etcd1", "etcd2", "etcd3"}

type lab struct {
	state, root string
	vars        map[string]any            // cluster-wide
	hostvars    map[string]map[string]any // per host
	rotate      bool                      // plan with rotate: true
	caRotation  string                    // plan with ca_rotation: this step
}

func newLab(t *testing.T) *lab {
	l := &lab{state: t.TempDir(), root: t.TempDir(), vars: map[string]any{}, hostvars: map[string]map[string]any{}}
	for i, h := range hosts {
		l.hostvars[h] = map[string]any{"ansible_host": fmt.Sprintf("127.0.1.%d", i+1)}
	}
	return l
}

func (l *lab) env(h string, check bool) (*modules.Env, modules.Args) {
	env, args, _ := l.envWriters(h, check)
	return env, args
}

// envWriters is env and the writers the driver hands Apply.
func (l *lab) envWriters(h string, check bool) (*modules.Env, modules.Args, map[string]modules.HostWriter) {
	hv := map[string]any{}
	vars := map[string]any{}
	remotes := map[string]modules.Host{}
	writers := map[string]modules.HostWriter{}
	for _, o := range hosts {
		m := map[string]any{}
		for k, v := range l.vars {
			m[k] = v
		}
		for k, v := range l.hostvars[o] {
			m[k] = v
		}
		hv[o] = m
		lh := localhost.New(o)
		remotes[o], writers[o] = lh, lh
	}
	for k, v := range hv[h].(map[string]any) {
		vars[k] = v
	}
	vars["groups"] = map[string]any{"etcd": []any{"etcd1", "etcd2", "etcd3"}}
	vars["hostvars"] = hv
	env := &modules.Env{Host: h, Vars: vars, Check: check, StateDir: l.state, Remote: remotes[h], Hosts: remotes}
	args := modules.Args{"pki_dir": l.pki(h), "owner": "", "group": ""}
	if l.rotate {
		args["rotate"] = true
	}
	if l.caRotation != "" {
		args["ca_rotation"] = l.caRotation
	}
	return env, args, writers
}

func (l *lab) pki(h string) string { return filepath.Join(l.root, h, "etc/etcd/pki") }

// runAll runs the module for every host in parallel, as the runner does,
// and returns each host's plan as lines.
func (l *lab) runAll(t *testing.T, check bool) map[string][]string {
	t.Helper()
	var mu sync.Mutex
	out := map[string][]string{}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env, args, writers := l.envWriters(h, check)
			res, err := modules.Run(context.Background(), "etcd_pki", Module{}, env, args, writers)
			if err != nil {
				t.Errorf("%s: %v", h, err)
				return
			}
			c := res.Change
			var lines []string
			for _, a := range c.Actions {
				lines = append(lines, strings.NewReplacer(l.state, "STATE", l.root, "ROOT").Replace(a.String()))
			}
			mu.Lock()
			out[h] = lines
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func TestCheckThenApplyThenNoop(t *testing.T) {
	l := newLab(t)
	plans := l.runAll(t, true)
	if _, err := os.Stat(filepath.Join(l.state, "etcd")); !os.IsNotExist(err) {
		t.Fatal("check mode wrote to the state dir")
	}
	if _, err := os.Stat(filepath.Join(l.root, "etcd1")); !os.IsNotExist(err) {
		t.Fatal("check mode wrote to the host")
	}
	p1 := strings.Join(plans["etcd1"], "\n")
	for _, want := range []string{
		`+ STATE/etcd/pki/ca.crt: new CA "etcd-ca" on the controller`,
		"+ cert etcd1 server: new (SANs 127.0.1.1, etcd1, localhost, 127.0.0.1)",
		"+ cert etcd1 peer: new",
		"+ cert etcdplay client: new",
		"+ cert client client: new",
		"+ ROOT/etcd1/etc/etcd/pki: directory",
		"+ ROOT/etcd1/etc/etcd/pki/server.key",
	} {
		if !strings.Contains(p1, want) {
			t.Errorf("etcd1 plan lacks %q:\n%s", want, p1)
		}
	}
	if p2 := strings.Join(plans["etcd2"], "\n"); strings.Contains(p2, "ca.crt: new CA") || strings.Contains(p2, "etcdplay client") || !strings.Contains(p2, "+ cert etcd2 server") {
		t.Errorf("etcd2 should plan its own certs only:\n%s", p2)
	}

	l.runAll(t, false)
	ca := readCert(t, filepath.Join(l.state, "etcd/pki/ca.crt"))
	assertMode(t, filepath.Join(l.state, "etcd/pki/ca.key"), 0o600)
	for i, h := range hosts {
		dir := l.pki(h)
		if _, err := os.Stat(filepath.Join(dir, "ca.key")); !os.IsNotExist(err) {
			t.Errorf("%s: the CA key reached the host", h)
		}
		assertMode(t, dir, 0o700)
		assertMode(t, filepath.Join(dir, "server.key"), 0o600)
		assertMode(t, filepath.Join(dir, "peer.key"), 0o600)
		assertMode(t, filepath.Join(l.state, "etcd/pki/server-"+h+".key"), 0o600)
		if hostCA := readCert(t, filepath.Join(dir, "ca.crt")); !hostCA.Equal(ca) {
			t.Errorf("%s got a different CA: hosts planned in parallel must share one", h)
		}
		for _, name := range []string{"server.crt", "peer.crt"} {
			c := readCert(t, filepath.Join(dir, name))
			if err := c.CheckSignatureFrom(ca); err != nil {
				t.Errorf("%s %s: %v", h, name, err)
			}
			got := sans(c)
			want := []string{fmt.Sprintf("127.0.1.%d", i+1), "127.0.0.1", h, "localhost"}
			sort.Strings(want)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s %s SANs = %v, want %v", h, name, got, want)
			}
			if !hasUsage(c, x509.ExtKeyUsageServerAuth) || !hasUsage(c, x509.ExtKeyUsageClientAuth) {
				t.Errorf("%s %s usages %v", h, name, c.ExtKeyUsage)
			}
		}
	}
	cl := readCert(t, filepath.Join(l.state, "etcd/pki/client-etcdplay.crt"))
	if cl.Subject.CommonName != "etcdplay" || !hasUsage(cl, x509.ExtKeyUsageClientAuth) || hasUsage(cl, x509.ExtKeyUsageServerAuth) {
		t.Errorf("etcdplay client cert: CN %s usages %v", cl.Subject.CommonName, cl.ExtKeyUsage)
	}

	for h, p := range l.runAll(t, false) {
		if len(p) > 0 {
			t.Errorf("%s: second run not a no-op: %v", h, p)
		}
	}
}

// rotate re-issues every member's server and peer certificate and the
// shared client certificates, reported once (by the first member) however
// many members plan at once. (Apply checks what the running member serves,
// which needs systemd: the lab test covers it.)
func TestRotatePlansEveryLeafOnce(t *testing.T) {
	l := newLab(t)
	l.runAll(t, false)
	l.rotate = true
	plans := l.runAll(t, true)
	for _, h := range hosts {
		p := strings.Join(plans[h], "\n")
		for _, want := range []string{"~ cert " + h + " server: re-issue: rotation asked for", "~ cert " + h + " peer: re-issue: rotation asked for"} {
			if !strings.Contains(p, want) {
				t.Errorf("%s plan lacks %q:\n%s", h, want, p)
			}
		}
		clients := strings.Count(p, "client: re-issue: rotation asked for")
		if (h == "etcd1" && clients != 2) || (h != "etcd1" && clients != 0) {
			t.Errorf("%s plans %d client rotations, want them on the first member only:\n%s", h, clients, p)
		}
		if strings.Contains(p, "ca.crt: new CA") {
			t.Errorf("%s: a rotation of leaves must not touch the CA:\n%s", h, p)
		}
	}
}

func TestReissueOnlyWhatChanged(t *testing.T) {
	l := newLab(t)
	l.runAll(t, false)
	before := readCert(t, filepath.Join(l.pki("etcd1"), "server.crt"))

	l.hostvars["etcd2"]["etcd_extra_sans"] = []any{"etcd2.example.com"}
	plans := l.runAll(t, false)
	if len(plans["etcd1"]) != 0 || len(plans["etcd3"]) != 0 {
		t.Errorf("other members changed: %v", plans)
	}
	if p := strings.Join(plans["etcd2"], "\n"); !strings.Contains(p, "~ cert etcd2 server: re-issue: SANs changed: +etcd2.example.com") ||
		!strings.Contains(p, "~ ROOT/etcd2/etc/etcd/pki/server.crt: content") {
		t.Errorf("etcd2 plan:\n%s", p)
	}
	if c := readCert(t, filepath.Join(l.pki("etcd2"), "peer.crt")); !contains(sans(c), "etcd2.example.com") {
		t.Error("etcd2 peer cert lacks the new SAN")
	}
	if after := readCert(t, filepath.Join(l.pki("etcd1"), "server.crt")); !after.Equal(before) {
		t.Error("etcd1 re-issued without reason")
	}

	// Near expiry: everything is renewed (the CA stays).
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return time.Now().Add(340 * 24 * time.Hour) }
	plans = l.runAll(t, true)
	if p := strings.Join(plans["etcd1"], "\n"); !strings.Contains(p, "~ cert etcd1 server: re-issue: expires") || strings.Contains(p, "new CA") {
		t.Errorf("expiry plan:\n%s", p)
	}
}

func TestSuppliedCA(t *testing.T) {
	l := newLab(t)
	ca, err := NewCA("corp-root", 24*time.Hour*3650)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	must(t, os.WriteFile(crt, ca.Cert, 0o644))
	must(t, os.WriteFile(key, ca.Key, 0o600))
	l.vars["etcd_ca_cert"], l.vars["etcd_ca_key"] = crt, key
	plans := l.runAll(t, false)
	if p := strings.Join(plans["etcd3"], "\n"); strings.Contains(p, "new CA") {
		t.Errorf("a supplied CA must not be replaced by a new one:\n%s", p)
	}
	hostCA := readCert(t, filepath.Join(l.pki("etcd3"), "ca.crt"))
	if hostCA.Subject.CommonName != "corp-root" {
		t.Errorf("host CA is %s", hostCA.Subject.CommonName)
	}
	if err := readCert(t, filepath.Join(l.pki("etcd3"), "server.crt")).CheckSignatureFrom(hostCA); err != nil {
		t.Error(err)
	}
	if plans := l.runAll(t, false); len(plans["etcd1"]) != 0 {
		t.Errorf("second run with the supplied CA: %v", plans["etcd1"])
	}

	// A key that does not match its certificate is refused.
	other, _ := NewCA("other", time.Hour*24)
	must(t, os.WriteFile(key, other.Key, 0o600))
	env, args := l.env("etcd1", true)
	if _, err := (Module{}).Plan(context.Background(), env, args); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("mismatched CA key: %v", err)
	}
}

// TestNeverReplacesTrustedCA: a controller without the cluster's state
// (another operator's checkout, a renamed cluster) or with another CA in
// etcd_ca_cert refuses on every host before writing anything, and the
// error says how to recover.
func TestNeverReplacesTrustedCA(t *testing.T) {
	other, err := NewCA("other-root", 24*time.Hour*3650)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, l *lab)
		want  string
	}{
		{"state dir lost", func(t *testing.T, l *lab) { l.state = t.TempDir() }, "the controller has no CA for this cluster"},
		{"cluster renamed", func(t *testing.T, l *lab) { l.vars["etcd_cluster_name"] = "prod" }, "the controller has no CA for this cluster"},
		{"another CA supplied", func(t *testing.T, l *lab) {
			dir := t.TempDir()
			crt, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
			must(t, os.WriteFile(crt, other.Cert, 0o644))
			must(t, os.WriteFile(key, other.Key, 0o600))
			l.vars["etcd_ca_cert"], l.vars["etcd_ca_key"] = crt, key
		}, `which is not the controller's CA (CN "other-root"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.runAll(t, false)
			before := map[string][]byte{}
			for _, h := range hosts {
				for _, f := range []string{"ca.crt", "server.crt", "server.key", "peer.crt", "peer.key"} {
					p := filepath.Join(l.pki(h), f)
					b, err := os.ReadFile(p)
					must(t, err)
					before[p] = b
				}
			}
			tc.setup(t, l)
			stateBefore := listTree(t, l.state)
			for _, check := range []bool{true, false} {
				for _, h := range hosts {
					env, args := l.env(h, check)
					_, err := (Module{}).Plan(context.Background(), env, args)
					var te *TrustError
					if !errors.As(err, &te) || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("%s (check=%v): got %v, want a TrustError saying %q", h, check, err, tc.want)
					}
					for _, remedy := range []string{"--state-dir", "etcd_ca_cert=PATH", "nothing was changed"} {
						if !strings.Contains(err.Error(), remedy) {
							t.Errorf("error does not name the remedy %q: %v", remedy, err)
						}
					}
				}
			}
			for p, b := range before {
				if got, _ := os.ReadFile(p); !bytes.Equal(got, b) {
					t.Errorf("%s changed", p)
				}
			}
			if got := listTree(t, l.state); strings.Join(got, " ") != strings.Join(stateBefore, " ") {
				t.Errorf("refused run wrote state: %v, had %v", got, stateBefore)
			}
		})
	}
}

func TestKeysAreSecretInDiffs(t *testing.T) {
	l := newLab(t)
	env, args := l.env("etcd1", true)
	c, err := (Module{}).Plan(context.Background(), env, args)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range c.Diffs {
		isKey := strings.HasSuffix(d.Path, ".key")
		if isKey != d.Secret || strings.Contains(d.After, "PRIVATE KEY") {
			t.Errorf("%s: secret=%v after=%.40q", d.Path, d.Secret, d.After)
		}
	}
}

func readCert(t *testing.T, p string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", p)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sans(c *x509.Certificate) []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	sort.Strings(out)
	return out
}

func hasUsage(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, e := range c.ExtKeyUsage {
		if e == u {
			return true
		}
	}
	return false
}

func contains(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

func assertMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s mode %o, want %o", p, fi.Mode().Perm(), want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestResolveRefusesBadModel(t *testing.T) {
	l := newLab(t)
	l.vars["etcd_version"] = "v3.6"
	env, args := l.env("etcd1", true)
	if _, err := (Module{}).Resolve(args, &modules.ResolveContext{Host: "etcd1", Vars: env.Vars}); err == nil || !strings.Contains(err.Error(), "etcd_version") {
		t.Errorf("got %v", err)
	}
	delete(l.vars, "etcd_version")
	env, args = l.env("etcd1", true)
	if _, err := (Module{}).Resolve(args, &modules.ResolveContext{Host: "web1", Vars: env.Vars}); err == nil || !strings.Contains(err.Error(), "in neither inventory group") {
		t.Errorf("got %v", err)
	}
}

// listTree lists the files under dir, relative and sorted.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return err
	})
	must(t, err)
	sort.Strings(out)
	return out
}

// A leaf never outlives its CA, is not re-issued for an expiry it cannot
// escape, and an expired CA issues nothing.
func TestLeavesEndWithTheirCA(t *testing.T) {
	ca, err := NewCA("short-ca", 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.Issue(Server, "etcd1", []string{"etcd1"}, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(mustPEM(t, p.Cert))
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotAfter.Equal(ca.cert.NotAfter) {
		t.Errorf("leaf ends %s, its CA %s: a leaf must not outlive the CA", c.NotAfter, ca.cert.NotAfter)
	}
	if r := Reason(p, ca, "etcd1", []string{"etcd1"}, time.Now(), 30*24*time.Hour); r != "" {
		t.Errorf("a leaf that ends with its CA is re-issued (%q) on every run", r)
	}
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return time.Now().Add(11 * 24 * time.Hour) }
	if _, err := ca.Issue(Server, "etcd1", nil, time.Hour); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired CA issued a certificate: %v", err)
	}
}

func mustPEM(t *testing.T, b []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	return blk.Bytes
}

// The three steps of a CA rotation on the state dir and the hosts' files:
// trust (both CAs on hosts, leaves kept), reissue (leaves from the new CA),
// finish (the new CA is the CA, the old kept, hosts trust the new alone);
// a promotion killed half way is finished by the next load; finish refuses
// while a leaf is still from the old CA.
func TestCARotationSteps(t *testing.T) {
	l := newLab(t)
	l.runAll(t, false)
	pkiDir := filepath.Join(l.state, "etcd", "pki")
	oldCA, _ := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	oldServer := readCert(t, filepath.Join(l.pki("etcd1"), "server.crt"))

	// finish before reissue is refused once a next CA exists.
	l.caRotation = "trust"
	if p := strings.Join(l.runAll(t, true)["etcd1"], "\n"); !strings.Contains(p, "ca-next.crt: new CA") || strings.Contains(p, "cert etcd1 server") {
		t.Errorf("trust plan of etcd1:\n%s", p)
	}
	l.runAll(t, false)
	next, err := os.ReadFile(filepath.Join(pkiDir, "ca-next.crt"))
	must(t, err)
	for _, h := range hosts {
		got, _ := os.ReadFile(filepath.Join(l.pki(h), "ca.crt"))
		if !bytes.Contains(got, bytes.TrimSpace(oldCA)) || !bytes.Contains(got, bytes.TrimSpace(next)) {
			t.Errorf("%s trusts %s, want both CAs", h, got)
		}
	}
	if readCert(t, filepath.Join(l.pki("etcd1"), "server.crt")).SerialNumber.Cmp(oldServer.SerialNumber) != 0 {
		t.Error("trust re-issued a leaf")
	}
	if again := l.runAll(t, false); len(again["etcd1"]) != 0 {
		t.Errorf("trust again planned %v", again["etcd1"])
	}

	l.caRotation = "finish"
	env, args, writers := l.envWriters("etcd2", false)
	if _, err := modules.Run(context.Background(), "etcd_pki", Module{}, env, args, writers); err == nil || !strings.Contains(err.Error(), "not from the new CA yet") {
		t.Errorf("finish before reissue: %v", err)
	}

	l.caRotation = "reissue"
	l.runAll(t, false)
	nextCA := readCert(t, filepath.Join(pkiDir, "ca-next.crt"))
	for _, f := range []string{filepath.Join(l.pki("etcd3"), "peer.crt"), filepath.Join(pkiDir, "client-etcdplay.crt")} {
		if c := readCert(t, f); c.CheckSignatureFrom(nextCA) != nil {
			t.Errorf("%s is not from the new CA after reissue", f)
		}
	}

	// A promotion killed after the new key took ca.key's name.
	must(t, os.WriteFile(filepath.Join(pkiDir, "ca.key"), mustRead(t, filepath.Join(pkiDir, "ca-next.key")), 0o600))
	l.caRotation = "finish"
	l.runAll(t, false)
	cur, _ := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if !bytes.Equal(cur, next) {
		t.Error("the state dir's CA is not the new one after finish")
	}
	if _, err := os.Stat(filepath.Join(pkiDir, "ca-next.crt")); err == nil {
		t.Error("ca-next.crt left after finish")
	}
	for _, h := range hosts {
		if got, _ := os.ReadFile(filepath.Join(l.pki(h), "ca.crt")); !bytes.Equal(got, next) {
			t.Errorf("%s trusts %s after finish, want the new CA alone", h, got)
		}
	}
	if again := l.runAll(t, false); len(again["etcd1"])+len(again["etcd2"]) != 0 {
		t.Errorf("finish again planned %v", again)
	}
	l.caRotation = ""
	if again := l.runAll(t, false); len(again["etcd1"]) != 0 {
		t.Errorf("a plain run after the rotation planned %v", again["etcd1"])
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

// A rotation killed after its last step promoted the new CA on the
// controller but before every host dropped the old one: the rerun from
// the start finishes that rotation (no third CA, one retired), and only
// the playbook's done task lets the next run start another.
func TestCARotationKilledAfterPromotion(t *testing.T) {
	l := newLab(t)
	l.runAll(t, false)
	pkiDir := filepath.Join(l.state, "etcd", "pki")
	oldCA := mustRead(t, filepath.Join(pkiDir, "ca.crt"))
	for _, step := range []string{"trust", "reissue"} {
		l.caRotation = step
		l.runAll(t, false)
	}
	next := mustRead(t, filepath.Join(pkiDir, "ca-next.crt"))

	// finish reaches etcd1 only: the controller promotes, etcd2 and etcd3
	// still trust both CAs.
	l.caRotation = "finish"
	env, args, writers := l.envWriters("etcd1", false)
	if _, err := modules.Run(context.Background(), "etcd_pki", Module{}, env, args, writers); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, filepath.Join(l.pki("etcd2"), "ca.crt")); !bytes.Contains(got, bytes.TrimSpace(oldCA)) {
		t.Fatalf("etcd2 already dropped the old CA")
	}

	l.caRotation = "trust"
	plan := l.runAll(t, true)
	if p := strings.Join(plan["etcd1"], "\n"); !strings.Contains(p, "is finished: hosts trust it alone") || strings.Contains(p, "ca-next.crt") {
		t.Errorf("trust after a promotion, etcd1 plans:\n%s", p)
	}
	for _, step := range []string{"trust", "reissue", "finish"} {
		l.caRotation = step
		l.runAll(t, false)
		if _, err := os.Stat(filepath.Join(pkiDir, "ca-next.crt")); err == nil {
			t.Fatalf("step %s after a promotion made another new CA", step)
		}
		for _, h := range hosts {
			if got := mustRead(t, filepath.Join(l.pki(h), "ca.crt")); !bytes.Equal(got, next) {
				t.Errorf("%s trusts %s after step %s, want the promoted CA alone", h, got, step)
			}
		}
	}
	if cur := mustRead(t, filepath.Join(pkiDir, "ca.crt")); !bytes.Equal(cur, next) {
		t.Error("the state dir's CA is not the promoted one")
	}
	if retired, _ := filepath.Glob(filepath.Join(pkiDir, "ca-retired-*.crt")); len(retired) != 1 || !bytes.Equal(mustRead(t, retired[0]), oldCA) {
		t.Errorf("retired CAs %v, want the old one alone", retired)
	}

	l.caRotation = "done"
	// Whichever host's plan comes first drops it (run_once in the playbook).
	if p := l.runAll(t, false); !strings.Contains(fmt.Sprint(p), "ca-rotation-finishing: the rotation is finished") {
		t.Errorf("done planned %v", p)
	}
	if _, err := os.Stat(filepath.Join(pkiDir, "ca-rotation-finishing")); err == nil {
		t.Error("done left the finishing mark")
	}
	if p := l.runAll(t, false); len(p["etcd1"]) != 0 {
		t.Errorf("done again planned %v", p["etcd1"])
	}
	l.caRotation = "trust"
	if p := strings.Join(l.runAll(t, true)["etcd1"], "\n"); !strings.Contains(p, "ca-next.crt: new CA") {
		t.Errorf("trust after done, etcd1 plans:\n%s", p)
	}
}
