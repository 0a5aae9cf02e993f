// Package playbooks_test compiles every shipped playbook against the
// shipped inventories: templates rendered for every host, every module's
// arguments validated and resolved, the graph built; no host is reached.
package playbooks_test

import (
	"path/filepath"
	"testing"

	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/internal/playbook"
	_ "github.com/etcdplay/etcdplay/modules/all"
)

func TestShippedPlaybooksCompile(t *testing.T) {
	// The extra vars each runbook's header says to pass.
	playbooks := map[string]map[string]any{
		"site.yml":         nil,
		"generic-demo.yml": nil,
		"backup.yml":       nil,
		"maintenance.yml":  nil,
		"scale-out.yml":    nil,
		"scale-in.yml":     {"remove": "etcd3"},
		"replace-node.yml": {"node": "etcd3"},
		"rotate-certs.yml": nil,
		"restore.yml":      {"snapshot": "/var/backups/etcd/snap.db"},
		"upgrade.yml":      {"etcd_version": "v3.7.3"},
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
		for pb, extra := range playbooks {
			t.Run(filepath.Base(invFile)+"/"+pb, func(t *testing.T) {
				c, err := playbook.Load(pb, inv, playbook.Options{ExtraVars: extra, StateDir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				if c.Graph.Len() == 0 {
					t.Error("compiled to an empty graph")
				}
			})
		}
	}
}
