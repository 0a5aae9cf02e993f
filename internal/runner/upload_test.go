package runner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestUnamePlatform(t *testing.T) {
	tests := map[string]string{
		"Linux x86_64":  "linux/amd64",
		"Linux aarch64": "linux/arm64",
		"Linux armv7l":  "linux/arm",
		"Linux i686":    "linux/386",
		"Linux riscv64": "linux/riscv64",
		"Darwin arm64":  "darwin/arm64",
		"garbage":       "unknown/garbage",
	}
	for in, want := range tests {
		if got := unamePlatform(in); got != want {
			t.Errorf("unamePlatform(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAgentBinFor(t *testing.T) {
	exe, _ := os.Executable()
	native, err := loadAgentBin(exe)
	if err != nil {
		t.Fatal(err)
	}
	if native.platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("platform of the test binary read as %s", native.platform)
	}
	other := "linux/s390x"
	if runtime.GOARCH == "s390x" {
		other = "linux/amd64"
	}
	envName := "ETCDPLAY_AGENT_" + strings.ToUpper(strings.ReplaceAll(other, "/", "_"))

	t.Setenv(envName, "")
	_, err = agentBinFor(&ConnectOptions{}, "etcd9", other, native)
	var pe *PlatformError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "--agent-binary "+other+"=PATH") || !strings.Contains(err.Error(), envName+"=PATH") || !strings.Contains(err.Error(), "etcd9") {
		t.Fatalf("missing binary: %v", err)
	}
	// A binary supplied for the platform must really be built for it.
	t.Setenv(envName, exe)
	if _, err := agentBinFor(&ConnectOptions{}, "etcd9", other, native); err == nil || !strings.Contains(err.Error(), "built for "+native.platform) {
		t.Fatalf("wrong-platform binary accepted: %v", err)
	}
	if _, err := agentBinFor(&ConnectOptions{AgentBinaries: map[string]string{other: exe}}, "etcd9", other, native); err == nil {
		t.Fatal("wrong-platform binary from the flag accepted")
	}
	if b, err := agentBinFor(&ConnectOptions{}, "etcd9", native.platform, native); err != nil || b != native {
		t.Fatalf("native: %v %v", b, err)
	}
}

func TestParseJump(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		err  bool
	}{
		{"bastion", Target{Name: "bastion", Addr: "bastion", Port: 22, User: "me"}, false},
		{"ops@bastion:2222", Target{Name: "bastion", Addr: "bastion", Port: 2222, User: "ops"}, false},
		{"[::1]:2200", Target{Name: "::1", Addr: "::1", Port: 2200, User: "me"}, false},
		{"ops@", Target{}, true},
		{"bastion:http", Target{}, true},
	}
	for _, tt := range tests {
		got, err := parseJump(tt.in, "me")
		if (err != nil) != tt.err || (!tt.err && got != tt.want) {
			t.Errorf("parseJump(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

// fakeSudo puts a `sudo` on the server's PATH that runs the command as
// the same user (or fails like sudo without a password), so the become
// paths run for real short of the user switch.
func fakeSudo(t *testing.T, s *testServer, script string) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sudo"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	s.env = append(s.env, "PATH="+dir+":"+os.Getenv("PATH"))
}

func TestBecome(t *testing.T) {
	c := newTestClient(t)
	s := newTestServer(t, c.pub)
	c.trust(t, s)
	fakeSudo(t, s, `[ "$1 $2 $3 $4" = "-n -u etcd --" ] || { echo "bad sudo args: $*" >&2; exit 1; }
shift 4; exec "$@"
`)
	tg := s.target()
	tg.KeyFile, tg.Become, tg.BecomeUser = c.keyFile, true, "etcd"
	conn, err := Connect(context.Background(), tg, c.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !conn.stage {
		t.Fatal("become as another user should stage files")
	}
	ctx := context.Background()
	dst := filepath.Join(s.home, "etcd.conf")
	if err := conn.Upload(ctx, strings.NewReader("via the agent\n"), dst, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "via the agent\n" {
		t.Fatalf("uploaded %q", b)
	}
	var buf bytes.Buffer
	if err := conn.Download(ctx, dst, &buf); err != nil || buf.String() != "via the agent\n" {
		t.Fatalf("download %q %v", buf.String(), err)
	}
	stage := filepath.Join(s.home, ".cache", "etcdplay", "stage")
	st, err := os.Stat(stage)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("staging dir: %v %v", st, err)
	}
	if left, _ := os.ReadDir(stage); len(left) != 0 {
		t.Errorf("staged files left: %v", left)
	}
}

func TestBecomeNeedsPassword(t *testing.T) {
	c := newTestClient(t)
	s := newTestServer(t, c.pub)
	c.trust(t, s)
	fakeSudo(t, s, "echo 'sudo: a password is required' >&2; exit 1\n")
	tg := s.target()
	tg.KeyFile, tg.Become, tg.BecomeUser = c.keyFile, true, "etcd"
	_, err := Connect(context.Background(), tg, c.opts())
	if err == nil || IsUnreachable(err) || !strings.Contains(err.Error(), "sudo: a password is required") {
		t.Fatalf("sudo without password: %v (unreachable %v)", err, IsUnreachable(err))
	}
}
