package etcdstatus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/cloudflare/cfssl/helpers"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// Certificate is one certificate the cluster depends on and when it ends:
// each member's server and peer certificates as the member serves them
// (what etcd really uses, not what the controller thinks it pushed), the
// CA and the controller's client certificates from the state dir.
type Certificate struct {
	// What names it: "etcd1 server", "etcd1 peer", "CA", "client etcdplay".
	What     string    `json:"what"`
	Member   string    `json:"member,omitempty"`
	Kind     string    `json:"kind"` // server, peer, ca, client
	Source   string    `json:"source"`
	Subject  string    `json:"subject,omitempty"`
	Serial   string    `json:"serial,omitempty"` // hex
	NotAfter time.Time `json:"not_after,omitzero"`
	DaysLeft int       `json:"days_left"`
	// ClusterCA is false when a served certificate is not signed by the
	// CA in the state dir.
	ClusterCA bool   `json:"cluster_ca"`
	Error     string `json:"error,omitempty"`
	Warning   string `json:"warning,omitempty"`
}

// certificates looks at every selected member's served certificates (in
// parallel) and at the state dir's CA and client certificates.
func certificates(ctx context.Context, c *etcd.Cluster, stateDir string, dial etcdclient.DialFunc, members []etcd.Member, timeout time.Duration) []Certificate {
	pki := c.PKI(stateDir)
	pool := x509.NewCertPool()
	var out []Certificate
	if ca, err := readCert(pki.CACert()); err != nil {
		out = append(out, Certificate{What: "CA", Kind: "ca", Source: pki.CACert(), Error: err.Error()})
	} else {
		pool.AddCert(ca)
		out = append(out, fromX509(Certificate{What: "CA", Kind: "ca", Source: pki.CACert(), ClusterCA: true}, ca))
	}
	for _, cn := range append([]string{etcd.EtcdplayClientCN}, c.ClientCertNames...) {
		crt, _ := pki.Client(cn)
		it := Certificate{What: "client " + cn, Kind: "client", Source: crt}
		if cert, err := readCert(crt); err != nil {
			it.Error = err.Error()
		} else {
			it = fromX509(it, cert)
			it.ClusterCA = signedBy(cert, pool)
		}
		out = append(out, it)
	}
	if !c.TLS {
		return out
	}
	client, _ := tls.LoadX509KeyPair(pki.Client(etcd.EtcdplayClientCN))
	served := make([]Certificate, 2*len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		// The peer port takes member certificates only: present the
		// member's own, so the look leaves no "rejected connection" in
		// etcd's log.
		peer, err := tls.LoadX509KeyPair(pki.Peer(m.Name))
		if err != nil {
			peer = client
		}
		for j, p := range []struct {
			kind, rawURL string
			as           tls.Certificate
		}{{"server", m.ClientURL, client}, {"peer", m.PeerURL, peer}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				it := Certificate{What: m.Name + " " + p.kind, Member: m.Name, Kind: p.kind, Source: "served at " + p.rawURL}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				cert, err := etcdclient.ServedCertificate(cctx, dial, p.rawURL, p.as)
				if err != nil {
					it.Error = err.Error()
				} else {
					it = fromX509(it, cert)
					it.ClusterCA = signedBy(cert, pool)
				}
				served[2*i+j] = it
			}()
		}
	}
	wg.Wait()
	return append(served, out...)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cert, err := helpers.ParseCertificatePEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

func signedBy(cert *x509.Certificate, pool *x509.CertPool) bool {
	_, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: cert.NotBefore.Add(time.Second)})
	return err == nil
}

func fromX509(it Certificate, cert *x509.Certificate) Certificate {
	it.Subject, it.NotAfter, it.Serial = cert.Subject.CommonName, cert.NotAfter.UTC(), cert.SerialNumber.Text(16)
	return it
}

// judge fills in days left and the warnings: a leaf inside renewBefore
// (site.yml re-issues it), a CA that ends before a certificate issued now
// would (etcd_pki caps leaves at the CA's end), anything expired or not
// from the cluster CA. It returns the
// warnings, one line each.
func judge(certs []Certificate, now time.Time, renewBefore, validity time.Duration) []string {
	var warnings []string
	for i := range certs {
		it := &certs[i]
		if it.Error != "" || it.NotAfter.IsZero() {
			continue
		}
		left := it.NotAfter.Sub(now)
		it.DaysLeft = int(left.Hours() / 24)
		switch {
		case left <= 0:
			it.Warning = "EXPIRED on " + it.NotAfter.Format("2006-01-02")
			if it.Kind != "ca" {
				it.Warning += ": run site.yml to re-issue it"
			}
		case it.Kind == "ca" && left < validity:
			it.Warning = fmt.Sprintf("ends before etcd_cert_validity (%s): certificates issued now end with it; the cluster needs a new CA before %s",
				days(validity), it.NotAfter.Format("2006-01-02"))
		case it.Kind != "ca" && left < renewBefore:
			it.Warning = fmt.Sprintf("inside etcd_cert_renew_before (%s): site.yml re-issues it", days(renewBefore))
		case !it.ClusterCA:
			it.Warning = "not signed by the CA in the state dir"
		}
		if it.Warning != "" {
			warnings = append(warnings, it.What+": "+it.Warning)
		}
	}
	sort.Strings(warnings)
	return warnings
}

func days(d time.Duration) string { return fmt.Sprintf("%dd", int(d.Hours()/24)) }

// certsTable renders the certificates, soonest expiry first within each
// group as collected.
func certsTable(certs []Certificate) table {
	t := table{header: []string{"CERTIFICATE", "SUBJECT", "SOURCE", "EXPIRES", "DAYS LEFT", "NOTE"}}
	for _, c := range certs {
		note := c.Warning
		if c.Error != "" {
			note = c.Error
		}
		expires, left := "", ""
		if !c.NotAfter.IsZero() {
			expires, left = c.NotAfter.Format("2006-01-02 15:04 MST"), fmt.Sprint(c.DaysLeft)
		}
		t.rows = append(t.rows, []string{c.What, c.Subject, c.Source, expires, left, note})
	}
	return t
}
