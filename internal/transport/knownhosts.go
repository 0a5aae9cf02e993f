package transport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError is a host key we refused: unknown (and accepting new keys was
// not asked for) or, always refused, different from the one on record.
type HostKeyError struct {
	// Host is the address as looked up in known_hosts ("host" or "[host]:port").
	Host string
	File string
	// Changed is true when known_hosts holds a different key for Host.
	Changed bool
	// Key is the key the host presented, "type SHA256:fingerprint".
	Key string
	// Known lists "file:line" of the entries that did not match.
	Known []string
	// Err is set when the key could not be recorded.
	Err error
}

func (e *HostKeyError) Error() string {
	switch {
	case e.Err != nil:
		return fmt.Sprintf("host key of %s (%s): %v", e.Host, e.Key, e.Err)
	case e.Changed:
		return fmt.Sprintf("HOST KEY CHANGED for %s: it presented %s, which is not the key recorded at %v. "+
			"Someone may be intercepting the connection. If the host was legitimately reinstalled, "+
			"remove the old key with `ssh-keygen -f %s -R '%s'` and run again with --accept-new-host-keys",
			e.Host, e.Key, e.Known, e.File, e.Host)
	default:
		return fmt.Sprintf("host key of %s is not known (%s not in %s); verify it and run again with "+
			"--accept-new-host-keys to record it, or add it to %s yourself (ssh-keyscan)",
			e.Host, e.Key, e.File, e.File)
	}
}

func (e *HostKeyError) Unwrap() error { return e.Err }

// hostKeys checks host keys against one known_hosts file and, when asked,
// records unknown ones.
type hostKeys struct {
	file   string
	accept bool
	hash   bool
}

// appendMu serializes appends within this process; flock serializes them
// with other processes (ssh, other etcdplay runs).
var appendMu sync.Mutex

// SystemKnownHosts is read besides the user's file, as ssh reads its
// GlobalKnownHostsFile: hosts an administrator vouched for machine-wide.
// It is never written.
var SystemKnownHosts = "/etc/ssh/ssh_known_hosts"

// load parses the user's file and the system one. A key either lists is
// known; a key neither lists, while one lists another key for the host,
// is a changed key; a key either marks @revoked is refused.
func (h *hostKeys) load() (ssh.HostKeyCallback, error) {
	user, err := loadKnownHosts(h.file)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(SystemKnownHosts); err != nil {
		return user, nil
	}
	system, err := loadKnownHosts(SystemKnownHosts)
	if err != nil {
		return nil, err
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		var want []knownhosts.KnownKey
		known := false
		for _, cb := range []ssh.HostKeyCallback{user, system} {
			err := cb(host, remote, key)
			var ke *knownhosts.KeyError
			switch {
			case err == nil:
				known = true
			case errors.As(err, &ke):
				want = append(want, ke.Want...)
			default:
				return err // revoked
			}
		}
		if known {
			return nil
		}
		return &knownhosts.KeyError{Want: want}
	}, nil
}

// loadKnownHosts parses one file; a missing file knows no hosts. A line
// this client cannot parse (a key type it does not know, a typo) is
// skipped, as ssh does, instead of making every host unknown.
//
// A mismatch lists only the plain keys on record for the host: an
// @cert-authority line vouches for certificates, so a host known only
// through a CA is unknown when it shows a plain key, not "changed", and
// the handshake asks it for a certificate (see hostKeyAlgorithms).
func loadKnownHosts(file string) (ssh.HostKeyCallback, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", file, err)
	}
	// knownhosts reads only files: give it the parsable lines, with the
	// others blanked so line numbers (in "HOST KEY CHANGED" messages)
	// still point into the real file, and name the real file in them.
	tmp, err := os.CreateTemp("", "etcdplay-known_hosts-*")
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", file, err)
	}
	defer os.Remove(tmp.Name())
	lines, authorities := parsableLines(data)
	_, werr := tmp.Write(lines)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", file, werr)
	}
	inner, err := knownhosts.New(tmp.Name())
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %w", file, err)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := inner(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			plain := ke.Want[:0]
			for _, w := range ke.Want {
				if !authorities[w.Line] {
					w.Filename = file
					plain = append(plain, w)
				}
			}
			ke.Want = plain
		}
		return err
	}, nil
}

