package all

import (
	"path/filepath"
	"testing"

	"github.com/etcdplay/etcdplay/internal/playbook"
)

// Every shipped runbook must parse against the modules this binary links:
// a module package missing from all.go would make a runbook unusable.
func TestShippedPlaybooksParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "playbooks", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no playbooks found: %v", err)
	}
	for _, f := range files {
		if _, err := playbook.Parse(f); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
	}
}
