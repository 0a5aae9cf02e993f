package playbook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/modules"
)

func init() { modules.RegisterVariables("demo_", "demo_port", "demo_listen_address") }

// TestUnreadVariables: a variable in a module namespace that no module
// and no task reads is a warning at the place it was written, with the
// nearest real name; one the playbook reads itself (in a task or a
// template file), or outside any namespace, is not.
func TestUnreadVariables(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string { return writeFile(t, dir, name, text) }
	inv := write("inv.yml", `all:
  vars:
    demo_prot: 2379
    demo_port: 2379
    demo_mine: x
    demo_in_file: y
    other_typo: 1
  hosts:
    h1:
      demo_listen_adress: 10.0.0.1
    h2:
`)
	write("extra.yml", "demo_from_file: 1\n")
	if err := os.Mkdir(filepath.Join(dir, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("files/t.conf", "x = {{ .demo_in_file }}\n")
	pb := write("pb.yml", `- hosts: all
  vars:
    demo_play: 1
  vars_files: [extra.yml]
  tasks:
    - command: echo {{ .demo_mine }}
    - copy: {src: t.conf, dest: /etc/t.conf}
`)
	i, err := inventory.Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(pb, i, Options{ExtraVars: map[string]any{"demo_portt": "1", "demo_port": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Warnings {
		got = append(got, strings.ReplaceAll(w.Error(), dir+"/", ""))
	}
	want := []string{
		`-e demo_portt: no module or task reads demo_portt: it changes nothing (did you mean "demo_port"?)`,
		`extra.yml: vars.demo_from_file: no module or task reads demo_from_file: it changes nothing`,
		`inv.yml:3:16: vars.demo_prot: no module or task reads demo_prot: it changes nothing (did you mean "demo_port"?)`,
		`inv.yml:10:27: vars.demo_listen_adress: no module or task reads demo_listen_adress: it changes nothing (did you mean "demo_listen_address"?)`,
		`pb.yml:3:16: p1.vars.demo_play: no module or task reads demo_play: it changes nothing`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
