// Command gen builds the lean agent (cmd/etcdplay-agent) for linux on
// the target architecture (GOARCH, else this machine's) and writes it
// gzipped, with its sha256, into internal/leanagent/bin for etcdplay to
// embed. `go generate ./internal/leanagent` runs it from that directory.
package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/etcdplay/etcdplay/internal/hostfile"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "leanagent/gen:", err)
		os.Exit(1)
	}
}

func run() error {
	arch := os.Getenv("GOARCH")
	if arch == "" {
		arch = runtime.GOARCH
	}
	tmp, err := os.MkdirTemp("", "etcdplay-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	exe := filepath.Join(tmp, "etcdplay-agent")
	ldflags := "-s -w"
	if v := os.Getenv("VERSION"); v != "" {
		ldflags += " -X github.com/etcdplay/etcdplay/internal/agent.Version=" + v
	}
	// Run from internal/leanagent by go generate: the module root is two up.
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", exe, "../../cmd/etcdplay-agent")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/etcdplay-agent: %w", err)
	}
	raw, err := os.ReadFile(exe)
	if err != nil {
		return err
	}
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	sum := fmt.Sprintf("%x %d linux/%s\n", sha256.Sum256(raw), len(raw), arch)
	// Unchanged output keeps its mtime, so go build's cache of the
	// embedding packages stays valid.
	for name, b := range map[string][]byte{"bin/etcdplay-agent.gz": gz.Bytes(), "bin/etcdplay-agent.sha256": []byte(sum)} {
		if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, b) {
			continue
		}
		if err := hostfile.WriteAtomic(name, b, 0o644, -1, -1); err != nil {
			return err
		}
	}
	fmt.Printf("lean agent: %s (%.1f MB, %.1f MB gzipped)\n", strings.Fields(sum)[0][:16], float64(len(raw))/1e6, float64(gz.Len())/1e6)
	return nil
}
