package etcd_pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// CA rotation (rotate-ca.yml), in three steps that each leave every two
// members able to talk:
//
//  1. trust: a new CA is made on the controller beside the current one
//     (ca-next.crt); every host's ca.crt holds both, and etcd_restart
//     restarts the members (etcd reads its trusted CAs at start only);
//  2. reissue: leaves (server, peer, the controller's client
//     certificates) are issued from the new CA, one member at a time; etcd
//     reads leaves at every handshake, and both CAs are trusted;
//  3. finish: on the controller the new CA becomes ca.crt and the old one
//     is kept as ca-retired-<time>.crt; every host's ca.crt holds the new
//     CA only, and the members are restarted again.
//
// The step is the playbook's; what is done is read from the state dir
// (ca-next present or not, the finishing mark) and the hosts' files, so a
// killed run is finished by running rotate-ca.yml again from the start.
// Past the promotion, a rerun's first two steps find no ca-next but the
// mark: they finish that rotation (hosts trust the new CA alone) instead
// of starting another, and the playbook's last task (done) drops the mark.

// rotationStep picks the CA that signs leaves and the trust bundle hosts
// get for step (none: the current CA for both).
func (p *plan) rotationStep(st *store, c *etcd.Cluster, pki etcd.StatePKI, step string, owner bool, ch *modules.Change) (signing *CA, trusted []byte, err error) {
	if step == "" {
		return p.ca, p.ca.Cert, nil
	}
	if c.CACertFile != "" {
		return nil, nil, &etcd.VarError{Var: "etcd_ca_cert", Msg: "is a CA of your own: rotate-ca.yml rotates the CA etcdplay keeps; to move to another CA of yours, see docs/variables.md (CA rotation)"}
	}
	if p.caNew {
		return nil, nil, errors.New("there is no CA to rotate yet: site.yml makes the cluster's first one")
	}
	finishing, err := exists(pki.RotationFinishing())
	if err != nil {
		return nil, nil, err
	}
	if p.next, p.nextNew, err = st.loadNextCA(c, pki, step == "trust" && !finishing); err != nil {
		return nil, nil, err
	}
	if step == "done" {
		// Under --check a pending ca-next is this run's own plan of the
		// earlier steps, which would have promoted it.
		if p.next != nil && !p.nextNew {
			return nil, nil, fmt.Errorf("%s is still there: the rotation's last step (ca_rotation: finish) has not made it the CA; run rotate-ca.yml again", pki.NextCACert())
		}
		if finishing {
			p.done = true
			ch.Add("-", pki.RotationFinishing(), "the rotation is finished: every host trusts the new CA alone")
		}
		return p.ca, p.ca.Cert, nil
	}
	if p.next == nil {
		switch {
		case step == "finish":
			return p.ca, p.ca.Cert, nil // done: the new CA is the CA
		case finishing:
			if owner && step == "trust" {
				ch.Add("~", pki.CACert(), fmt.Sprintf("a rotation killed after CA %q (serial %x) became the CA is finished: hosts trust it alone; run rotate-ca.yml again for another new CA",
					p.ca.cert.Subject.CommonName, p.ca.cert.SerialNumber))
			}
			return p.ca, p.ca.Cert, nil
		}
		return nil, nil, fmt.Errorf("no new CA in %s: the rotation's first step (ca_rotation: trust) makes it", pki.NextCACert())
	}
	bundle := append(append(bytes.TrimRight(bytes.Clone(p.ca.Cert), "\n"), '\n'), p.next.Cert...)
	switch step {
	case "trust":
		if p.nextNew && owner {
			ch.Add("+", pki.NextCACert(), fmt.Sprintf("new CA %q beside the current one (valid until %s): hosts trust both",
				p.next.cert.Subject.CommonName, p.next.cert.NotAfter.UTC().Format("2006-01-02")))
		}
		return p.ca, bundle, nil
	case "reissue":
		return p.next, bundle, nil
	}
	p.promote = true
	if owner {
		ch.Add("~", pki.CACert(), fmt.Sprintf("the new CA (serial %x) replaces the old one (serial %x, kept as %s)",
			p.next.cert.SerialNumber, p.ca.cert.SerialNumber, retiredName(pki, p.ca)))
	}
	return p.next, p.next.Cert, nil
}

