// rotate-ca.yml on real lab hosts (issue 12 item 3): the cluster's CA
// replaced while a client writes, the controller killed in the first two
// steps, checked with etcd's own client and the certificates the members
// serve. Lab block 71.
package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// TestRotateCA: a 3-member TLS cluster with 1,000 keys. rotate-ca.yml
// --check changes nothing; then it is killed during the first step's
// restarts and during the second step's re-issues, and run again to the
// end, while a client that follows the rotation (it trusts what the state
// dir's CA files hold and presents the controller's current client
// certificate at each handshake) writes every 20 ms. At the end the state
// dir's CA is new and the old one is kept, every member trusts the new CA
// alone and serves server and peer certificates from it, a client with a
// certificate from the old CA is refused, no key or acknowledged write is
// lost, and site.yml changes nothing.
func TestRotateCA(t *testing.T) {
	e := labEnv(t, "it-rotate-ca", 71, bootVersion)
	e.MustApply(t, harness.Playbook("site.yml"))
	putKeys(t, e.Client(t), 1000, "before-ca", 64)
	pki := e.PKIDir()
	oldCA, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	oldClient := e.Client(t) // its TLS config holds the old CA and client certificate
	rb := harness.Playbook("rotate-ca.yml")

	snap := e.CheckSnapshot(t)
	if o := e.Apply(t, rb, "--check"); o.Code != 0 || !strings.Contains(o.Stdout, "new CA") {
		t.Errorf("rotate-ca --check: exit %d, want the new CA planned:\n%s", o.Code, o.Summary())
	}
	if changed := harness.Diff(snap, e.CheckSnapshot(t)); len(changed) != 0 {
		t.Errorf("rotate-ca --check changed hosts: %v", changed)
	}
	if _, err := os.Stat(filepath.Join(pki, "ca-next.crt")); err == nil {
		t.Errorf("rotate-ca --check wrote the new CA")
	}

	follower := clientv3.Config{Endpoints: e.Endpoints(), TLS: followingTLS(pki), DialTimeout: 2 * time.Second, Logger: zap.NewNop()}
	cli, err := clientv3.New(follower)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	wl := harness.StartWriteLoop(cli, "during-ca-rotation", 20*time.Millisecond, 400*time.Millisecond)
	mon := watchMembers(cli, e.Endpoints())
	for _, marker := range []string{"restart of", "serves its new server certificate"} {
		o := e.SignalWhen(t, rb, marker, 300*time.Millisecond, os.Kill)
		t.Logf("killed after %q: exit %d", marker, o.Code)
	}
	o := e.MustApply(t, rb)
	st := wl.Stop()
	down := mon.stop()
	t.Logf("longest time each member did not answer during the rotation: %v", down)
	for ep, d := range down {
		if d > 5*time.Second {
			t.Errorf("%s did not answer for %s during the rotation: longer than a restart", ep, d)
		}
	}
	t.Logf("rotate-ca finished in %.1fs; writes during the rotation: %s", o.Elapsed.Seconds(), st)
	if st.OK == 0 || st.MaxGap >= time.Second {
		t.Errorf("writes during the CA rotation: %s (want the longest gap below the 1s election timeout); first errors: %v", st, st.Errors)
	}

	newCA, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(newCA, oldCA) {
		t.Fatal("the state dir's CA is still the old one")
	}
	retired, _ := filepath.Glob(filepath.Join(pki, "ca-retired-*.crt"))
	if len(retired) != 1 {
		t.Errorf("retired CAs kept: %v, want the old one", retired)
	} else if kept, _ := os.ReadFile(retired[0]); !bytes.Equal(kept, oldCA) {
		t.Errorf("%s is not the old CA", retired[0])
	}
	if _, err := os.Stat(filepath.Join(pki, "ca-next.crt")); err == nil {
		t.Errorf("ca-next.crt left in the state dir after the rotation")
	}
	only := x509.NewCertPool()
	only.AppendCertsFromPEM(newCA)
	for _, h := range e.Lab.Hosts() {
		if got := e.HostFile(t, h.Name, "/etc/etcd/pki/ca.crt"); !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(newCA)) {
			t.Errorf("%s trusts:\n%s\nwant the new CA alone", h.Name, got)
		}
		for _, url := range []string{"https://" + h.Addr + ":2379", "https://" + h.Addr + ":2380"} {
			peer, err := tls.LoadX509KeyPair(filepath.Join(pki, "peer-"+h.Name+".crt"), filepath.Join(pki, "peer-"+h.Name+".key"))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			cert, err := etcd.ServedCertificate(ctx, nil, url, peer)
			cancel()
			if err != nil {
				t.Errorf("%s: %v", url, err)
				continue
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: only, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Errorf("%s serves a certificate the new CA did not sign: %v", url, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := oldClient.Put(ctx, "with-the-old-ca", "no"); err == nil {
		t.Errorf("a client with the old CA's certificate could still write")
	}
	cancel()
	now := e.Client(t)
	checkKeys(t, now, 1000, "before-ca", 64)
	waitHealthy(t, e)
	if again := e.MustApply(t, harness.Playbook("site.yml")); again.Changed() != 0 {
		t.Errorf("site.yml after the CA rotation changed %d:\n%s", again.Changed(), again.Stdout)
	}
}

// followingTLS is a client TLS config that follows a CA rotation as an
// application handed the new files would: at each handshake it trusts the
// CAs the state dir holds (ca.crt, and ca-next.crt during a rotation) and
// presents the controller's current client certificate.
func followingTLS(pki string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below, against the files as they are now
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			pool := x509.NewCertPool()
			for _, f := range []string{"ca.crt", "ca-next.crt"} {
				if b, err := os.ReadFile(filepath.Join(pki, f)); err == nil {
					pool.AppendCertsFromPEM(b)
				}
			}
			if len(raw) == 0 {
				return errors.New("no certificate served")
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: pool})
			return err
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(filepath.Join(pki, "client-etcdplay.crt"), filepath.Join(pki, "client-etcdplay.key"))
			return &c, err
		},
	}
}

// memberWatch polls each member's status through a client that follows
// the rotation and records, per endpoint, the longest stretch it did not
// answer: a restart is a short one; a member cut off from its peers or
// refusing the client's certificates is a long one.
type memberWatch struct {
	stopc chan struct{}
	done  chan map[string]time.Duration
}

func watchMembers(cli *clientv3.Client, endpoints []string) *memberWatch {
	w := &memberWatch{stopc: make(chan struct{}), done: make(chan map[string]time.Duration, 1)}
	go func() {
		longest := map[string]time.Duration{}
		since := map[string]time.Time{}
		for {
			now := time.Now()
			for _, ep := range endpoints {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				st, err := cli.Status(ctx, ep)
				cancel()
				if err == nil && st.Leader != 0 {
					delete(since, ep)
					continue
				}
				if _, ok := since[ep]; !ok {
					since[ep] = now
				}
				longest[ep] = max(longest[ep], time.Since(since[ep]))
			}
			select {
			case <-w.stopc:
				w.done <- longest
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *memberWatch) stop() map[string]time.Duration {
	close(w.stopc)
	return <-w.done
}
