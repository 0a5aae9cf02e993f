package etcd_snapshot

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

// Prove shows a snapshot restores: etcdutl (from binDir) restores it into
// a scratch dir under scratchRoot, a throw-away etcd serves it on
// 127.0.0.1 only (ports of its own, not joined to anything), and it must
// answer with want's revision and key count. Everything is removed after.
// It returns what the restored etcd served.
func Prove(ctx context.Context, binDir, snapshot string, want store.Meta, scratchRoot string, timeout time.Duration) (rev, keys int64, err error) {
	if err := os.MkdirAll(scratchRoot, 0o700); err != nil {
		return 0, 0, err
	}
	scratch, err := os.MkdirTemp(scratchRoot, time.Now().UTC().Format(store.TimeLayout)+"-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(scratch)
	ports, err := freePorts(2)
	if err != nil {
		return 0, 0, err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	data := filepath.Join(scratch, "data")
	restore := exec.CommandContext(ctx, filepath.Join(binDir, "etcdutl"), "snapshot", "restore", snapshot,
		"--data-dir", data, "--name", "verify", "--initial-cluster", "verify="+peer,
		"--initial-cluster-token", "etcdplay-verify", "--initial-advertise-peer-urls", peer)
	if out, err := restore.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("etcdutl snapshot restore: %w: %s", err, lastLines(out, 5))
	}
	var log bytes.Buffer
	srv := exec.Command(filepath.Join(binDir, "etcd"), "--name", "verify", "--data-dir", data,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "verify="+peer, "--listen-metrics-urls", "")
	srv.Stdout, srv.Stderr = &log, &log
	if err := srv.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	defer func() {
		_ = srv.Process.Kill()
		<-done
	}()
	rev, keys, err = served(ctx, client, want.Revision, timeout, done)
	if err != nil {
		return 0, 0, fmt.Errorf("%w\netcd's log:\n%s", err, lastLines(log.Bytes(), 10))
	}
	if rev != want.Revision || keys != int64(want.Keys) {
		return rev, keys, fmt.Errorf("the restored etcd serves revision %d with %d keys, the backup records %d and %d", rev, keys, want.Revision, want.Keys)
	}
	return rev, keys, nil
}

// served waits for the throw-away etcd and reads its revision and the
// number of keys at the backup's revision.
func served(ctx context.Context, endpoint string, rev int64, timeout time.Duration, exited <-chan error) (int64, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := cli.Get(rctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
		rcancel()
		if err == nil {
			return resp.Header.Revision, resp.Count, nil
		}
		select {
		case e := <-exited:
			return 0, 0, fmt.Errorf("the restored etcd exited: %v", e)
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("the restored etcd did not serve within %s: %v", timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
