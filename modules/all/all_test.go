package all

import (
	"slices"
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
