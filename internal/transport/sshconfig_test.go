package transport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSSHConfigApply(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config")
	os.WriteFile(cfgFile, []byte(`
Host etcd-*
  User ops
  IdentityFile ~/.ssh/etcd_ed25519
  ProxyJump bastion.example:2222

Host etcd-1
  HostName 10.0.0.11
  Port 2200

Host direct
  HostName %h.internal
  ProxyJump none

Host *
  User fallback
`), 0o600)
	cfg, err := LoadSSHConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	tests := []struct {
		name string
		in   Target
		opt  ConnectOptions
		want Target
	}{
		{"alias: every field from the config (first value wins, as in ssh)", Target{Addr: "etcd-1"}, ConnectOptions{},
			Target{Addr: "etcd-1", Port: 0, User: "ops", KeyFile: filepath.Join(home, ".ssh/etcd_ed25519"), JumpHost: "bastion.example:2222"}},
		{"the inventory wins", Target{Addr: "etcd-2", Port: 22, User: "admin", KeyFile: "/k", JumpHost: "j"}, ConnectOptions{},
			Target{Addr: "etcd-2", Port: 22, User: "admin", KeyFile: "/k", JumpHost: "j"}},
		{"-u and --private-key win over the config", Target{Addr: "etcd-3"}, ConnectOptions{User: "cli", KeyFile: "/cli"},
			Target{Addr: "etcd-3", JumpHost: "bastion.example:2222"}},
		{"%h and ProxyJump none", Target{Addr: "direct"}, ConnectOptions{},
			Target{Addr: "direct.internal", User: "fallback"}},
		{"no match but Host *", Target{Addr: "10.1.1.1"}, ConnectOptions{}, Target{Addr: "10.1.1.1", User: "fallback"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cfg.apply(tt.in, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			// etcd-1's HostName and Port come from its own block.
			if tt.in.Addr == "etcd-1" {
				tt.want.Addr, tt.want.Port = "10.0.0.11", 2200
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}

	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("Host x\n  Port twenty-two\n"), 0o600)
	bc, err := LoadSSHConfig(bad)
	if err == nil {
		_, err = bc.apply(Target{Addr: "x"}, ConnectOptions{})
	}
	if err == nil || !strings.Contains(err.Error(), "twenty-two") {
		t.Errorf("bad port: %v", err)
	}
	if c, err := LoadSSHConfig(filepath.Join(dir, "missing")); c != nil || err != nil {
		t.Errorf("a missing config: %v %v", c, err)
	}
}
