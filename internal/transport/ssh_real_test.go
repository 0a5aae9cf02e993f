package transport

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/modules"
)

// TestRealSSHD runs against a real OpenSSH server when one is named:
//
//	ETCDPLAY_TEST_SSHD=root@127.0.0.1:2299 ETCDPLAY_TEST_SSHD_KEY=/path/key \
//	ETCDPLAY_TEST_SSHD_KNOWN_HOSTS=/path/known_hosts go test -run RealSSHD ./internal/runner/
//
// It is skipped otherwise; the in-process server covers the same paths in
// every run, this checks them against sshd and its sftp server.
func TestRealSSHD(t *testing.T) {
	spec := os.Getenv("ETCDPLAY_TEST_SSHD")
	if spec == "" {
		t.Skip("ETCDPLAY_TEST_SSHD not set")
	}
	jt, err := parseJump(spec, "root")
	if err != nil {
		t.Fatal(err)
	}
	tg := Target{Name: "real", Addr: jt.Addr, Port: jt.Port, User: jt.User, KeyFile: os.Getenv("ETCDPLAY_TEST_SSHD_KEY")}
	o := ConnectOptions{KnownHostsFile: os.Getenv("ETCDPLAY_TEST_SSHD_KNOWN_HOSTS"), RemoteDir: t.TempDir()}
	ctx := context.Background()

	start := time.Now()
	conn, err := Connect(ctx, tg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cold connect (upload): %v, facts %+v", time.Since(start), conn.Facts())
	conn.Close()
	start = time.Now()
	conn, err = Connect(ctx, tg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Logf("warm connect: %v", time.Since(start))

	const n = 1000
	start = time.Now()
	for range n {
		if r, err := conn.Do(ctx, "sshtest_set", modules.Args{"want": "a", "have": "a"}, false); err != nil || r.Status != modules.StatusOK {
			t.Fatalf("Do: %+v %v", r, err)
		}
	}
	t.Logf("%d sequential no-op Do: %v (%v each)", n, time.Since(start), time.Since(start)/n)

	dst := filepath.Join(t.TempDir(), "f")
	if err := conn.Upload(ctx, strings.NewReader("real\n"), dst, 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := conn.Download(ctx, dst, &buf); err != nil || buf.String() != "real\n" {
		t.Fatalf("download %q %v", buf.String(), err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	nc, err := conn.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}
