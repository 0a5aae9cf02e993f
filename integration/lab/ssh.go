package lab

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// newKeyPair returns an ed25519 key as an OpenSSH private key file and its
// public key.
func newKeyPair(comment string) (privPEM []byte, pub ssh.PublicKey, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(sk, comment)
	if err != nil {
		return nil, nil, err
	}
	pub, err = ssh.NewPublicKey(pk)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(block), pub, nil
}

// writeKnownHosts writes one line per host, the host's current key.
func (l *Lab) writeKnownHosts() error {
	var b strings.Builder
	for _, h := range l.hosts {
		if h.hostKey == nil {
			continue
		}
		b.WriteString(knownhosts.Line([]string{h.Addr}, h.hostKey))
		b.WriteByte('\n')
	}
	return writeFileAtomic(l.KnownHostsFile, []byte(b.String()), 0o644)
}

func (l *Lab) clientConfig() (*ssh.ClientConfig, error) {
	raw, err := os.ReadFile(l.KeyFile)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", l.KeyFile, err)
	}
	hk, err := knownhosts.New(l.KnownHostsFile)
	if err != nil {
		return nil, err
	}
	return &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hk,
		Timeout:         5 * time.Second,
	}, nil
}

// Dial opens an SSH connection to host as root, checking its host key
// against the lab's known_hosts.
func (l *Lab) Dial(ctx context.Context, host string) (*ssh.Client, error) {
	h, err := l.host(host)
	if err != nil {
		return nil, err
	}
	cfg, err := l.clientConfig()
	if err != nil {
		return nil, err
	}
	return dialSSH(ctx, h.Addr, cfg)
}

func dialSSH(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	d := net.Dialer{Timeout: cfg.Timeout}
	target := net.JoinHostPort(addr, "22")
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(cfg.Timeout))
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, target, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// MustRun is Run for a test's setup and checks: a failure ends the test.
func (l *Lab) MustRun(t testing.TB, host, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := l.Run(ctx, host, cmd)
	if err != nil {
		t.Fatalf("%s: %v", host, err)
	}
	return out
}

// Run runs cmd through the shell of host as root over SSH and returns its
// combined output. A non-zero exit is an error (*ssh.ExitError inside).
func (l *Lab) Run(ctx context.Context, host, cmd string) (string, error) {
	c, err := l.Dial(ctx, host)
	if err != nil {
		return "", fmt.Errorf("ssh %s: %w", host, err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("ssh %s: %w", host, err)
	}
	defer s.Close()
	// One writer for both streams, locked: x/crypto/ssh copies stdout and
	// stderr from two goroutines, and a shared bytes.Buffer loses output.
	var out lockedBuffer
	s.Stdout, s.Stderr = &out, &out
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		c.Close()
		err = ctx.Err()
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s on %s: %w: %s", cmd, host, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// bootDone is what a host runs to say it is ready: boot finished (not only
// sshd up) and /run/nologin gone. Until systemd-user-sessions removes it,
// pam_nologin lets root in but refuses every other user ("Access denied
// ... by PAM account configuration"). A container may boot "degraded",
// which is as ready as it gets. When not ready it says why, which is what
// a boot that never finishes reports.
const bootDone = `state=$(systemctl is-system-running 2>&1)
case "$state" in initializing|starting)
	echo "boot $state; jobs:"; systemctl list-jobs --no-pager 2>&1 | head -20; exit 1;;
esac
test ! -e /run/nologin && exit 0
echo "boot $state, /run/nologin present; failed units:"; systemctl --failed --no-legend --no-pager 2>&1 | head -20
exit 1`

// waitSSH polls until host accepts the lab key and has finished booting
// (bootDone), with its current host key checked.
func (l *Lab) waitSSH(parent context.Context, h *hostState, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var last error
	for {
		cfg, err := l.clientConfig()
		if err != nil {
			return err
		}
		c, err := dialSSH(ctx, h.Addr, cfg)
		if err == nil {
			s, serr := c.NewSession()
			if serr == nil {
				stop := context.AfterFunc(ctx, func() { c.Close() })
				out, rerr := s.CombinedOutput(bootDone)
				stop()
				if serr = rerr; serr != nil && len(out) > 0 {
					serr = fmt.Errorf("%w: %s", rerr, bytes.TrimSpace(out))
				}
				s.Close()
			}
			c.Close()
			if serr == nil {
				return nil
			}
			err = serr
		}
		var keyErr *knownhosts.KeyError
		if errors.As(err, &keyErr) && len(keyErr.Want) > 0 {
			// A wrong key will not fix itself by waiting.
			return fmt.Errorf("host %s (%s): %w", h.Name, h.Addr, err)
		}
		last = err
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("host %s (%s): waiting for SSH: %w", h.Name, h.Addr, parent.Err())
			}
			return fmt.Errorf("host %s (%s) did not answer SSH within %s: %w (console log: %s)", h.Name, h.Addr, timeout, last, h.consoleLog())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readKnownHosts maps each address in a known_hosts file to its key.
func readKnownHosts(path string) (map[string]ssh.PublicKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys := map[string]ssh.PublicKey{}
	for len(bytes.TrimSpace(raw)) > 0 {
		_, hosts, key, _, rest, err := ssh.ParseKnownHosts(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, h := range hosts {
			keys[h] = key
		}
		raw = rest
	}
	return keys, nil
}
