package transport

import (
	"crypto/ed25519"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// FuzzKnownHosts: whatever else a known_hosts file holds (other keys, key
// types this client does not know, garbage), the line for a host is
// honoured: its key is accepted, unless something in the file revokes
// keys. Never a panic.
func FuzzKnownHosts(f *testing.F) {
	f.Add([]byte("# comment\n"))
	f.Add([]byte("other.example ssh-unknown AAAA\n"))
	f.Add([]byte("@cert-authority *.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"))
	f.Add([]byte("|1|c2FsdA==|aGFzaA== ssh-rsa AAAAB3\n"))
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		f.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		f.Fatal(err)
	}
	good := knownhosts.Line([]string{"good.example"}, key)
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "known_hosts")
		body := append(append([]byte(good+"\n"), data...), '\n')
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		cb, err := loadKnownHosts(p)
		if err != nil {
			t.Fatalf("a readable file is an error: %v", err)
		}
		if err := cb("good.example:22", addr, key); err != nil && !strings.Contains(string(data), "@revoked") {
			t.Fatalf("the host's own line is not honoured: %v", err)
		}
	})
}
