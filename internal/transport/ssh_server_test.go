package transport

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/transport/sshtest"
)

func TestMain(m *testing.M) {
	sshtest.Main(m)
}

func targetOf(s *sshtest.Server) Target {
	return Target{Name: fmt.Sprintf("h%d", s.Port), Addr: s.Addr, Port: s.Port, User: "tester"}
}

func optsOf(c *sshtest.Client) ConnectOptions {
	return ConnectOptions{KnownHostsFile: c.KnownHosts, Timeout: 5 * time.Second}
}

func connect(t *testing.T, c *sshtest.Client, s *sshtest.Server, o ConnectOptions) (*Conn, error) {
	t.Helper()
	tg := targetOf(s)
	tg.KeyFile = c.KeyFile
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := Connect(ctx, tg, o)
	if err == nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, err
}
