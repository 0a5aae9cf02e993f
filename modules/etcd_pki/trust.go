package etcd_pki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
)

// A member reloads its leaf certificates on every handshake but reads its
// trusted CA only when it starts. Pushing a CA the members do not already
// trust therefore cuts every new peer and client connection as soon as the
// leaves change, and the old certificates are gone. So the CA is never
// replaced on a host that already has one: these checks refuse before any
// change, and say how to get the cluster's CA back onto the controller.

// TrustError says a host trusts a CA that is not the one this run would
// push. It is about the controller's state, not one task, so it names the
// remedy rather than the module.
type TrustError struct {
	Host, Path string
	HostCA     string // the host's CA, described
	Controller string // the CA this run would push, described; "" when it would make a new one
	StatePath  string // where the controller looked for the CA
}

func (e *TrustError) Error() string {
	var what string
	if e.Controller == "" {
		what = fmt.Sprintf("%s already trusts the CA in %s (%s), but the controller has no CA for this cluster (%s is missing), and making a new one would cut every member off from its peers and clients", e.Host, e.Path, e.HostCA, e.StatePath)
	} else {
		what = fmt.Sprintf("%s trusts the CA in %s (%s), which is not the controller's CA (%s), and pushing it would cut every member off from its peers and clients", e.Host, e.Path, e.HostCA, e.Controller)
	}
	return what + "; nothing was changed. Use the state directory this cluster was deployed from (--state-dir, and the same etcd_cluster_name), " +
		"or hand the cluster's CA to etcdplay with -e etcd_ca_cert=PATH -e etcd_ca_key=PATH (docs/variables.md, \"Sharing controller state\")"
}

// describeCA names a CA for an operator: subject, expiry and the SHA-256
// of its DER, which `openssl x509 -noout -fingerprint -sha256` also shows.
func describeCA(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return fmt.Sprintf("CN %q, sha256 %s, valid until %s", c.Subject.CommonName, hex.EncodeToString(sum[:8]), c.NotAfter.UTC().Format("2006-01-02"))
}

// describePEM describes the first certificate of a PEM bundle, or says
// the file is not one.
func describePEM(data []byte) string {
	certs := parseCerts(data)
	if len(certs) == 0 {
		return "not a PEM certificate"
	}
	return describeCA(certs[0])
}

func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

// trusts reports whether the host's CA bundle holds ca, so replacing the
// file with ca keeps every certificate the host trusts today verifiable
// by the ones it will get.
func trusts(hostPEM []byte, ca *CA) bool {
	for _, c := range parseCerts(hostPEM) {
		if bytes.Equal(c.Raw, ca.cert.Raw) {
			return true
		}
	}
	return false
}

// checkHostCA refuses when the host's current CA file (hostPEM, nil when
// absent) is not ca. caNew says ca would be made by this run.
func checkHostCA(host, path string, hostPEM []byte, ca *CA, caNew bool, statePath string) error {
	if len(bytes.TrimSpace(hostPEM)) == 0 || trusts(hostPEM, ca) {
		return nil
	}
	e := &TrustError{Host: host, Path: path, HostCA: describePEM(hostPEM), StatePath: statePath}
	if !caNew {
		e.Controller = describeCA(ca.cert)
	}
	return e
}

// hostCA reads the CA file on a host through a plan of the file set
// (Host.Plan never applies). It returns nil
// when the host has no such file.
func hostCA(ctx context.Context, r modules.Host, path string) ([]byte, error) {
	set := etcd_install.Set{Files: []etcd_install.File{{Path: path}}}
	res, err := r.Plan(ctx, "etcd_files", set.Args())
	if err != nil {
		return nil, err
	}
	if res.Status == modules.StatusFailed {
		return nil, fmt.Errorf("read %s: %s", path, res.Msg)
	}
	return caBefore(res.Change, path), nil
}

// caBefore is the host's content of path as a file-set plan saw it.
func caBefore(c *modules.Change, path string) []byte {
	if c == nil {
		return nil
	}
	for _, d := range c.Diffs {
		if d.Path == path && !d.Secret {
			return []byte(d.Before)
		}
	}
	return nil
}

// checkPlayCA is run once per cluster when this run would make a new CA:
// any host of the play that already trusts a CA means the controller lost
// the cluster's state, and the run stops before any host changes (a host
// that is new to the cluster could otherwise take the new CA first).
func checkPlayCA(ctx context.Context, env *modules.Env, pkiDir string, ca *CA, statePath string) error {
	names := make([]string, 0, len(env.Hosts))
	for h := range env.Hosts {
		names = append(names, h)
	}
	sort.Strings(names)
	path := filepath.Join(pkiDir, "ca.crt")
	for _, h := range names {
		r := env.Hosts[h]
		if !r.Reachable() {
			continue
		}
		cur, err := hostCA(ctx, r, path)
		if err != nil {
			return fmt.Errorf("check the CA on %s: %w", h, err)
		}
		if err := checkHostCA(h, path, cur, ca, true, statePath); err != nil {
			return err
		}
	}
	return nil
}