// parsableLines is data with every line x/crypto's known_hosts parser
// would refuse replaced by an empty one, and the numbers of the
// @cert-authority lines.
func parsableLines(data []byte) ([]byte, map[int]bool) {
	authorities := map[int]bool{}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, l := range lines {
		// Only lines ssh parses are kept, trimmed of the whitespace
		// (\v, \f, \r) knownhosts would not trim; blanks and comments
		// become empty lines, so line numbers stay right.
		marker, _, _, _, _, err := ssh.ParseKnownHosts(l)
		marked := bytes.HasPrefix(bytes.TrimSpace(l), []byte("@"))
		if err != nil || (marked && marker != "cert-authority" && marker != "revoked") {
			lines[i] = []byte("\n")
			continue
		}
		authorities[i+1] = marker == "cert-authority"
		lines[i] = append(bytes.TrimSpace(l), '\n')
	}
	return bytes.Join(lines, nil), authorities
}

func describeKey(k ssh.PublicKey) string {
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// callback returns the HostKeyCallback for one host, built on the parsed
// file cb.
func (h *hostKeys) callback(cb ssh.HostKeyCallback) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return &HostKeyError{Host: knownhosts.Normalize(hostname), File: h.file, Key: describeKey(key), Err: err}
		}
		herr := &HostKeyError{Host: knownhosts.Normalize(hostname), File: h.file, Key: describeKey(key)}
		if len(ke.Want) > 0 {
			herr.Changed = true
			for _, w := range ke.Want {
				herr.Known = append(herr.Known, fmt.Sprintf("%s:%d", w.Filename, w.Line))
			}
			return herr
		}
		if !h.accept {
			return herr
		}
		return h.record(hostname, remote, key)
	}
}

// record appends key for hostname under an exclusive lock, unless another
// connection recorded it meanwhile.
func (h *hostKeys) record(hostname string, remote net.Addr, key ssh.PublicKey) error {
	herr := &HostKeyError{Host: knownhosts.Normalize(hostname), File: h.file, Key: describeKey(key)}
	appendMu.Lock()
	defer appendMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(h.file), 0o700); err != nil {
		herr.Err = err
		return herr
	}
	f, err := os.OpenFile(h.file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		herr.Err = err
		return herr
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		herr.Err = fmt.Errorf("locking %s: %w", h.file, err)
		return herr
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	// Re-read under the lock: someone may have recorded this host since.
	cb, err := h.load()
	if err != nil {
		herr.Err = err
		return herr
	}
	if err := cb(hostname, remote, key); err == nil {
		return nil
	} else if ke := (*knownhosts.KeyError)(nil); errors.As(err, &ke) && len(ke.Want) > 0 {
		herr.Changed = true
		for _, w := range ke.Want {
			herr.Known = append(herr.Known, fmt.Sprintf("%s:%d", w.Filename, w.Line))
		}
		return herr
	}
	name := knownhosts.Normalize(hostname)
	if h.hash {
		name = knownhosts.HashHostname(name)
	}
	line := knownhosts.Line([]string{name}, key) + "\n"
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := io.WriteString(f, line); err != nil {
		herr.Err = fmt.Errorf("recording in %s: %w", h.file, err)
		return herr
	}
	if err := f.Sync(); err != nil {
		herr.Err = fmt.Errorf("recording in %s: %w", h.file, err)
		return herr
	}
	return nil
}

var (
	probeKeyOnce sync.Once
	probeKey     ssh.PublicKey
)

// hostKeyAlgorithms lists, in preference order, the signature algorithms
// of the keys known_hosts holds for hostname, so the handshake asks the
// host for a key we can verify rather than its default one (a host with an
// ed25519 and an RSA key, where we only know the RSA one, would otherwise
// fail as "changed"). Nil when the host is unknown: any key type will do.
func hostKeyAlgorithms(cb ssh.HostKeyCallback, hostname string) []string {
	probeKeyOnce.Do(func() {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err == nil {
			probeKey, _ = ssh.NewPublicKey(pub)
		}
	})
	if probeKey == nil {
		return nil
	}
	// A key nobody has makes the callback list every key it knows for
	// the host.
	err := cb(hostname, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, probeKey)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, s := range a {
			if !seen[s] {
				seen[s] = true
				algos = append(algos, s)
			}
		}
	}
	for _, w := range ke.Want {
		switch t := w.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}
