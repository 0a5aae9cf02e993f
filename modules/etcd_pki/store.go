package etcd_pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/etcdplay/etcdplay/internal/hostfile"
)

// store guards one cluster's PKI directory on the controller. Plans of
// several hosts run in parallel in one process: they must agree on one CA
// (and one set of shared client certificates) even before anything is on
// disk, so what a plan decides to create is kept here as pending until an
// Apply writes it. Readers and writers of pending hold mu.
type store struct {
	mu      sync.Mutex
	dir     string
	pending map[string]Pair // cert path -> pair not yet written
	// rotated lists the certificates a rotation (rotate: true) re-issued
	// in this process: a shared client certificate is rotated once per
	// run, not once per member.
	rotated map[string]bool
	// playChecked is set once every host of the play was checked for a
	// CA it already trusts, before this process first makes a new CA.
	playChecked bool
}

var (
	storesMu sync.Mutex
	stores   = map[string]*store{}
)

func storeFor(dir string) *store {
	storesMu.Lock()
	defer storesMu.Unlock()
	s, ok := stores[dir]
	if !ok {
		s = &store{dir: dir, pending: map[string]Pair{}, rotated: map[string]bool{}}
		stores[dir] = s
	}
	return s
}

// read returns the pair at certPath/keyPath on disk, or ok=false when
// either is missing.
func readPair(certPath, keyPath string) (Pair, bool, error) {
	crt, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return Pair{}, false, nil
	}
	if err != nil {
		return Pair{}, false, err
	}
	key, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return Pair{}, false, nil
	}
	if err != nil {
		return Pair{}, false, err
	}
	return Pair{Cert: crt, Key: key}, true, nil
}

// lockDir takes an exclusive flock on dir/.lock so two etcdplay processes
// sharing a state dir do not interleave writes. The caller holds s.mu too.
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// writePair writes the key (0600) before the certificate (0644), each
// atomically, so a certificate on disk always has its key beside it.
func writePair(certPath, keyPath string, p Pair) error {
	if err := writeAtomic(keyPath, p.Key, 0o600); err != nil {
		return err
	}
	return writeAtomic(certPath, p.Cert, 0o644)
}

func writeAtomic(p string, data []byte, mode os.FileMode) error {
	if cur, err := os.ReadFile(p); err == nil && bytes.Equal(cur, data) {
		return os.Chmod(p, mode)
	}
	return hostfile.WriteAtomic(p, data, mode, -1, -1)
}
