package etcd_service

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// silentListener binds a port and never accepts from it: what a peer port
// looks like while its etcd is still in its own bootstrap check (the
// kernel completes the TCP handshake from the listen backlog).
func silentListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
}

// closedPort is a port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// mtlsServer serves TLS and, like an etcd peer port, demands a client
// certificate this probe does not have.
func mtlsServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

// bareTLSServer serves TLS the way etcd's peer port does, with no HTTP
// server in front of the handshake (cmux reads the first bytes through
// the TLS listener): bytes that are no TLS hello end the connection.
func bareTLSServer(t *testing.T) string {
	t.Helper()
	// httptest's built-in certificate, taken from a server of its own.
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	cert := srv.TLS.Certificates[0]
	srv.Close()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Read(make([]byte, 1))
			}()
		}
	}()
	return l.Addr().String()
}

func TestProbePeer(t *testing.T) {
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	tests := []struct {
		name string
		url  string
		want peerState
	}{
		{"nothing listens", "https://" + closedPort(t), peerAbsent},
		{"bound, not served (https)", "https://" + silentListener(t), peerSilent},
		{"bound, not served (http)", "http://" + silentListener(t), peerSilent},
		{"served, client certificate required", "https://" + mtlsServer(t), peerServing},
		{"served by a bare TLS listener", "https://" + bareTLSServer(t), peerServing},
		{"served over http", plain.URL, peerServing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := probePeer(context.Background(), tt.url, time.Second); got != tt.want {
				t.Errorf("probePeer(%s) = %v, want %v", tt.url, got, tt.want)
			}
		})
	}
}

func TestWaitForPeers(t *testing.T) {
	// A peer that starts serving while we wait is waited for, and no longer.
	addr := closedPort(t)
	go func() {
		time.Sleep(150 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return // the port was taken meanwhile; the wait below then fails
		}
		srv := &http.Server{Handler: http.NotFoundHandler()}
		t.Cleanup(func() { srv.Close() })
		go srv.Serve(l)
	}()
	if left := waitForPeers(context.Background(), []string{"http://" + addr}, 5*time.Second); len(left) != 0 {
		t.Errorf("still waiting for %v", left)
	}

	// One that never answers is given up on after the limit.
	silent := "https://" + silentListener(t)
	start := time.Now()
	left := waitForPeers(context.Background(), []string{silent}, 300*time.Millisecond)
	if len(left) != 1 || left[0] != silent {
		t.Errorf("left %v, want %v", left, []string{silent})
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("waited %s past a 300ms limit", d)
	}
}

func TestNewClusterMember(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "etcd.yaml")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("name: etcd1\ninitial-cluster-state: new\n")
	if !initialClusterNew(cfg) {
		t.Error("initial-cluster-state new: not new")
	}
	write("name: etcd4\ninitial-cluster-state: existing\n")
	if initialClusterNew(cfg) {
		t.Error("initial-cluster-state existing: new")
	}
	write("name: etcd1\n")
	if !initialClusterNew(cfg) {
		t.Error("unset (etcd's default is new): not new")
	}
	if initialClusterNew(filepath.Join(dir, "missing.yaml")) {
		t.Error("no config file: new")
	}

	data := filepath.Join(dir, "data")
	if memberDataExists(data) {
		t.Error("empty data dir has a member")
	}
	if err := os.MkdirAll(filepath.Join(data, "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if !memberDataExists(data) {
		t.Error("data dir with member/ has none")
	}
}
