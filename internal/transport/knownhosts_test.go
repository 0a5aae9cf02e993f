package transport

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/etcdplay/etcdplay/internal/transport/sshtest"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestHostKeys(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(c *sshtest.Client, s *sshtest.Server)
		accept  bool
		changed bool // want a changed-key refusal
		refused bool
	}{
		{name: "known", setup: func(c *sshtest.Client, s *sshtest.Server) { c.Trust(t, s) }},
		{name: "unknown refused", setup: func(*sshtest.Client, *sshtest.Server) {}, refused: true},
		{name: "no known_hosts file", setup: func(c *sshtest.Client, _ *sshtest.Server) { os.Remove(c.KnownHosts) }, refused: true},
		{name: "unknown accepted", setup: func(*sshtest.Client, *sshtest.Server) {}, accept: true},
		{name: "changed refused", setup: func(c *sshtest.Client, s *sshtest.Server) { c.Trust(t, s, sshtest.GenSigner(t, "ed25519")) }, refused: true, changed: true},
		{name: "changed refused even with accept", setup: func(c *sshtest.Client, s *sshtest.Server) { c.Trust(t, s, sshtest.GenSigner(t, "ed25519")) },
			accept: true, refused: true, changed: true},
		// A line of a key type this client does not know (or a typo)
		// is skipped, as ssh does; it used to make every host unknown.
		{name: "known beside an unparsable line", setup: func(c *sshtest.Client, s *sshtest.Server) {
			if err := os.WriteFile(c.KnownHosts, []byte("old.example ssh-xmss@openssh.com AAAAFHNzaC14bXNzQG9wZW5zc2guY29t\nbroken line\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c.Trust(t, s)
		}},
		{name: "changed beside an unparsable line names the real file", setup: func(c *sshtest.Client, s *sshtest.Server) {
			if err := os.WriteFile(c.KnownHosts, []byte("old.example ssh-xmss@openssh.com AAAAFHNzaC14bXNzQG9wZW5zc2guY29t\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c.Trust(t, s, sshtest.GenSigner(t, "ed25519"))
		}, refused: true, changed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sshtest.NewClient(t)
			s := sshtest.NewServer(t, c.Pub)
			tt.setup(c, s)
			before, _ := os.ReadFile(c.KnownHosts)
			o := optsOf(c)
			o.AcceptNewHostKeys = tt.accept
			conn, err := connect(t, c, s, o)
			if !tt.refused {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				if r, err := conn.Do(context.Background(), "sshtest_set", nil, false); err != nil || r.Status != "ok" {
					t.Fatalf("Do: %v %v", r, err)
				}
				return
			}
			var he *HostKeyError
			if !errors.As(err, &he) {
				t.Fatalf("want a HostKeyError, got %v", err)
			}
			if !IsUnreachable(err) {
				t.Error("a refused host key must count as unreachable")
			}
			if he.Changed != tt.changed {
				t.Errorf("Changed = %v, want %v (%v)", he.Changed, tt.changed, err)
			}
			host := fmt.Sprintf("[127.0.0.1]:%d", s.Port)
			msg := err.Error()
			if !strings.Contains(msg, host) || !strings.Contains(msg, c.KnownHosts) {
				t.Errorf("error does not name host and file: %s", msg)
			}
			if strings.Contains(msg, "etcdplay-known_hosts-") {
				t.Errorf("error names the filtered temp copy, not the file: %s", msg)
			}
			if tt.changed && !strings.Contains(msg, fmt.Sprintf("ssh-keygen -f %s -R '%s'", c.KnownHosts, host)) {
				t.Errorf("changed-key error does not say how to fix it: %s", msg)
			}
			if !tt.changed && !strings.Contains(msg, "--accept-new-host-keys") {
				t.Errorf("unknown-key error does not say how to fix it: %s", msg)
			}
			after, _ := os.ReadFile(c.KnownHosts)
			if string(after) != string(before) {
				t.Errorf("a refused key changed known_hosts:\n%s", after)
			}
		})
	}
}

// An accepted key is recorded, and the next run needs no --accept.
func TestAcceptNewRecords(t *testing.T) {
	for _, hash := range []bool{false, true} {
		t.Run(fmt.Sprint("hash=", hash), func(t *testing.T) {
			c := sshtest.NewClient(t)
			s := sshtest.NewServer(t, c.Pub)
			// A last line without a newline must not be glued to ours.
			if err := os.WriteFile(c.KnownHosts, []byte("otherhost "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshtest.GenSigner(t, "ed25519").PublicKey())))), 0o600); err != nil {
				t.Fatal(err)
			}
			o := optsOf(c)
			o.AcceptNewHostKeys, o.HashKnownHosts = true, hash
			if _, err := connect(t, c, s, o); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(c.KnownHosts)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 2 {
				t.Fatalf("known_hosts:\n%s", b)
			}
			host := fmt.Sprintf("[127.0.0.1]:%d", s.Port)
			if hashed := strings.HasPrefix(lines[1], "|1|"); hashed != hash || (!hash && !strings.HasPrefix(lines[1], host+" ")) {
				t.Errorf("recorded line %q (hash %v)", lines[1], hash)
			}
			if _, err := connect(t, c, s, optsOf(c)); err != nil {
				t.Fatalf("second connect without accept: %v", err)
			}
		})
	}
}

