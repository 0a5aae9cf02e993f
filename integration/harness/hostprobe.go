package harness

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// UnitProps returns systemd's view of unit on host (`systemctl show -p`).
func (e *Env) UnitProps(t testing.TB, host, unit string, props ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e.Lab.Run(ctx, host, "systemctl show "+unit+" -p "+strings.Join(props, ","))
	if err != nil {
		t.Fatalf("systemctl show on %s: %v", host, err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// HostFile reads a file from host's disk (from the controller, through the
// host's root).
func (e *Env) HostFile(t testing.TB, host, path string) []byte {
	t.Helper()
	root, err := e.Lab.HostRoot(host)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatalf("%s:%s: %v", host, path, err)
	}
	return data
}

// HostCert parses the PEM certificate at path on host.
func (e *Env) HostCert(t testing.TB, host, path string) *x509.Certificate {
	t.Helper()
	return ParseCertPEM(t, e.HostFile(t, host, path), host+":"+path)
}

// ParseCertPEM parses the first certificate of a PEM file; what names the
// file in failure messages.
func ParseCertPEM(t testing.TB, data []byte, what string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", what)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return c
}

// FindOnHost lists the files under dirs of host's disk whose name is name
// or whose content contains any of needles (files up to 16 MiB; name may be
// empty).
func (e *Env) FindOnHost(t testing.TB, host string, dirs []string, name string, needles ...[]byte) []string {
	t.Helper()
	root, err := e.Lab.HostRoot(host)
	if err != nil {
		t.Fatal(err)
	}
	var hits []string
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) || os.IsPermission(err) {
					return nil
				}
				return err
			}
			rel := strings.TrimPrefix(p, root)
			if name != "" && de.Name() == name {
				hits = append(hits, rel)
				return nil
			}
			if len(needles) == 0 || !de.Type().IsRegular() {
				return nil
			}
			if fi, err := de.Info(); err != nil || fi.Size() > 16<<20 {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil // a socket or a file that went away
			}
			for _, n := range needles {
				if len(n) > 0 && bytes.Contains(data, n) {
					hits = append(hits, rel)
					break
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("search %s:%s: %v", host, d, err)
		}
	}
	return hits
}
