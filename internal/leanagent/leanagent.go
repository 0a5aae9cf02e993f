// Package leanagent carries the lean agent (cmd/etcdplay-agent) inside
// etcdplay and puts it where the transport can send it: hosts get 3 MB
// gzipped instead of etcdplay's 11, and unpack and hash 7 MB instead of
// 28, on every cold connect.
//
// The agent is embedded as build output: `make build` runs
// `go generate ./internal/leanagent` before building etcdplay. A plain
// `go build ./cmd/etcdplay` embeds none, and etcdplay then sends itself,
// as it did before this package existed.
package leanagent

//go:generate go run ./gen

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/internal/usercache"
)

//go:embed bin
var embedded embed.FS

// Agent is the lean agent as the build recorded it.
type Agent struct {
	SHA256   string
	Size     int64
	Platform string // "linux/amd64"
	gz       []byte
}

// Embedded returns the lean agent this build carries, or nil.
func Embedded() *Agent {
	gz, err1 := embedded.ReadFile("bin/etcdplay-agent.gz")
	sum, err2 := embedded.ReadFile("bin/etcdplay-agent.sha256")
	if err1 != nil || err2 != nil {
		return nil
	}
	f := strings.Fields(string(sum))
	if len(f) != 3 {
		return nil
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return nil
	}
	return &Agent{SHA256: f[0], Size: size, Platform: f[2], gz: gz}
}

var (
	pathOnce sync.Once
	path     string
	pathErr  error
)

// Path is the lean agent as an executable file in the user's cache dir,
// unpacked from the build once and checked against its recorded sha256
// on every run; "" when this build embeds none or there is no cache dir,
// and the caller sends etcdplay itself.
func Path() (string, error) {
	pathOnce.Do(func() {
		a := Embedded()
		dir := usercache.Dir()
		if a == nil || dir == "" {
			return
		}
		path, pathErr = a.unpack(dir)
	})
	return path, pathErr
}

func (a *Agent) unpack(dir string) (string, error) {
	p := filepath.Join(dir, "etcdplay-agent-"+a.SHA256[:16])
	if sum, err := hostfile.FileSumHex(p); err == nil && sum == a.SHA256 {
		return p, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.gz))
	if err != nil {
		return "", fmt.Errorf("lean agent: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return "", fmt.Errorf("lean agent: %w", err)
	}
	if hostfile.SumHex(raw) != a.SHA256 || int64(len(raw)) != a.Size {
		return "", fmt.Errorf("lean agent: the embedded copy does not match its recorded sha256 %s (rebuild etcdplay with make build)", a.SHA256)
	}
	if err := hostfile.WriteAtomic(p, raw, 0o755, -1, -1); err != nil {
		return "", fmt.Errorf("lean agent: %w", err)
	}
	// Keep the few newest builds' agents, not one per build ever run.
	usercache.Prune(dir, "etcdplay-agent-*", keepBuilds, p)
	return p, nil
}

const keepBuilds = 3
