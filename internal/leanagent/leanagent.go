// Package leanagent carries the lean agent (cmd/etcdplay-agent) inside
// etcdplay and puts it where the transport can send it: hosts get 2.3 MB
// gzipped instead of etcdplay's 11, and unpack 5 MB instead of 28, on
// every cold connect.
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
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/internal/transport"
	"github.com/etcdplay/etcdplay/internal/usercache"
)

//go:embed bin
var embedded embed.FS

// Agent is the lean agent as the build recorded it.
type Agent struct {
	SHA256   string
	Size     int64
	Platform string // "linux/amd64"
	// gz reads the gzipped agent out of the binary, which copies 2.3 MB:
	// about 20 ms that a run whose hosts and user cache already hold the
	// agent never spends.
	gz func() []byte
}

const gzName = "bin/etcdplay-agent.gz"

// Embedded returns the lean agent this build carries, or nil.
func Embedded() *Agent {
	sum, err := embedded.ReadFile("bin/etcdplay-agent.sha256")
	if err != nil {
		return nil
	}
	if _, err := fs.Stat(embedded, gzName); err != nil {
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
	return &Agent{SHA256: f[0], Size: size, Platform: f[2], gz: sync.OnceValue(func() []byte {
		gz, _ := embedded.ReadFile(gzName) // there: stat'ed above
		return gz
	})}
}

var (
	fileOnce sync.Once
	file     *transport.AgentFile
	fileErr  error
)

// Unpacked is the lean agent as an executable file in the user's cache
// dir, unpacked from the build once, with the digest it was verified
// against and the gzipped bytes it came from (what a cold host is sent,
// read only when one is); nil when this build embeds none or there is no
// cache dir, and the caller sends etcdplay itself.
func Unpacked() (*transport.AgentFile, error) {
	fileOnce.Do(func() {
		a := Embedded()
		dir := usercache.Dir()
		if a == nil || dir == "" {
			return
		}
		var p string
		if p, fileErr = a.unpack(dir); fileErr == nil {
			file = &transport.AgentFile{Path: p, SHA256: a.SHA256, Gzipped: a.gz}
		}
	})
	return file, fileErr
}

// unpack writes the agent to dir unless it is there already. A copy is
// trusted when its stat stamp is the one recorded (in NAME.ok) when it was
// last hashed, so a warm run costs a stat, not hashing 5 MB; any write to
// the copy moves its stamp, and it is hashed again and replaced if it
// differs.
func (a *Agent) unpack(dir string) (string, error) {
	p := filepath.Join(dir, "etcdplay-agent-"+a.SHA256[:16])
	okFile := p + ".ok"
	if rec, err := os.ReadFile(okFile); err == nil && string(rec) == a.stampRecord(p) {
		return p, nil
	}
	if sum, err := hostfile.FileSumHex(p); err == nil && sum == a.SHA256 {
		a.recordStamp(p)
		return p, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(a.gz()))
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
	a.recordStamp(p)
	// Keep the few newest builds' agents, not one per build ever run.
	usercache.Prune(dir, "etcdplay-agent-????????????????", keepBuilds, p)
	usercache.Prune(dir, "etcdplay-agent-*.ok", keepBuilds, okFile)
	return p, nil
}

// stampRecord is what NAME.ok holds for the copy at p as it is now; it
// never matches when p cannot be stat'ed.
func (a *Agent) stampRecord(p string) string {
	st := hostfile.Stamp(p)
	if st == "" {
		return "\x00"
	}
	return a.SHA256 + " " + st + "\n"
}

// recordStamp is best effort: without it the next run hashes the copy.
func (a *Agent) recordStamp(p string) {
	_ = hostfile.WriteAtomic(p+".ok", []byte(a.stampRecord(p)), 0o600, -1, -1)
}

const keepBuilds = 3
