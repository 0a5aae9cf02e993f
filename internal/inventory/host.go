package inventory

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcdplay/etcdplay/internal/coerce"
)

// first returns the first of the named vars that is set and not empty:
// current Ansible names first, then the pre-2.0 aliases.
func (h *Host) first(names ...string) (any, bool) {
	for _, n := range names {
		if v, ok := h.Vars[n]; ok && v != nil && fmt.Sprint(v) != "" {
			return v, true
		}
	}
	return nil, false
}

func (h *Host) str(def string, names ...string) string {
	if v, ok := h.first(names...); ok {
		return fmt.Sprint(v)
	}
	return def
}

// Address is what SSH connects to: ansible_host, else the name.
func (h *Host) Address() string { return h.str(h.Name, "ansible_host", "ansible_ssh_host") }

// Port is ansible_port, default 22.
func (h *Host) Port() int {
	if v, ok := h.first("ansible_port", "ansible_ssh_port"); ok {
		if n, ok := coerce.Int(v); ok {
			return n
		}
	}
	return 22
}

// ExplicitPort is ansible_port when the inventory sets it, else 0 (so
// ~/.ssh/config's Port may apply).
func (h *Host) ExplicitPort() int {
	if v, ok := h.first("ansible_port", "ansible_ssh_port"); ok {
		if n, ok := coerce.Int(v); ok {
			return n
		}
	}
	return 0
}

// User is ansible_user, "" when unset: the connection then uses -u, else
// the local user, as ssh and Ansible do.
func (h *Host) User() string { return h.str("", "ansible_user", "ansible_ssh_user") }

// KeyFile is ansible_ssh_private_key_file with ~ expanded ("" when unset).
func (h *Host) KeyFile() string {
	return expandHome(h.str("", "ansible_ssh_private_key_file", "ansible_private_key_file"))
}

// Become is ansible_become (yes/true/1).
func (h *Host) Become() bool {
	v, ok := h.first("ansible_become")
	if !ok {
		return false
	}
	b, _ := coerce.Bool(v)
	return b
}

// BecomeUser is ansible_become_user, default root.
func (h *Host) BecomeUser() string { return h.str("root", "ansible_become_user") }

// JumpHost is the bastion to reach the host through, as user@host:port
// (parts optional), or "". etcdplay_jump_host wins; otherwise it is read
// from ProxyJump (-o ProxyJump=... or -J ...) in ansible_ssh_common_args or
// ansible_ssh_extra_args, as Ansible users write it.
func (h *Host) JumpHost() string {
	if j := h.str("", "etcdplay_jump_host"); j != "" {
		return j
	}
	for _, name := range []string{"ansible_ssh_common_args", "ansible_ssh_extra_args"} {
		if j := proxyJump(h.str("", name)); j != "" {
			return j
		}
	}
	return ""
}

// proxyJump finds the jump host in ssh arguments. A chain (a,b) is returned
// whole; the caller decides whether it supports it.
func proxyJump(args string) string {
	fields := strings.Fields(strings.NewReplacer(`"`, " ", `'`, " ").Replace(args))
	for i, f := range fields {
		switch {
		case f == "-J" && i+1 < len(fields):
			return fields[i+1]
		case strings.HasPrefix(f, "-J") && len(f) > 2:
			return f[2:]
		case f == "-o" && i+1 < len(fields):
			if v, ok := cutFold(fields[i+1], "ProxyJump="); ok {
				return v
			}
		case strings.HasPrefix(f, "-o"):
			if v, ok := cutFold(f[2:], "ProxyJump="); ok {
				return v
			}
		}
	}
	return ""
}

func cutFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}
