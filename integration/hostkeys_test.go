package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// TestHostKeysAsOperatorsKeepThem reaches real sshd the ways a production
// estate is reached, with host keys checked every way OpenSSH records
// them, and sshd's own log as the witness:
//   - etcd1 is the bastion, known by a hashed known_hosts line;
//   - etcd2 listens on port 2222 (port 22 blocked), reached through the
//     bastion (etcdplay_jump_host), known by a hashed [addr]:2222 line;
//   - etcd3 presents a host certificate and is known only through an
//     @cert-authority line for the lab's addresses, reached through the
//     bastion by ProxyJump in ansible_ssh_common_args;
//   - @revoked refuses a plain key, a certified host's key and a CA;
//     a certificate from another CA is refused and never recorded.
func TestHostKeysAsOperatorsKeepThem(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-hostkeys-estate", Block: 81, Hosts: 3})
	e := harness.New(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h1, _ := l.Host("etcd1")
	h2, _ := l.Host("etcd2")
	h3, _ := l.Host("etcd3")
	// Host keys and certificates are read and written in the hosts' roots,
	// as seen from the controller.
	hostPath := func(h lab.Host, p string) string {
		root, err := l.HostRoot(h.Name)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(root, p)
	}
	key := func(h lab.Host) ssh.PublicKey {
		raw, err := os.ReadFile(hostPath(h, "/etc/ssh/ssh_host_ed25519_key.pub"))
		if err != nil {
			t.Fatal(err)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(raw)
		if err != nil {
			t.Fatalf("%s host key: %v", h.Name, err)
		}
		return k
	}
	key1, key2, key3 := key(h1), key(h2), key(h3)

	ca, caPub := sshCA(t)
	_, otherCAPub := sshCA(t)
	writeFile(t, hostPath(h3, "/etc/ssh/ssh_host_ed25519_key-cert.pub"), authorized(hostCert(t, ca, key3, h3.Addr)))

	// sshd as operators configure it; each host's config is checked by
	// sshd -t before the restart, and the restart is waited for.
	reconfigure := func(h lab.Host, script string, ports ...int) {
		t.Helper()
		if out, err := l.Run(ctx, h.Name, script+" && sshd -t && systemctl restart ssh"); err != nil {
			t.Fatalf("reconfigure sshd on %s: %v\n%s", h.Name, err, out)
		}
		for _, port := range ports {
			waitListening(t, net.JoinHostPort(h.Addr, fmt.Sprint(port)))
		}
	}
	reconfigure(h1, "echo 'LogLevel DEBUG1' >> /etc/ssh/sshd_config.d/lab.conf", 22)
	reconfigure(h2, "printf 'Port 22\\nPort 2222\\n' > /etc/ssh/sshd_config.d/00-ports.conf", 22, 2222)
	reconfigure(h3, "echo 'HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub' >> /etc/ssh/sshd_config.d/lab.conf", 22)

	dir := t.TempDir()
	e.Inventory = filepath.Join(dir, "inventory.yml")
	writeFile(t, e.Inventory, fmt.Sprintf(`all:
  vars:
    ansible_user: root
    ansible_ssh_private_key_file: %[1]s
  hosts:
    etcd1: {ansible_host: %[2]s}
    etcd2: {ansible_host: %[3]s, ansible_port: 2222, etcdplay_jump_host: "root@%[2]s"}
    etcd3: {ansible_host: %[4]s, ansible_ssh_common_args: "-o ProxyJump=root@%[2]s:22"}
`, l.KeyFile, h1.Addr, h2.Addr, h3.Addr))
	hashed := func(addr string, k ssh.PublicKey) string {
		return knownhosts.HashHostname(knownhosts.Normalize(addr)) + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	}
	pattern := strings.TrimSuffix(h1.Addr, ".1") + ".*"
	trusted := strings.Join([]string{
		"# the bastion and a host on port 2222, hashed as HashKnownHosts writes them",
		hashed(h1.Addr, key1),
		hashed(net.JoinHostPort(h2.Addr, "2222"), key2),
		"# every lab address, through the lab's SSH CA",
		"@cert-authority " + pattern + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(caPub))),
	}, "\n") + "\n"
	e.KnownHosts = filepath.Join(dir, "known_hosts")
	writeFile(t, e.KnownHosts, trusted)

	// Port 22 on etcd2 is closed to everyone: only 2222 can serve it.
	if err := l.BlockPort("etcd2", 22); err != nil {
		t.Fatal(err)
	}
	defer l.UnblockPort("etcd2", 22)

	since := time.Now().Add(-time.Second).Format("2006-01-02 15:04:05")
	pb := harness.Playbook("generic-demo.yml")
	o := e.MustApply(t, pb, "-f", "1")
	for _, h := range []string{"etcd1", "etcd2", "etcd3"} {
		if r := o.Recap[h]; r.Changed == 0 || r.Failed+r.Unreachable != 0 {
			t.Errorf("%s: recap %+v, want converged", h, r)
		}
	}
	if again := e.MustApply(t, pb); again.Changed() != 0 {
		t.Errorf("second run changed %d things", again.Changed())
	}
	if got, _ := os.ReadFile(e.KnownHosts); string(got) != trusted {
		t.Errorf("known_hosts was rewritten by runs that needed no new key:\n%s", got)
	}
	// The bastion's sshd saw the tunnels to etcd2:2222 and etcd3:22.
	journal, err := l.Run(ctx, "etcd1", "journalctl -u ssh --no-pager -o cat --since '"+since+"' | grep direct_tcpip")
	if err != nil {
		t.Fatalf("bastion journal: %v", err)
	}
	for _, target := range []string{"target " + h2.Addr + " port 2222", "target " + h3.Addr + " port 22"} {
		if !strings.Contains(journal, target) {
			t.Errorf("the bastion's sshd never forwarded to %s; its direct-tcpip log:\n%s", target, journal)
		}
	}

	// Refusals: each run is against one host, checked by -l; nothing on
	// the host may change and known_hosts must stay as written.
	refused := []struct {
		name, host, knownHosts, want string
	}{
		{"bastion's key revoked", "etcd1", trusted + "@revoked * " + authorized(key1), "revoked"},
		{"certified host's own key revoked", "etcd3", trusted + "@revoked * " + authorized(key3), "revoked"},
		{"the CA revoked", "etcd3", trusted + "@revoked * " + authorized(caPub), "revoked"},
		{"certificate from a CA nobody trusts", "etcd3", strings.Replace(trusted, authorized(caPub), authorized(otherCAPub), 1), "host key"},
	}
	before := e.SnapshotAll(t, generic...)
	for _, tc := range refused {
		writeFile(t, e.KnownHosts, tc.knownHosts)
		o := e.Apply(t, pb, "-l", tc.host, "--accept-new-host-keys")
		if o.Code != 3 || !strings.Contains(strings.ToLower(o.Summary()), tc.want) {
			t.Errorf("%s: exit %d, want 3 naming %q\n%s", tc.name, o.Code, tc.want, o.Summary())
		}
		if got, _ := os.ReadFile(e.KnownHosts); string(got) != tc.knownHosts {
			t.Errorf("%s: a refused key was recorded:\n%s", tc.name, got)
		}
	}
	if changed := e.ChangedSince(t, before, generic...); len(changed) != 0 {
		t.Errorf("refused runs changed hosts:\n%s", strings.Join(changed, "\n"))
	}
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + "\n"
}

// sshCA is a fresh ed25519 SSH certificate authority.
func sshCA(t *testing.T) (ssh.Signer, ssh.PublicKey) {
	t.Helper()
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return s, s.PublicKey()
}

// hostCert certifies a host key for addr, as ssh-keygen -h -n addr does.
func hostCert(t *testing.T, ca ssh.Signer, hostKey ssh.PublicKey, addr string) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key:             hostKey,
		Serial:          1,
		CertType:        ssh.HostCert,
		KeyId:           "lab host " + addr,
		ValidPrincipals: []string{addr},
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore:     uint64(time.Now().Add(24 * time.Hour).Unix()),
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listened: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
