package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

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
		want int
	}{
		{"unknown argument", []string{"apply", bad, "-i", inv}, ExitInvalid},
		{"missing inventory", []string{"apply", good, "-i", filepath.Join(dir, "none.yml")}, ExitInvalid},
		{"no inventory flag", []string{"apply", good}, ExitInvalid},
		{"bad extra vars", []string{"apply", good, "-i", inv, "-e", "novalue"}, ExitInvalid},
		{"bad output", []string{"apply", good, "-i", inv, "-o", "xml"}, ExitInvalid},
		{"validate ok", []string{"validate", good, "-i", inv}, ExitOK},
		{"validate bad", []string{"validate", bad, "-i", inv}, ExitInvalid},
		{"unreachable", []string{"apply", good, "-i", inv, "--known-hosts", filepath.Join(dir, "kh"), "--timeout", "1s"}, ExitUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("ETCDPLAY_INVENTORY", "")
			if got := Main(tc.args); got != tc.want {
				t.Errorf("exit %d, want %d", got, tc.want)
			}
		})
	}
}