// Concurrent first connects must each land exactly one intact line.
func TestAcceptNewConcurrent(t *testing.T) {
	c := sshtest.NewClient(t)
	const n = 12
	servers := make([]*sshtest.Server, n)
	for i := range servers {
		servers[i] = sshtest.NewServer(t, c.Pub)
	}
	o := optsOf(c)
	o.AcceptNewHostKeys = true
	var wg sync.WaitGroup
	errs := make([]error, n*2)
	for i := range n * 2 { // every host twice, at once
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := connect(t, c, servers[i%n], o)
			if err == nil {
				conn.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("connect %d: %v", i, err)
		}
	}
	b, _ := os.ReadFile(c.KnownHosts)
	if got := strings.Count(string(b), "\n"); got != n {
		t.Errorf("%d lines for %d hosts:\n%s", got, n, b)
	}
	cb, err := knownhosts.New(c.KnownHosts)
	if err != nil {
		t.Fatalf("known_hosts no longer parses: %v", err)
	}
	for _, s := range servers {
		hp := fmt.Sprintf("127.0.0.1:%d", s.Port)
		if err := cb(hp, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.Port}, s.HostKeys[0].PublicKey()); err != nil {
			t.Errorf("%s: %v", hp, err)
		}
	}
}

// A host with an RSA and an ed25519 key, of which we know only the ed25519
// one, must be asked for that key rather than refused as changed (Go's
// client prefers RSA over ed25519 by default).
func TestHostKeyAlgorithmsFromKnownHosts(t *testing.T) {
	c := sshtest.NewClient(t)
	edKey := sshtest.GenSigner(t, "ed25519")
	s := sshtest.NewServer(t, c.Pub, sshtest.GenSigner(t, "rsa"), edKey)
	c.Trust(t, s, edKey)
	if _, err := connect(t, c, s, optsOf(c)); err != nil {
		t.Fatalf("connect knowing only the ed25519 key: %v", err)
	}
}

