package inventory

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

// Several -i sources merge in order, as in ansible-playbook: the union
// of hosts and groups, later variables winning, each dir's group_vars.
func TestLoadAll(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, body string) string {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a/hosts.yml", "all:\n  children:\n    etcd:\n      hosts:\n        e1: {ansible_host: 10.0.0.1, x: a}\n        e2: {}\n      vars: {tier: a}\n")
	write("a/group_vars/etcd.yml", "from_a: 1\nboth: a\n")
	write("b/10-more.ini", "[etcd]\ne3\n[etcd:vars]\ntier=b\n")
	write("b/20-web.yml", "all:\n  children:\n    web:\n      hosts:\n        e1: {x: b}\n")
	write("b/README.md", "not an inventory")
	write("b/hosts.yml~", "all: [broken")
	write("b/group_vars/etcd.yml", "both: b\n")

	inv, err := LoadAll([]string{a, filepath.Join(dir, "b"), "w1,w2,"})
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, h := range inv.Hosts() {
		hosts = append(hosts, h.Name)
	}
	sort.Strings(hosts)
	if !reflect.DeepEqual(hosts, []string{"e1", "e2", "e3", "w1", "w2"}) {
		t.Errorf("hosts %v", hosts)
	}
	g := inv.Groups()
	sort.Strings(g["etcd"])
	if !reflect.DeepEqual(g["etcd"], []string{"e1", "e2", "e3"}) || !reflect.DeepEqual(g["web"], []string{"e1"}) {
		t.Errorf("groups %v", g)
	}
	e1, _ := inv.Host("e1")
	vars := e1.Vars
	for k, want := range map[string]any{"x": "b", "tier": "b", "from_a": 1, "both": "b", "ansible_host": "10.0.0.1"} {
		if vars[k] != want {
			t.Errorf("e1 %s = %v, want %v", k, vars[k], want)
		}
	}

	if _, err := LoadAll([]string{filepath.Join(dir, "missing.yml")}); err == nil {
		t.Error("a missing file is accepted")
	}
	if _, err := LoadAll([]string{"ok,bad host,"}); err == nil {
		t.Error("a host list with a space is accepted")
	}
}
