package all

import (
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
