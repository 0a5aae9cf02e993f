package etcdclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
)

// ErrNotServing is wrapped when nothing answers at the URL (the member is
// not running): there is no certificate to look at.
var ErrNotServing = errors.New("nothing answers")

// ServedCertificate is the leaf certificate the TLS server at rawURL (a
// member's client or peer URL) presents, presenting as in return. It is
// taken from the handshake before the server judges as, so a server that
// then refuses it still shows what it serves: what etcd really uses, which
// is what a rotation must be checked against. dial may be nil (direct).
func ServedCertificate(ctx context.Context, dial DialFunc, rawURL string, as tls.Certificate) (*x509.Certificate, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	var conn net.Conn
	if dial != nil {
		conn, err = dial(ctx, u.Host)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", u.Host)
	}
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNotServing, u.Host, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	var leaf *x509.Certificate
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The caller verifies (against the CA it expects): the point is
		// to see what is served even when it is wrong.
		InsecureSkipVerify: true,
		Certificates:       []tls.Certificate{as},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				leaf, _ = x509.ParseCertificate(raw[0])
			}
			return nil
		},
	}
	herr := tls.Client(conn, cfg).HandshakeContext(ctx)
	if leaf == nil {
		if herr == nil {
			herr = errors.New("no certificate served")
		}
		return nil, fmt.Errorf("TLS handshake with %s: %w", u.Host, herr)
	}
	return leaf, nil
}
