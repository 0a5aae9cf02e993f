package cli

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/modules"

	_ "github.com/etcdplay/etcdplay/modules/file"
)

func TestParseExtraVars(t *testing.T) {
	dir := t.TempDir()
	vf := filepath.Join(dir, "vars.yml")
	if err := os.WriteFile(vf, []byte("etcd_version: v3.7.3\nnested: {a: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in      []string
		want    map[string]any
		wantErr bool
	}{
		{"pairs", []string{"a=1 b=two", "c=x=y"}, map[string]any{"a": "1", "b": "two", "c": "x=y"}, false},
		{"file", []string{"@" + vf}, map[string]any{"etcd_version": "v3.7.3", "nested": map[string]any{"a": 1}}, false},
		{"json", []string{`{"n": 3}`}, map[string]any{"n": float64(3)}, false},
		{"later wins", []string{"a=1", "a=2"}, map[string]any{"a": "2"}, false},
		{"quoted value", []string{`greeting="hello world" who='a b'`}, map[string]any{"greeting": "hello world", "who": "a b"}, false},
		{"no equals", []string{"oops"}, nil, true},
		{"missing file", []string{"@" + filepath.Join(dir, "nope.yml")}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseExtraVars(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// Bad input exits 4 before any connection is attempted (the inventory's
// hosts do not exist: reaching for them would exit 3).
func TestInvalidInputExitCode(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(inv, "all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1, ansible_port: 1}\n")
	good := filepath.Join(dir, "good.yml")
	write(good, "- hosts: all\n  tasks:\n    - file: {path: /tmp/x, state: directory}\n")
	bad := filepath.Join(dir, "bad.yml")
	write(bad, "- hosts: all\n  tasks:\n    - file: {path: /tmp/x, stat: directory}\n")
	for _, tc := range []struct {
		name string
		args []string
		env  string // ETCDPLAY_PERSIST
		want int
	}{
		{"unknown argument", []string{"apply", bad, "-i", inv}, "", ExitInvalid},
		{"missing inventory", []string{"apply", good, "-i", filepath.Join(dir, "none.yml")}, "", ExitInvalid},
		{"no inventory flag", []string{"apply", good}, "", ExitInvalid},
		{"bad extra vars", []string{"apply", good, "-i", inv, "-e", "novalue"}, "", ExitInvalid},
		{"bad output", []string{"apply", good, "-i", inv, "-o", "xml"}, "", ExitInvalid},
		{"validate ok", []string{"validate", good, "-i", inv}, "", ExitOK},
		{"validate bad", []string{"validate", bad, "-i", inv}, "", ExitInvalid},
		{"unreachable", []string{"apply", good, "-i", inv, "--known-hosts", filepath.Join(dir, "kh"), "--timeout", "1s"}, "", ExitUnreachable},
		{"unknown flag", []string{"apply", good, "-i", inv, "--chek"}, "", ExitInvalid},
		{"unknown flag of status", []string{"status", "-i", inv, "--nope"}, "", ExitInvalid},
		// The format is refused before the (unreachable) cluster is
		// contacted, and inventory is not needed to say so.
		{"status bad output", []string{"status", "-i", inv, "-o", "yaml"}, "", ExitInvalid},
		{"inventory bad output", []string{"inventory", "-i", inv, "-o", "toml"}, "", ExitInvalid},
		{"persist not a duration", []string{"apply", good, "-i", inv}, "60", ExitInvalid},
		{"persist negative", []string{"status", "-i", inv}, "-1s", ExitInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ETCDPLAY_INVENTORY", "")
			t.Setenv("ETCDPLAY_PERSIST", tc.env)
			if got := Main(tc.args); got != tc.want {
				t.Errorf("exit %d, want %d", got, tc.want)
			}
		})
	}
}

// status builds its cluster model with the compiler's variable merge: a
// variable that holds a template means the same thing to status as to
// apply (it used to reach the model unrendered).
func TestStatusClusterRendersTemplates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "inv.yml")
	inv := `all:
  vars:
    etcd_cluster_name: prod
    etcd_cluster_token: "{{ .etcd_cluster_name }}-2026"
  children:
    etcd:
      hosts:
        etcd1: {ansible_host: 127.0.1.1}
        etcd2: {ansible_host: 127.0.1.2, etcd_client_port: "{{ .base_port }}"}
`
	if err := os.WriteFile(p, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := inventory.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := clusterFromInventory(in, map[string]any{"base_port": 12379}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Token != "prod-2026" {
		t.Errorf("token %q, want the rendered prod-2026", c.Token)
	}
	if m, err := c.Member("etcd2"); err != nil || m.ClientPort != 12379 {
		t.Errorf("etcd2 client port from an extra var through a template: %+v %v", m, err)
	}
	if _, _, err := clusterFromInventory(in, nil, ""); err == nil || !strings.Contains(err.Error(), "etcd_client_port") {
		t.Errorf("a template that cannot render must say which variable: %v", err)
	}
}

// TestClusterFromInventoryPicksOneCluster: status, ctl and backups on an
// inventory holding several clusters act on the one --cluster names, and
// say which there are when it is missing or wrong.
func TestClusterFromInventoryPicksOneCluster(t *testing.T) {
	p := filepath.Join(t.TempDir(), "inv.yml")
	inv := `all:
  children:
    etcd:
      hosts:
        a1: {ansible_host: 127.0.1.1, etcd_cluster_name: blue}
        a2: {ansible_host: 127.0.1.2, etcd_cluster_name: blue}
        b1: {ansible_host: 127.0.2.1, etcd_cluster_name: green}
`
	if err := os.WriteFile(p, []byte(inv), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := inventory.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cluster, wantMembers, wantErr string
	}{
		{"", "", "holds 2 clusters: blue (a1, a2); green (b1); pass --cluster NAME"},
		{"green", "b1", ""},
		{"blue", "a1,a2", ""},
		{"red", "", "--cluster red: no host of " + p + "'s etcd group has etcd_cluster_name red; it holds blue (a1, a2); green (b1)"},
	}
	for _, tt := range tests {
		c, _, err := clusterFromInventory(in, nil, tt.cluster)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("--cluster %q: error %v, want %q", tt.cluster, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("--cluster %q: %v", tt.cluster, err)
			continue
		}
		var got []string
		for _, m := range c.Members {
			got = append(got, m.Host)
		}
		if c.Name != tt.cluster || strings.Join(got, ",") != tt.wantMembers {
			t.Errorf("--cluster %q: cluster %s members %v, want %s", tt.cluster, c.Name, got, tt.wantMembers)
		}
	}
}

// inventory reads $ETCDPLAY_INVENTORY, as apply, validate, graph and
// status do.
func TestInventoryFromEnvironment(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "inv.yml")
	if err := os.WriteFile(inv, []byte("all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ETCDPLAY_INVENTORY", inv)
	if got := Main([]string{"inventory", "-o", "json"}); got != ExitOK {
		t.Errorf("inventory with ETCDPLAY_INVENTORY: exit %d", got)
	}
}

// --version says what `etcdplay version` says.
func TestVersionFlag(t *testing.T) {
	if got := Main([]string{"--version"}); got != ExitOK {
		t.Errorf("--version: exit %d", got)
	}
	if !strings.HasPrefix(versionLine(), Version+" ") {
		t.Errorf("version line %q does not start with the release %q", versionLine(), Version)
	}
}

// --list-hosts and --list-tasks compile and print, connecting nowhere (the
// inventory's host does not exist), honouring --limit and --tags.
func TestListHostsAndTasks(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yml")
	pb := filepath.Join(dir, "pb.yml")
	writeFiles(t, map[string]string{
		inv: "all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1, ansible_port: 1}\n    h2: {ansible_host: 127.0.0.1, ansible_port: 1}\n",
		pb: "- name: demo\n  hosts: all\n  tasks:\n    - name: dir\n      file: {path: /tmp/x, state: directory}\n      tags: [setup]\n" +
			"    - name: other\n      file: {path: /tmp/y, state: directory}\n",
	})
	got, _ := execute(t, "apply", pb, "-i", inv, "--list-hosts", "--list-tasks", "-l", "h2", "--tags", "setup")
	for _, want := range []string{"play #1: demo", "hosts (1):\n      h2\n", "tasks:\n      dir\tTAGS: [setup]\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "other") || strings.Contains(got, "h1") {
		t.Errorf("--tags and --limit not honoured:\n%s", got)
	}
}

// The confirmation prompt: a terminal answer of "yes" goes on, anything
// else refuses; no terminal refuses with the remedy. (The terminal itself
// is stood in for by a pipe; newConfirmer's TCGETS check decides which.)
func TestConfirmer(t *testing.T) {
	ch := &modules.Change{Disruptive: "restarts members one at a time"}
	ch.Add("!", "restart etcd2", "1/3, follower")
	for _, tc := range []struct {
		name     string
		terminal bool
		answer   string
		ok       bool
		want     string
	}{
		{"yes", true, "yes\n", true, ""},
		{"y is not yes", true, "y\n", false, "declined at the prompt"},
		{"no terminal", false, "", false, "pass --yes (ETCDPLAY_YES=1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			c := &confirmer{in: bufio.NewReader(strings.NewReader(tc.answer)), out: &out, terminal: tc.terminal}
			err := c.confirm(context.Background(), "restart etcd", "etcd1", ch)
			if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), tc.want)) || c.refused == tc.ok {
				t.Fatalf("err %v refused %v, want ok=%v %q", err, c.refused, tc.ok, tc.want)
			}
			if tc.terminal && !strings.Contains(out.String(), "! restart etcd2: 1/3, follower") {
				t.Errorf("the prompt does not show the step's plan:\n%s", out.String())
			}
		})
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if newConfirmer(r, io.Discard).terminal {
		t.Error("a pipe taken for a terminal")
	}
}

// Several -i merge in order; a host list and --limit @file work as in
// ansible-playbook.
func TestSeveralInventoriesAndLimitFile(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yml")
	pb := filepath.Join(dir, "pb.yml")
	retry := filepath.Join(dir, "pb.retry")
	writeFiles(t, map[string]string{
		a:     "all:\n  children:\n    etcd:\n      hosts:\n        h1: {ansible_host: 127.0.0.1, ansible_port: 1}\n",
		pb:    "- name: demo\n  hosts: all\n  tasks:\n    - name: dir\n      file: {path: /tmp/x, state: directory}\n",
		retry: "# failed last time\nh3\nh1\n",
	})
	if got, _ := execute(t, "apply", pb, "-i", a, "-i", "h2,h3,", "--list-hosts", "-l", "@"+retry); !strings.Contains(got, "hosts (2):\n      h1\n      h3\n") {
		t.Errorf("merged inventories limited by the retry file:\n%s", got)
	}
	if code := Main([]string{"apply", pb, "-i", a, "--list-hosts", "-l", "@" + filepath.Join(dir, "missing")}); code != ExitInvalid {
		t.Errorf("--limit @missing: exit %d, want %d", code, ExitInvalid)
	}
}

// Completion offers the inventory's hosts and groups for --limit, the
// playbook's tags for --tags, connecting nowhere.
func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yml")
	pb := filepath.Join(dir, "pb.yml")
	os.WriteFile(inv, []byte("all:\n  children:\n    etcd:\n      hosts:\n        e1: {ansible_host: 127.0.0.1, ansible_port: 1}\n"), 0o644)
	os.WriteFile(pb, []byte("- name: demo\n  hosts: all\n  tasks:\n    - name: dir\n      file: {path: /tmp/x, state: directory}\n      tags: [setup, files]\n"), 0o644)
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "apply", pb, "-i", inv, "--limit", "!"}, []string{"!all", "!e1", "!etcd", "!ungrouped"}},
		{[]string{"__complete", "apply", pb, "-i", inv, "--tags", ""}, []string{"files", "setup"}},
		{[]string{"__complete", "apply", pb, "--output", ""}, []string{"text", "json"}},
	} {
		out, _ := execute(t, tt.args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := lines[:len(lines)-1] // the last line is cobra's directive
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%v: %v, want %v", tt.args[2:], got, tt.want)
		}
	}
}