// loadNextCA finds the rotation's new CA: on disk, pending from a
// parallel plan, or (create) a new one, with a name of its own so clients
// and tools that show the issuer tell the two CAs apart. nil when there is
// none.
func (s *store) loadNextCA(c *etcd.Cluster, pki etcd.StatePKI, create bool) (*CA, bool, error) {
	name := ""
	if create {
		name = fmt.Sprintf("%s-ca-%s", c.Name, now().UTC().Format("20060102"))
	}
	return s.caAt(pki.NextCACert(), pki.NextCAKey(), name, c.CAValidity)
}

// retiredName is where the old CA is kept once replaced.
func retiredName(pki etcd.StatePKI, ca *CA) string {
	return strings.TrimSuffix(pki.CACert(), ".crt") + "-retired-" + ca.cert.NotBefore.UTC().Format("20060102T150405") + ".crt"
}

// persistRotation writes a new next CA, or promotes it. Callers hold the
// store's lock and the directory's file lock.
func persistRotation(p *plan, pki etcd.StatePKI, logf func(string, ...any)) error {
	if p.nextNew {
		cur, err := os.ReadFile(pki.NextCACert())
		switch {
		case err == nil && !bytes.Equal(cur, p.next.Cert):
			return fmt.Errorf("%s appeared while this run was planning (another etcdplay run?); run again", pki.NextCACert())
		case err != nil:
			if err := writePair(pki.NextCACert(), pki.NextCAKey(), p.next.Pair); err != nil {
				return err
			}
			logf("created the rotation's new CA %s", pki.NextCACert())
		}
	}
	if p.done {
		if err := os.Remove(pki.RotationFinishing()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		logf("the CA rotation is finished")
		return nil
	}
	if !p.promote {
		return nil
	}
	if _, err := os.Stat(pki.NextCACert()); errors.Is(err, fs.ErrNotExist) {
		return nil // another host's Apply of this run promoted it
	}
	if bytes.Equal(p.ca.Cert, p.next.Cert) {
		// This plan read ca.crt after a promotion had written it and
		// before ca-next went (another host's Apply, a killed run): the
		// "current" CA is the new one. Retiring it would keep the new
		// CA as retired and leave the old one's copy as the only proof;
		// settle the promotion instead.
		return settlePromotion(pki)
	}
	// The mark goes first: once ca.crt is the new CA, a rerun must find
	// the rotation unfinished rather than start another.
	if err := writeAtomic(pki.RotationFinishing(), []byte(fmt.Sprintf("CA serial %x became %s; rotate-ca.yml's last task removes this file once every host trusts it alone\n",
		p.next.cert.SerialNumber, pki.CACert())), 0o644); err != nil {
		return err
	}
	retired := retiredName(pki, p.ca)
	if _, err := os.Stat(retired); errors.Is(err, fs.ErrNotExist) {
		if err := writePair(retired, strings.TrimSuffix(retired, ".crt")+".key", p.ca.Pair); err != nil {
			return err
		}
	}
	if err := writePair(pki.CACert(), pki.CAKey(), p.next.Pair); err != nil {
		return fmt.Errorf("promoting the new CA: %w", err)
	}
	if err := settlePromotion(pki); err != nil {
		return err
	}
	logf("the new CA is %s; the old one is kept as %s (%s)", pki.CACert(), retired, time.Now().UTC().Format(time.RFC3339))
	return nil
}

// settlePromotion finishes a promotion a killed run left half done: once
// ca.key is the new CA's key, the new CA is the CA (its certificate is
// written again) and ca-next goes (it is ca.crt now, byte for byte).
// Before that point nothing of the promotion happened but the retired
// copy, and the rotation's last step does it again.
func settlePromotion(pki etcd.StatePKI) error {
	next, ok, err := readPair(pki.NextCACert(), pki.NextCAKey())
	if err != nil || !ok {
		return err
	}
	key, err := os.ReadFile(pki.CAKey())
	if err != nil || !bytes.Equal(key, next.Key) {
		return nil
	}
	if err := writePair(pki.CACert(), pki.CAKey(), next); err != nil {
		return err
	}
	for _, f := range []string{pki.NextCACert(), pki.NextCAKey()} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func exists(p string) (bool, error) {
	_, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
