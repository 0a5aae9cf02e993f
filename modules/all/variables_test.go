package all_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// TestVariablesAreDocumented: etcd.Variables, which the compiler warns
// against, is exactly the set of variables docs/variables.md documents.
func TestVariablesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/variables.md")
	if err != nil {
		t.Fatal(err)
	}
	// A table row's first cell names one or more variables; a row that
	// names a module and then its argument (`etcd_pki` `ca_rotation`)
	// documents the argument, not a variable.
	var documented []string
	for line := range strings.Lines(string(doc)) {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| `etcd_") || len(cells) < 3 {
			continue
		}
		names := regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(cells[1], -1)
		vars := true
		for _, n := range names {
			vars = vars && strings.HasPrefix(n[1], "etcd_")
		}
		for _, n := range names {
			if vars && !slices.Contains(documented, n[1]) {
				documented = append(documented, n[1])
			}
		}
	}
	slices.Sort(documented)
	known := slices.Sorted(slices.Values(etcd.Variables))
	for _, v := range documented {
		if !slices.Contains(known, v) {
			t.Errorf("docs/variables.md documents %s, which etcd.Variables lacks: the compiler would warn that nothing reads it", v)
		}
	}
	for _, v := range known {
		if !slices.Contains(documented, v) {
			t.Errorf("etcd.Variables has %s, which docs/variables.md does not document", v)
		}
	}
}

// TestVariablesCoverTheCode: every etcd_ name the modules and the shipped
// playbooks write is a module, a group, or a registered variable, so the
// compiler never warns that nothing reads a variable that something does.
func TestVariablesCoverTheCode(t *testing.T) {
	// In Go, the string literals; in YAML, every word.
	inGo := regexp.MustCompile(`"(etcd_[a-z0-9_]*[a-z0-9])"`)
	inYAML := regexp.MustCompile(`\b(etcd_[a-z0-9_]*[a-z0-9])\b`)
	var files []string
	for _, glob := range []string{"../*/*.go", "../*/*/*.go", "../../playbooks/*.yml", "../../templates/*"} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d files to read: %v", len(files), files)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		re := inYAML
		if strings.HasSuffix(f, ".go") {
			re = inGo
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			n := m[1]
			_, module := modules.Lookup(n)
			_, hostSide := modules.LookupHostSide(n)
			_, probe := modules.LookupProbe(n)
			if module || hostSide || probe || modules.KnownGroup(n) || n == etcd.ClientsGroup {
				continue
			}
			if unread, hint := modules.UnreadVariable(n); unread {
				t.Errorf("%s: %s is neither a module, a group nor in etcd.Variables (closest: %q)", f, n, hint)
			}
		}
	}
}

// TestUnreadVariableHints: a typo gets the variable it was meant to be;
// another tool's variable (kubespray's) gets no misleading hint.
func TestUnreadVariableHints(t *testing.T) {
	for _, tt := range []struct {
		name   string
		unread bool
		hint   string
	}{
		{"etcd_version", false, ""},
		{"ansible_host", false, ""},
		{"etcd_verison", true, "etcd_version"},
		{"etcd_heartbeat_intervall", true, "etcd_heartbeat_interval"},
		{"etcd_quota_backend_byte", true, "etcd_quota_backend_bytes"},
		{"etcd_datadir", true, "etcd_data_dir"},
		{"etcd_events_data_dir", true, ""},
		{"etcd_memory_limit", true, ""},
		{"etcd_deployment_type", true, ""},
	} {
		unread, hint := modules.UnreadVariable(tt.name)
		if unread != tt.unread || hint != tt.hint {
			t.Errorf("UnreadVariable(%s) = %v, %q; want %v, %q", tt.name, unread, hint, tt.unread, tt.hint)
		}
	}
}