// An etcd_ variable nothing reads is a warning on stderr, not a failure:
// validate still says ok and exits 0.
func TestUnreadVariableWarns(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yml")
	pb := filepath.Join(dir, "pb.yml")
	writeFiles(t, map[string]string{
		inv: "all:\n  vars:\n    etcd_verison: v3.7.3\n  hosts:\n    h1: {ansible_host: 127.0.0.1, ansible_port: 1}\n",
		pb:  "- hosts: all\n  tasks:\n    - file: {path: /tmp/x, state: directory}\n",
	})
	out, errs := execute(t, "validate", pb, "-i", inv)
	want := "warning: " + inv + `:3:19: vars.etcd_verison: no module or task reads etcd_verison: it changes nothing (did you mean "etcd_version"?)` + "\n"
	if errs != want || !strings.Contains(out, ": ok (") {
		t.Errorf("stdout %q\nstderr %q\nwant stderr %q", out, errs, want)
	}
}

// writeFiles writes each path's text.
func writeFiles(t *testing.T, files map[string]string) {
	t.Helper()
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// execute runs the CLI with args and returns what it printed on stdout
// and stderr; an error fails the test.
func execute(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	root := newRoot()
	var out, errs strings.Builder
	root.SetOut(&out)
	root.SetErr(&errs)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("etcdplay %s: %v\n%s", strings.Join(args, " "), err, errs.String())
	}
	return out.String(), errs.String()
}

// status, backups and ctl read the inventory's etcd variables without a
// playbook: they warn about the same unread ones, before any connection.
func TestClusterCommandsWarnOfUnreadVariables(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "inv.yml")
	writeFiles(t, map[string]string{inv: "all:\n  children:\n    etcd:\n      hosts:\n        e1: {ansible_host: 127.0.0.1, ansible_port: 1, etcd_client_prot: 2379}\n"})
	root := newRoot()
	var errs strings.Builder
	root.SetOut(io.Discard)
	root.SetErr(&errs)
	root.SetArgs([]string{"ctl", "-i", inv, "--known-hosts", filepath.Join(t.TempDir(), "kh"), "--timeout", "1s", "--", "endpoint", "health"})
	_ = root.Execute() // e1 is not there: only the warning matters here
	want := "warning: " + inv + `:5:74: vars.etcd_client_prot: no module or task reads etcd_client_prot: it changes nothing (did you mean "etcd_client_port"?)` + "\n"
	if !strings.HasPrefix(errs.String(), want) {
		t.Errorf("stderr %q, want it to start with %q", errs.String(), want)
	}
}
