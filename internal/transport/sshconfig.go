package transport

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// SSHConfig is an OpenSSH client configuration (~/.ssh/config): the
// fields etcdplay honours fill in what the inventory and the command line
// leave unset, as ssh does for ansible-playbook. Host patterns match the
// address the inventory gives (ansible_host, else the host's name), as
// they match what Ansible hands to ssh.
type SSHConfig struct {
	file string
	cfg  *ssh_config.Config
}

// LoadSSHConfig reads an ssh client config file. A missing file is no
// configuration (nil, nil).
func LoadSSHConfig(file string) (*SSHConfig, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ssh config: %w", err)
	}
	cfg, err := ssh_config.DecodeBytes(b)
	if err != nil {
		return nil, fmt.Errorf("ssh config %s: %w", file, err)
	}
	return &SSHConfig{file: file, cfg: cfg}, nil
}

// DefaultSSHConfigFile is ~/.ssh/config.
func DefaultSSHConfigFile() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".ssh", "config")
}

// apply fills t's unset fields from the config: HostName (always, as ssh
// maps an alias), Port, User (only when neither the inventory nor -u set
// one), IdentityFile (only when neither set a key) and ProxyJump.
func (s *SSHConfig) apply(t Target, o ConnectOptions) (Target, error) {
	if s == nil {
		return t, nil
	}
	alias := t.Addr
	get := func(key string) string {
		v, _ := s.cfg.Get(alias, key)
		return strings.TrimSpace(v)
	}
	if hn := get("HostName"); hn != "" {
		t.Addr = strings.ReplaceAll(hn, "%h", alias)
	}
	if t.Port == 0 {
		if p := get("Port"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return t, fmt.Errorf("ssh config %s: Host %s: Port %q is not a port", s.file, alias, p)
			}
			t.Port = n
		}
	}
	if t.User == "" && o.User == "" {
		t.User = get("User")
	}
	if t.KeyFile == "" && o.KeyFile == "" {
		if id := get("IdentityFile"); id != "" {
			t.KeyFile = expandHome(strings.ReplaceAll(id, "%h", alias))
		}
	}
	if t.JumpHost == "" {
		if j := get("ProxyJump"); j != "" && !strings.EqualFold(j, "none") {
			t.JumpHost = j
		}
	}
	return t, nil
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, strings.TrimPrefix(p, "~"))
		}
	}
	return p
}

// String names the file.
func (s *SSHConfig) String() string { return s.file }
