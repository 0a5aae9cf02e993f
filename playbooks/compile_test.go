// Package playbooks_test compiles every shipped playbook against the
// shipped inventories: templates rendered for every host, every module's
// arguments validated and resolved, the graph built; no host is reached.
package playbooks_test

import (
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
		"site.yml":         nil,
		"generic-demo.yml": nil,
		"backup.yml":       nil,
		"maintenance.yml":  nil,
		"scale-out.yml":    nil,
		"scale-in.yml":     {"remove": lastMember},
		"replace-node.yml": {"node": lastMember},
		"rotate-certs.yml": nil,
		"restore.yml":      {"snapshot": "/var/backups/etcd/snap.db"},
		"upgrade.yml":      {"etcd_version": "v3.7.3"},
		"clients.yml":      nil,
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
