// Package s3server runs a real S3-compatible object store for the lab:
// versitygw (github.com/versity/versitygw) with its posix backend, built
// from the Go module proxy like the etcd releases and served on
// 127.0.0.1 only. Backups in the integration tests go to it; nothing
// stands in for S3.
package s3server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/etcdplay/etcdplay/integration/flock"
	"github.com/etcdplay/etcdplay/integration/mirror"
)

// Version is the versitygw release the lab runs.
const Version = "v1.8.0"

const module = "github.com/versity/versitygw/cmd/versitygw"

// Build returns the versitygw binary, building it into the lab cache with
// `go install` the first time (a couple of minutes) and reusing it after.
func Build(ctx context.Context, cacheDir string) (string, error) {
	if cacheDir == "" {
		cacheDir = mirror.DefaultCacheDir()
	}
	dir := filepath.Join(cacheDir, "versitygw-"+Version)
	bin := filepath.Join(dir, "versitygw")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := flock.Lock(ctx, dir+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if st, err := os.Stat(bin); err == nil && st.Mode()&0o111 != 0 {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, "go", "install", module+"@"+Version)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", module, Version, err, out)
	}
	return bin, nil
}

// Server is one running store.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT, or https:// with TLS.
	Endpoint  string
	AccessKey string
	SecretKey string
	// CAFile is the PEM CA that signed the server's certificate (TLS only).
	CAFile string
	// Root is the posix backend's directory: one subdirectory per bucket,
	// one file per object.
	Root string
	cmd  *exec.Cmd
	done chan error
	log  string
}

// Options shape a server.
type Options struct {
	// TLS serves https with a certificate for 127.0.0.1 from a fresh CA.
	TLS bool
}

// Start runs a store on a free 127.0.0.1 port with its data under dir and
// fresh root credentials, and returns when it accepts connections.
func Start(ctx context.Context, bin, dir string, opt Options) (*Server, error) {
	s := &Server{AccessKey: "LAB" + randHex(8), SecretKey: randHex(20), Root: filepath.Join(dir, "root"), done: make(chan error, 1), log: filepath.Join(dir, "versitygw.log")}
	if err := os.MkdirAll(s.Root, 0o700); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"--access", s.AccessKey, "--secret", s.SecretKey, "--port", addr, "--quiet"}
	scheme := "http"
	if opt.TLS {
		ca, cert, key, err := selfSigned(dir)
		if err != nil {
			return nil, err
		}
		s.CAFile = ca
		args = append(args, "--cert", cert, "--key", key)
		scheme = "https"
	}
	args = append(args, "posix", s.Root)
	s.Endpoint = scheme + "://" + addr
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { s.done <- s.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case err := <-s.done:
			b, _ := os.ReadFile(s.log)
			return nil, fmt.Errorf("versitygw exited before serving: %v\n%s", err, b)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("versitygw did not listen on %s within 30s (log %s)", addr, s.log)
		}
	}
}

// Stop kills the server and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// MakeBucket creates a bucket as the posix backend stores it: a directory
// under the root.
func (s *Server) MakeBucket(name string) error {
	return os.Mkdir(filepath.Join(s.Root, name), 0o700)
}

// CredentialsFile writes the root credentials in the AWS shared
// credentials format, mode 0600, and returns its path.
func (s *Server) CredentialsFile(dir string) (string, error) {
	p := filepath.Join(dir, "s3-credentials")
	body := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s.AccessKey, s.SecretKey)
	return p, os.WriteFile(p, []byte(body), 0o600)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// selfSigned writes a CA and a server certificate for 127.0.0.1 it signed.
func selfSigned(dir string) (caFile, certFile, keyFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcdplay lab S3 CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", "", err
	}
	caFile, certFile, keyFile = filepath.Join(dir, "s3-ca.pem"), filepath.Join(dir, "s3-cert.pem"), filepath.Join(dir, "s3-key.pem")
	err = errors.Join(
		os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644),
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	return caFile, certFile, keyFile, err
}
