package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Connection variables that cannot mean what was written are refused at
// load, at their line: the run never connects some other way.
func TestConnectionVariablesChecked(t *testing.T) {
	for _, tc := range []struct {
		name, host, want string
	}{
		{"port not a number", `ansible_port: twenty-two`, `hosts.yml:6:25: h1.ansible_port: twenty-two is not a TCP port`},
		{"port out of range", `ansible_port: 99999`, `99999 is not a TCP port`},
		{"become not a boolean", `ansible_become: maybe`, `hosts.yml:6:27: h1.ansible_become: maybe is not a boolean`},
		{"local connection", `ansible_connection: local`, `"local" is not supported: etcdplay reaches every host over SSH`},
		{"password", `ansible_password: hunter2`, `ansible_password: is not supported: etcdplay logs in with keys only`},
		{"sudo password", `ansible_become_pass: hunter2`, `NOPASSWD sudo`},
		{"templated port is the run's business", `ansible_port: "{{ port }}"`, ``},
		{"fine", `ansible_port: 2222`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hosts.yml")
			inv := "all:\n  children:\n    etcd:\n      hosts:\n        h1:\n          " + tc.host + "\n"
			if err := os.WriteFile(p, []byte(inv), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
