package inventory

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/etcdplay/etcdplay/internal/coerce"
)

// unsupported are connection variables etcdplay does not honour, with the
// way it does the same thing. Ignoring them would connect some other way
// than the operator wrote.
var unsupported = map[string]string{
	"ansible_password":        "etcdplay logs in with keys only: set ansible_ssh_private_key_file or load the key into ssh-agent",
	"ansible_ssh_pass":        "etcdplay logs in with keys only: set ansible_ssh_private_key_file or load the key into ssh-agent",
	"ansible_ssh_password":    "etcdplay logs in with keys only: set ansible_ssh_private_key_file or load the key into ssh-agent",
	"ansible_become_password": "etcdplay runs sudo non-interactively: give the user NOPASSWD sudo (a sudoers.d entry)",
	"ansible_become_pass":     "etcdplay runs sudo non-interactively: give the user NOPASSWD sudo (a sudoers.d entry)",
	"ansible_sudo_pass":       "etcdplay runs sudo non-interactively: give the user NOPASSWD sudo (a sudoers.d entry)",
}

// checkConnections reports connection variables that cannot mean what the
// operator wrote, at the line where each was written: a port that is not
// a TCP port, a become that is not a boolean, a connection other than
// SSH, a password. Values still to be templated are left to the run.
func (inv *Inventory) checkConnections() error {
	var errs []error
	for _, h := range inv.hosts {
		fail := func(name, format string, args ...any) {
			p, _ := h.VarPos(name)
			if p.File == "" {
				p.File = inv.File
			}
			errs = append(errs, &Error{Pos: p, Field: h.Name + "." + name, Msg: fmt.Sprintf(format, args...)})
		}
		raw := func(name string) (any, bool) {
			v, ok := h.Vars[name]
			if !ok || v == nil || strings.Contains(fmt.Sprint(v), "{{") {
				return nil, false
			}
			return v, true
		}
		for _, name := range []string{"ansible_port", "ansible_ssh_port"} {
			if v, ok := raw(name); ok {
				if n, ok := coerce.Int(v); !ok || n < 1 || n > 65535 {
					fail(name, "%v is not a TCP port (1-65535)", v)
				}
			}
		}
		if v, ok := raw("ansible_become"); ok {
			if _, ok := coerce.Bool(v); !ok {
				fail("ansible_become", "%v is not a boolean (true/false, yes/no)", v)
			}
		}
		if v, ok := raw("ansible_connection"); ok {
			if s := fmt.Sprint(v); s != "ssh" && s != "smart" {
				fail("ansible_connection", "%q is not supported: etcdplay reaches every host over SSH (drop it, or use ssh)", s)
			}
		}
		var names []string
		for name := range unsupported {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if _, ok := raw(name); ok {
				fail(name, "is not supported: %s", unsupported[name])
			}
		}
	}
	return errors.Join(errs...)
}
