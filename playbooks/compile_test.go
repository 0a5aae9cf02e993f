// Package playbooks_test compiles every shipped playbook against the
// shipped inventories: templates rendered for every host, every module's
// arguments validated and resolved, the graph built; no host is reached.
package playbooks_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/internal/playbook"
	_ "github.com/etcdplay/etcdplay/modules/all"
)

// lastMember stands for the inventory's last etcd host in the extra vars.
const lastMember = "<last etcd host>"

func TestShippedPlaybooksCompile(t *testing.T) {
	// The extra vars each runbook's header says to pass.
	playbooks := map[string]map[string]any{
		"site.yml":                         nil,
		"generic-demo.yml":                 nil,
		"backup.yml":                       nil,
		"verify-backup.yml":                nil,
		"examples/ansible-expressions.yml": nil,
		"maintenance.yml":                  nil,
		"scale-out.yml":                    nil,
		"scale-in.yml":                     {"remove": lastMember},
		"replace-node.yml":                 {"node": lastMember},
		"rotate-certs.yml":                 nil,
		"enable-tls.yml":                   nil,
		"rotate-ca.yml":                    nil,
		"restore.yml":                      {"snapshot": "/var/backups/etcd/snap.db"},
		"upgrade.yml":                      {"etcd_version": "v3.7.3"},
		"clients.yml":                      nil,
	}
	files, err := filepath.Glob("*.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := playbooks[f]; !ok {
			t.Errorf("%s is shipped but not compiled here: add it with the extra vars its header names", f)
		}
	}
	for _, invFile := range []string{"../inventory/example.yml", "../inventory/lab.yml"} {
		inv, err := inventory.Load(invFile)
		if err != nil {
			t.Fatal(err)
		}
		members := inv.Groups()["etcd"]
		for pb, extra := range playbooks {
			vars := map[string]any{}
			for k, v := range extra {
				if v == lastMember {
					v = members[len(members)-1]
				}
				vars[k] = v
			}
			t.Run(filepath.Base(invFile)+"/"+pb, func(t *testing.T) {
				c, err := playbook.Load(pb, inv, playbook.Options{ExtraVars: vars, StateDir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				// What we ship sets and reads only variables that exist.
				for _, w := range c.Warnings {
					t.Errorf("warning: %v", w)
				}
				// The lab inventory has no client hosts: clients.yml has
				// nothing to do there.
				if c.Graph.Len() == 0 && !(pb == "clients.yml" && len(inv.Groups()["etcd_clients"]) == 0) {
					t.Error("compiled to an empty graph")
				}
			})
		}
	}
}

// A node to replace that is not in the inventory is bad input: a compile
// error naming the argument, before any connection (exit 4).
func TestReplaceUnknownNodeIsACompileError(t *testing.T) {
	inv, err := inventory.Load("../inventory/lab.yml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = playbook.Load("replace-node.yml", inv, playbook.Options{ExtraVars: map[string]any{"node": "etcd9"}, StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "replace-node.yml:") || !strings.Contains(err.Error(), `"etcd9": the node to replace must be a host of the inventory's etcd group`) {
		t.Fatalf("got %v", err)
	}
}

// A bad variable is reported where the inventory wrote it (file:line:col),
// naming the task that read it.
func TestBadVariableReportedWhereWritten(t *testing.T) {
	data, err := os.ReadFile("../inventory/example.yml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "etcd_snapshot_count: 100000", "etcd_snapshot_count: -5", 1)
	line := 1 + strings.Count(bad[:strings.Index(bad, "etcd_snapshot_count: -5")], "\n")
	p := filepath.Join(t.TempDir(), "prod.yml")
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = playbook.Load("site.yml", inv, playbook.Options{StateDir: t.TempDir()})
	want := fmt.Sprintf("%s:%d:", p, line)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "etcd_snapshot_count") || !strings.Contains(err.Error(), "read by site.yml:") {
		t.Fatalf("got %v, want it at %s", err, want)
	}
}
