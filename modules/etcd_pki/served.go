package etcd_pki

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/cloudflare/cfssl/helpers"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// servedTimeout bounds the wait for a running member to serve a rotated
// certificate. etcd reads its leaf certificates at every TLS handshake, so
// the next handshake after the write already has it.
const servedTimeout = 15 * time.Second

// checkServed confirms that the member serves the server and peer
// certificates this run just wrote (a rotation, or a renewal inside
// etcd_cert_renew_before), without a restart. A member where nothing
// answers (not running, not bootstrapped yet) is left alone: it reads them
// when it starts.
func checkServed(ctx context.Context, env *modules.Env, p *plan) error {
	pki := p.cluster.PKI(env.StateDir)
	client, err := tls.LoadX509KeyPair(pki.Client(etcd.EtcdplayClientCN))
	if err != nil {
		return fmt.Errorf("etcdplay client certificate: %w", err)
	}
	dial := etcdclient.Dialer(p.cluster, env)
	for _, it := range p.items {
		if !it.issue || it.shared {
			continue
		}
		want, err := helpers.ParseCertificatePEM(it.pair.Cert)
		if err != nil {
			return err
		}
		url, as := p.member.ClientURL, client
		if it.kind == Peer {
			// The peer port takes member certificates only.
			url = p.member.PeerURL
			if as, err = tls.X509KeyPair(it.pair.Cert, it.pair.Key); err != nil {
				return err
			}
		}
		deadline := time.Now().Add(servedTimeout)
		for attempt := 0; ; attempt++ {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			got, err := etcdclient.ServedCertificate(cctx, dial, url, as)
			cancel()
			var plain tls.RecordHeaderError
			switch {
			case attempt == 0 && errors.As(err, &plain):
				// A plain-HTTP member (etcd_tls was false): it uses them
				// once enable-tls.yml moves it to TLS.
				env.Logf("%s serves plain HTTP at %s: etcd reads the new certificates when it moves to TLS", p.member.Name, url)
				return nil
			case attempt == 0 && errors.Is(err, etcdclient.ErrNotServing):
				env.Logf("%s: nothing answers at %s: etcd reads the new certificates when it starts", p.member.Name, url)
				return nil
			case err == nil && got.SerialNumber.Cmp(want.SerialNumber) == 0:
				env.Logf("%s serves its new %s certificate (serial %x) at %s, no restart needed", p.member.Name, it.kind, want.SerialNumber, url)
			case time.Now().After(deadline):
				served := fmt.Sprint(err)
				if err == nil {
					served = fmt.Sprintf("serial %x", got.SerialNumber)
				}
				return fmt.Errorf("%s still does not serve its new %s certificate (serial %x) at %s after %s (%s): restart etcd on %s",
					p.member.Name, it.kind, want.SerialNumber, url, servedTimeout, served, p.member.Host)
			default:
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(300 * time.Millisecond):
				}
				continue
			}
			break
		}
	}
	return nil
}
