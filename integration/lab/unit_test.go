package lab

import (
	"reflect"
	"testing"
)

func TestNspawnRoot(t *testing.T) {
	for _, tc := range []struct {
		args []string
		root string
		ok   bool
	}{
		{[]string{"systemd-nspawn", "-D", "/run/etcdplay-lab/a/hosts/etcd1/root", "-M", "a-etcd1"}, "/run/etcdplay-lab/a/hosts/etcd1/root", true},
		{[]string{"/usr/bin/systemd-nspawn", "--directory=/x"}, "/x", true},
		{[]string{"sshd", "-D", "/x"}, "", false},
		{nil, "", false},
	} {
		root, ok := nspawnRoot(tc.args)
		if root != tc.root || ok != tc.ok {
			t.Errorf("nspawnRoot(%q) = %q, %v; want %q, %v", tc.args, root, ok, tc.root, tc.ok)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/run/a`:         "/run/a",
		`/run/a\040b`:    "/run/a b",
		`/run/\134x`:     `/run/\x`,
		`/run/trailing\`: `/run/trailing\`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o  Options
		ok bool
	}{
		{Options{Name: "demo", Block: 1, Hosts: 3}, true},
		{Options{Name: "Demo", Block: 1}, false},
		{Options{Name: "demo", Block: 0}, false},
		{Options{Name: "demo", Block: 255}, false},
		{Options{Name: "demo", Block: 1, Hosts: 255}, false},
		{Options{Name: "", Block: 1}, false},
	} {
		err := tc.o.defaults()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: err = %v, want ok=%v", tc.o, err, tc.ok)
		}
	}
}

func TestRuleSpecCarriesLabTag(t *testing.T) {
	l := &Lab{Name: "demo"}
	got := l.ruleSpec("127.0.1.2", 2380)
	want := []string{"-i", "lo", "-d", "127.0.1.2/32", "-p", "tcp", "--dport", "2380",
		"-m", "comment", "--comment", "etcdplay-lab/demo", "-j", "DROP"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ruleSpec = %q, want %q", got, want)
	}
}