// /etc/ssh/ssh_known_hosts counts as ssh's global file does: a host it
// lists is known without the user's file, and a different key there is a
// changed key. It is never written.
func TestSystemKnownHosts(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	system := filepath.Join(t.TempDir(), "ssh_known_hosts")
	old := SystemKnownHosts
	SystemKnownHosts = system
	t.Cleanup(func() { SystemKnownHosts = old })

	sys := &sshtest.Client{KnownHosts: system}
	sys.Trust(t, s)
	if _, err := connect(t, c, s, optsOf(c)); err != nil {
		t.Fatalf("a host the system file lists: %v", err)
	}
	if _, err := os.Stat(c.KnownHosts); err == nil {
		t.Errorf("the user's known_hosts was written for a host the system file knows")
	}

	other := sshtest.NewServer(t, c.Pub)
	if err := os.WriteFile(system, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sys.Trust(t, other, sshtest.GenSigner(t, "ed25519"))
	_, err := connect(t, c, other, optsOf(c))
	var he *HostKeyError
	if !errors.As(err, &he) || !he.Changed || !strings.Contains(strings.Join(he.Known, " "), system) {
		t.Fatalf("a key the system file contradicts: %v, want a changed key naming %s", err, system)
	}
}

// Host certificates, checked as ssh checks them: a host known only through
// an @cert-authority line is asked for its certificate and accepted when
// the CA signed it; a certificate from another CA, or a revoked host key or
// CA, is refused and never recorded, even with --accept-new-host-keys; a
// plain key from such a host is unknown, not "changed".
func TestHostCertificates(t *testing.T) {
	line := func(k ssh.PublicKey) string { return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) }
	ca, other := sshtest.GenSigner(t, "ed25519"), sshtest.GenSigner(t, "ed25519")
	hostKey := sshtest.GenSigner(t, "ed25519")
	certified := func(t *testing.T, by ssh.Signer) ssh.Signer {
		c := &ssh.Certificate{Key: hostKey.PublicKey(), CertType: ssh.HostCert, ValidPrincipals: []string{"127.0.0.1"}, ValidBefore: ssh.CertTimeInfinity}
		if err := c.SignCert(rand.Reader, by); err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewCertSigner(c, hostKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The lab's port is not 22, so the patterns are [host]:port ones.
	const trustCA = "@cert-authority [127.0.0.*]:{port} {ca}\n"
	tests := []struct {
		name       string
		signedBy   ssh.Signer // nil: the host shows its plain key
		knownHosts string
		want       string // "" connects; else part of the refusal
		changed    bool
	}{
		{name: "signed by the trusted CA", signedBy: ca, knownHosts: trustCA},
		{name: "signed by another CA", signedBy: other, knownHosts: trustCA, want: "no authorities"},
		{name: "CA revoked", signedBy: ca, knownHosts: trustCA + "@revoked * " + line(ca.PublicKey()) + "\n", want: "revoked"},
		{name: "host key revoked", signedBy: ca, knownHosts: trustCA + "@revoked * " + line(hostKey.PublicKey()) + "\n", want: "revoked"},
		{name: "plain key of a host known only through a CA", knownHosts: trustCA, want: "is not known"},
		{name: "plain key beside a CA and a different plain key", knownHosts: trustCA + "[127.0.0.1]:{port} " + line(other.PublicKey()) + "\n", want: "HOST KEY CHANGED", changed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sshtest.NewClient(t)
			key := hostKey
			if tt.signedBy != nil {
				key = certified(t, tt.signedBy)
			}
			s := sshtest.NewServer(t, c.Pub, key)
			known := strings.NewReplacer("{port}", fmt.Sprint(s.Port), "{ca}", line(ca.PublicKey())).Replace(tt.knownHosts)
			if err := os.WriteFile(c.KnownHosts, []byte(known), 0o600); err != nil {
				t.Fatal(err)
			}
			o := optsOf(c)
			o.AcceptNewHostKeys = tt.want != "is not known"
			_, err := connect(t, c, s, o)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				return
			}
			var he *HostKeyError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), tt.want) || he.Changed != tt.changed {
				t.Fatalf("got %v (changed %v), want a host key refusal naming %q (changed %v)", err, he != nil && he.Changed, tt.want, tt.changed)
			}
			if after, _ := os.ReadFile(c.KnownHosts); string(after) != known {
				t.Errorf("a refused key was recorded:\n%s", after)
			}
		})
	}
}
