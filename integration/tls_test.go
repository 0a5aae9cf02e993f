// enable-tls.yml on real lab hosts (issue 12 item 1): a plain-HTTP cluster
// moved to TLS while a client writes, the controller killed in each phase,
// checked with etcd's own client. Lab block 69.
package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/internal/runner"
)

// TestEnableTLS: 3 members bootstrapped with etcd_tls false and 10,000
// keys. enable-tls.yml --check changes nothing; then enable-tls.yml is
// killed (SIGKILL) once in each of its three phases and run again until it
// finishes, while a client writes every 20 ms (over https once the
// controller's client certificate exists and a member serves it, else over
// http). At the end: every member's URLs are https in the member list,
// plain HTTP is refused, every key and every acknowledged write is there,
// the longest write gap is below the 1 s election timeout, and site.yml
// with etcd_tls true changes nothing.
func TestEnableTLS(t *testing.T) {
	m, members, proxy := newProxyLab(t, "it-tls", 69)
	e := m.Env
	e.Vars["etcd_tls"] = "false"
	e.MustApply(t, harness.Playbook("site.yml"))
	plainEPs, tlsEPs := endpoints("http", members), endpoints("https", members)
	plain, err := clientv3.New(clientv3.Config{Endpoints: plainEPs, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	putKeys(t, plain, 10000, "plain", 64)
	delete(e.Vars, "etcd_tls") // the playbook sets it; the inventory says nothing

	// site.yml with etcd_tls true would cut every member off from its
	// peers one restart at a time: refused, with the runbook to use.
	snap := e.CheckSnapshot(t)
	e.Vars["etcd_tls"] = "true"
	if o := e.Apply(t, harness.Playbook("site.yml")); o.Code == 0 || !strings.Contains(o.Stdout+o.Stderr, "enable-tls.yml") {
		t.Errorf("site.yml with etcd_tls true on a plain-HTTP cluster: exit %d, want a refusal naming enable-tls.yml:\n%s", o.Code, o.Summary())
	}
	delete(e.Vars, "etcd_tls")
	e.Unchanged(t, snap, "the refused site.yml")
	check := e.Etcdplay(t, "apply", harness.Playbook("enable-tls.yml"), "--check")
	if check.Code != 0 || !strings.Contains(check.Stdout, "off -> both") || !strings.Contains(check.Stdout, "peer -> on") {
		t.Errorf("enable-tls --check: exit %d, want the three phases planned:\n%s%s", check.Code, check.Stdout, check.Stderr)
	}
	e.Unchanged(t, snap, "enable-tls --check")

	w := startDualWriter(e, plain, tlsEPs)
	// An application on the client host, through its local grpc-proxy
	// (plain on loopback, as before): the proxy moves to TLS between the
	// peer switch and the end of plain HTTP, with one restart.
	viaProxy := harness.StartWriteLoop(m.proxyClient(proxy.Addr, false), "via-proxy-during-tls", 20*time.Millisecond, 400*time.Millisecond)
	for _, marker := range []string{"TLS off -> both of", "TLS both -> peer of", "TLS peer -> on of"} {
		o := e.SignalWhen(t, harness.Playbook("enable-tls.yml"), marker, 700*time.Millisecond, os.Kill)
		var done []string
		for _, ev := range o.Events {
			if ev.Type == runner.EventLog && strings.Contains(ev.Msg, " of ") && strings.HasPrefix(ev.Msg, "TLS ") {
				done = append(done, ev.Msg)
			}
		}
		t.Logf("killed after %q: exit %d; its roll got to: %v", marker, o.Code, done)
	}
	for i := 0; ; i++ {
		o := e.Apply(t, harness.Playbook("enable-tls.yml"))
		if o.Code == 0 {
			var msgs []string
			for _, ev := range o.Events {
				if ev.Type == runner.EventNodeDone && ev.Module == "etcd_enable_tls" && ev.Msg != "" {
					msgs = append(msgs, ev.Msg)
				}
			}
			t.Logf("enable-tls finished on run %d (%.1fs): %v", i+4, o.Elapsed.Seconds(), msgs)
			break
		}
		if i == 1 {
			t.Fatalf("enable-tls did not finish after the kills:\n%s", o.Summary())
		}
	}
	st := w.stop()
	t.Logf("writes during enable-tls: %s", st)
	if st.ok == 0 || st.maxGap >= time.Second {
		t.Errorf("writes during enable-tls: %s (want the longest gap below the 1s election timeout)", st)
	}
	// The proxy's own restart (it reads its flags and CA at start) is
	// what its local clients see: about a second.
	if pst := viaProxy.Stop(); pst.OK == 0 || pst.MaxGap >= 3*time.Second {
		journal, _ := e.Lab.Run(context.Background(), proxy.Name, "journalctl -u etcd-proxy --no-pager -o short-precise | tail -40")
		t.Errorf("writes through the grpc-proxy during enable-tls: %s; first errors: %v\nthe proxy's journal:\n%s", pst, pst.Errors, journal)
	} else {
		t.Logf("writes through the grpc-proxy during enable-tls: %s", pst)
	}
	if got := m.proxyEndpoints(proxy.Name); len(got) != 3 {
		t.Errorf("the proxy forwards to %v, want the 3 members", got)
	}
	if out, err := e.Lab.Run(context.Background(), proxy.Name, "systemctl show -p ExecStart etcd-proxy.service"); err != nil || !strings.Contains(out, "--cacert") {
		t.Errorf("the proxy does not talk TLS to the members: %v\n%s", err, out)
	}

	cli := e.Client(t, tlsEPs...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Members {
		urls := strings.Join(append(m.PeerURLs, m.ClientURLs...), " ")
		if strings.Contains(urls, "http://") {
			t.Errorf("member %s still lists plain HTTP: %s", m.Name, urls)
		}
	}
	for _, ep := range plainEPs {
		hc := http.Client{Timeout: 3 * time.Second}
		if resp, err := hc.Get(ep + "/health"); err == nil {
			if resp.StatusCode == http.StatusOK {
				t.Errorf("GET %s/health over plain HTTP answered 200", ep)
			}
			resp.Body.Close()
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	if _, err := plain.Put(pctx, "over-plain-http", "no"); err == nil {
		t.Errorf("a plain-HTTP client could still write")
	}
	pcancel()
	checkKeys(t, cli, 10000, "plain", 64)
	var missing []string
	for _, k := range w.acked() {
		if r, err := cli.Get(ctx, k); err != nil || len(r.Kvs) != 1 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged writes lost, e.g. %v", len(missing), missing[:min(5, len(missing))])
	}

	e.Vars["etcd_tls"] = "true"
	if o := e.MustApply(t, harness.Playbook("site.yml")); o.Changed() != 0 {
		t.Errorf("site.yml with etcd_tls true after enable-tls changed %d:\n%s", o.Changed(), o.Stdout)
	}
}

// dualWriter writes a key every 20 ms, over https when it can (once the
// controller's client certificate exists) and over plain http otherwise,
// recording every acknowledged key and the longest time without one.
type dualWriter struct {
	stopc chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	keys     []string
	last     time.Time
	gap      time.Duration
	failures int
}

type dualStats struct {
	ok, failed int
	maxGap     time.Duration
}

func (s dualStats) String() string {
	return fmt.Sprintf("%d writes acknowledged, %d failed, longest gap %s", s.ok, s.failed, s.maxGap.Round(time.Millisecond))
}

func startDualWriter(e *harness.Env, plain *clientv3.Client, tlsEndpoints []string) *dualWriter {
	w := &dualWriter{stopc: make(chan struct{}), done: make(chan struct{}), last: time.Now()}
	var secure *clientv3.Client
	go func() {
		defer close(w.done)
		defer func() {
			if secure != nil {
				secure.Close()
			}
		}()
		for n := 0; ; n++ {
			select {
			case <-w.stopc:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if secure == nil {
				if cfg := clientTLSIfIssued(e); cfg != nil {
					secure, _ = clientv3.New(clientv3.Config{Endpoints: tlsEndpoints, TLS: cfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
				}
			}
			key := fmt.Sprintf("during-tls/%06d", n)
			ok := false
			for _, c := range []*clientv3.Client{secure, plain} {
				if c == nil {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				_, err := c.Put(ctx, key, "v")
				cancel()
				if err == nil {
					ok = true
					break
				}
			}
			now := time.Now()
			w.mu.Lock()
			if ok {
				w.keys = append(w.keys, key)
				w.gap = max(w.gap, now.Sub(w.last))
				w.last = now
			} else {
				w.failures++
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// clientTLSIfIssued is the controller's client certificate and CA, or nil
// while etcd_pki has not written them yet (never failing the test: it runs
// in the writer's goroutine).
func clientTLSIfIssued(e *harness.Env) *tls.Config {
	dir := e.PKIDir()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client-etcdplay.crt"), filepath.Join(dir, "client-etcdplay.key"))
	if err != nil {
		return nil
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func (w *dualWriter) stop() dualStats {
	close(w.stopc)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gap = max(w.gap, time.Since(w.last))
	return dualStats{ok: len(w.keys), failed: w.failures, maxGap: w.gap}
}

func (w *dualWriter) acked() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.keys...)
}
