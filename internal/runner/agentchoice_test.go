package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/etcdplay/etcdplay/internal/transport"
	"github.com/etcdplay/etcdplay/modules"
)

// fullOnlyModule is a host-side module only the full agent serves.
type fullOnlyModule struct{ failModule }

func (fullOnlyModule) NeedsFullAgent() {}

func init() { modules.Register("sshtest_full_only", fullOnlyModule{}) }

// TestLeanAgentUnlessAHostNeedsTheFullOne: with a lean agent given, hosts
// get it, except a host that runs a modules.FullAgentOnly module, which
// gets the full agent (this test binary). Which one each host got is
// read from its agent directory.
func TestLeanAgentUnlessAHostNeedsTheFullOne(t *testing.T) {
	inv, opts, servers := walkLab(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	// The "lean" agent: this binary with bytes after its ELF image (it
	// still runs), so its content hash, and its name on a host, differ.
	lean := filepath.Join(t.TempDir(), "lean-agent")
	if err := os.WriteFile(lean, append(b, "lean"...), 0o755); err != nil {
		t.Fatal(err)
	}
	leanSum, err := fileSum(lean)
	if err != nil {
		t.Fatal(err)
	}
	fullSum, err := fileSum(self)
	if err != nil {
		t.Fatal(err)
	}
	leanBin, fullBin := agentFileName(leanSum), agentFileName(fullSum)
	opts.LeanAgent = transport.AgentFile{Path: lean, SHA256: leanSum}
	c := compile(t, inv, `
- hosts: all
  tasks:
    - sshtest_set: {have: a, want: a}
- hosts: h2
  tasks:
    - sshtest_full_only: {}
`)
	got := runResults(t, c, inv, opts)
	for _, h := range []string{"h1", "h2", "h3"} {
		if got["sshtest_set@"+h] == modules.StatusFailed {
			t.Fatalf("%s failed: %v", h, got)
		}
	}
	for i, s := range servers {
		host := []string{"h1", "h2", "h3"}[i]
		want, other := leanBin, fullBin
		if host == "h2" {
			want, other = fullBin, leanBin
		}
		dir := filepath.Join(s.Home, ".cache", "etcdplay")
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Errorf("%s: no %s: %v", host, want, err)
		}
		if _, err := os.Stat(filepath.Join(dir, other)); err == nil {
			t.Errorf("%s has %s too", host, other)
		}
	}
}

// agentFileName is the name the transport gives an agent file on a
// host: its content hash.
func agentFileName(sum string) string { return "etcdplay-agent-" + sum[:16] }

func fileSum(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
