package all

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/modules"
)

func TestGenericModulesRegistered(t *testing.T) {
	for _, name := range []string{"command", "file", "copy", "template", "systemd", "user", "group"} {
		m, ok := modules.Lookup(name)
		if !ok {
			t.Errorf("module %q not registered", name)
			continue
		}
		if modules.OnController(m) {
			t.Errorf("module %q should run in the agent", name)
		}
	}
	// Modules that read controller files must resolve them at compile time.
	for _, name := range []string{"copy", "template"} {
		m, _ := modules.Lookup(name)
		if _, ok := m.(modules.Resolver); !ok {
			t.Errorf("module %q is not a Resolver", name)
		}
	}
}

// Building blocks controller-side modules drive on hosts are not tasks: a
// playbook cannot call them and "did you mean" never offers them, but the
// agent runs them.
func TestInternalModulesHidden(t *testing.T) {
	for _, name := range []string{"etcd_files", "etcd_install", "etcd_datadir"} {
		if _, ok := modules.Lookup(name); ok {
			t.Errorf("%s is callable from a playbook", name)
		}
		if slices.Contains(modules.Names(), name) {
			t.Errorf("%s is listed in Names (did-you-mean hints)", name)
		}
		if _, ok := modules.LookupHostSide(name); !ok {
			t.Errorf("%s is not available to the agent", name)
		}
	}
	for _, name := range []string{"host", "etcd_datadir", "etcd_tune_probe"} {
		if _, ok := modules.LookupProbe(name); !ok {
			t.Errorf("probe %s not registered", name)
		}
	}
	if _, ok := modules.LookupHostSide("etcd_member"); ok {
		t.Error("a controller-side module is offered to the agent")
	}
}

// fullAgentProbes are probes only etcdplay itself serves, each with who
// asks for it: a caller must connect with transport.Target.FullAgent.
var fullAgentProbes = map[string]string{
	"probe:etcd_backup_list": "etcdplay backups (internal/cli/backups.go)",
}

// TestLeanAgentServesHostSide: the lean agent (modules/hostside, whose
// registry TestLeanRegistry records) serves everything the full binary's
// host side does, except modules marked modules.FullAgentOnly, which the
// runner routes to etcdplay itself, and the probes in fullAgentProbes. A
// new host-side module or probe missing from modules/hostside fails here
// rather than on a host.
func TestLeanAgentServesHostSide(t *testing.T) {
	b, err := os.ReadFile("../hostside/testdata/lean.golden")
	if err != nil {
		t.Fatal(err)
	}
	lean := strings.Fields(string(b))
	full := modules.HostSideNames()
	for _, name := range lean {
		if !slices.Contains(full, name) {
			t.Errorf("the lean agent serves %s, which etcdplay does not", name)
		}
	}
	for _, name := range full {
		if slices.Contains(lean, name) {
			continue
		}
		if m, ok := modules.LookupHostSide(name); ok && modules.NeedsFullAgent(m) {
			continue
		}
		if fullAgentProbes[name] != "" {
			continue
		}
		t.Errorf("%s is not in the lean agent: link its package from modules/hostside, or mark the module modules.FullAgentOnly", name)
	}
	if m, _ := modules.LookupHostSide("etcd_backup_timer"); !modules.NeedsFullAgent(m) {
		t.Error("etcd_backup_timer installs the agent itself as its program: it must be marked FullAgentOnly")
	}
}
