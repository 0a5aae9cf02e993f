// Package etcd_pki is the etcd_pki module: a CA on the controller (made by
// etcdplay or supplied by the user), server and peer certificates per
// member and client certificates, issued with cfssl, kept in the
// controller's state directory, and pushed to each member (never the CA
// key). Certificates are re-issued only when their SANs change, their
// expiry is near, or their CA changed.
package etcd_pki

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
	"github.com/cloudflare/cfssl/initca"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
)

// Pair is a certificate and its private key, PEM encoded.
type Pair struct {
	Cert, Key []byte
}

// CA is a loaded CA: its PEM pair and parsed forms.
type CA struct {
	Pair
	cert *x509.Certificate
	key  crypto.Signer
}

// newKey is the key every certificate gets: ECDSA P-256 is what etcd's
// own docs use with cfssl, and it is fast to generate.
func newKey() *csr.KeyRequest { return &csr.KeyRequest{A: "ecdsa", S: 256} }

// NewCA makes a self-signed CA named cn.
func NewCA(cn string, validity time.Duration) (*CA, error) {
	cert, _, key, err := initca.New(&csr.CertificateRequest{
		CN:         cn,
		KeyRequest: newKey(),
		CA:         &csr.CAConfig{Expiry: validity.String()},
	})
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	return LoadCA(cert, key)
}

// LoadCA parses a CA pair and checks the key belongs to the certificate.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := helpers.ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", cert.Subject.CommonName)
	}
	key, err := helpers.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !samePublicKey(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("CA key does not belong to CA certificate %q", cert.Subject.CommonName)
	}
	return &CA{Pair: Pair{Cert: certPEM, Key: keyPEM}, cert: cert, key: key}, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// Kind is what a leaf certificate is for.
type Kind string

const (
	Server Kind = "server"
	Peer   Kind = "peer"
	Client Kind = "client"
)

func usages(k Kind) []string {
	if k == Client {
		return []string{"signing", "digital signature", "key encipherment", "client auth"}
	}
	// Server certificates also authenticate etcd as a client (gateway,
	// grpc-proxy), and peer certificates are used in both directions.
	return []string{"signing", "digital signature", "key encipherment", "server auth", "client auth"}
}

// Issue makes a new key and a certificate for cn with the SANs, signed by
// the CA. A certificate never outlives its CA (cfssl would let it): its
// validity ends with the CA's at the latest, and an expired CA issues
// nothing.
func (ca *CA) Issue(k Kind, cn string, sans []string, validity time.Duration) (Pair, error) {
	if !now().Before(ca.cert.NotAfter) {
		return Pair{}, fmt.Errorf("%s certificate %s: the CA %q expired on %s, so nothing it signs is valid; the cluster needs a new CA, which etcdplay does not roll out yet",
			k, cn, ca.cert.Subject.CommonName, ca.cert.NotAfter.UTC().Format("2006-01-02"))
	}
	req := &csr.CertificateRequest{CN: cn, Hosts: sans, KeyRequest: newKey()}
	csrPEM, keyPEM, err := csr.ParseRequest(req)
	if err != nil {
		return Pair{}, fmt.Errorf("%s certificate %s: %w", k, cn, err)
	}
	profile := &config.SigningProfile{Usage: usages(k), Expiry: validity, ExpiryString: validity.String()}
	if now().Add(validity).After(ca.cert.NotAfter) {
		profile.NotAfter = ca.cert.NotAfter
	}
	s, err := local.NewSigner(ca.key, ca.cert, signer.DefaultSigAlgo(ca.key), &config.Signing{
		Profiles: map[string]*config.SigningProfile{string(k): profile},
		Default:  profile,
	})
	if err != nil {
		return Pair{}, fmt.Errorf("%s certificate %s: %w", k, cn, err)
	}
	hosts := sans
	if k == Client {
		hosts = nil
	}
	cert, err := s.Sign(signer.SignRequest{Hosts: hosts, Request: string(csrPEM), Profile: string(k)})
	if err != nil {
		return Pair{}, fmt.Errorf("%s certificate %s: %w", k, cn, err)
	}
	return Pair{Cert: cert, Key: keyPEM}, nil
}

// Reason says why an existing pair must be re-issued, or "" when it is
// still good: signed by ca, for cn, with exactly the SANs, the key
// matching, and not expiring within renewBefore of now.
func Reason(p Pair, ca *CA, cn string, sans []string, now time.Time, renewBefore time.Duration) string {
	cert, err := helpers.ParseCertificatePEM(p.Cert)
	if err != nil {
		return "unreadable certificate"
	}
	key, err := helpers.ParsePrivateKeyPEM(p.Key)
	if err != nil || !samePublicKey(cert.PublicKey, key.Public()) {
		return "key does not match certificate"
	}
	if cert.CheckSignatureFrom(ca.cert) != nil {
		return "signed by another CA"
	}
	if cert.Subject.CommonName != cn {
		return fmt.Sprintf("CN %s -> %s", cert.Subject.CommonName, cn)
	}
	if added, removed := sanDiff(certSANs(cert), sans); len(added)+len(removed) > 0 {
		var parts []string
		for _, a := range added {
			parts = append(parts, "+"+a)
		}
		for _, r := range removed {
			parts = append(parts, "-"+r)
		}
		return "SANs changed: " + strings.Join(parts, " ")
	}
	// A certificate that ends with its CA cannot be renewed past it:
	// re-issuing it on every run would change nothing.
	if cert.NotAfter.Sub(now) < renewBefore && cert.NotAfter.Before(ca.cert.NotAfter) {
		return "expires " + cert.NotAfter.UTC().Format("2006-01-02")
	}
	return ""
}

func certSANs(c *x509.Certificate) []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// normSAN makes "::1" and "0:0::1" compare equal.
func normSAN(s string) string {
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return strings.ToLower(s)
}

func sanDiff(have, want []string) (added, removed []string) {
	h, w := map[string]bool{}, map[string]bool{}
	for _, s := range have {
		h[normSAN(s)] = true
	}
	for _, s := range want {
		w[normSAN(s)] = true
	}
	for s := range w {
		if !h[s] {
			added = append(added, s)
		}
	}
	for s := range h {
		if !w[s] {
			removed = append(removed, s)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}
