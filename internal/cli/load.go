package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/internal/playbook"
	"github.com/etcdplay/etcdplay/modules/command"
)

// loadFlags are the inputs every verb that compiles a playbook shares.
type loadFlags struct {
	inventory string
	limit     string
	tags      []string
	skipTags  []string
	extraVars []string
	stateDir  string
}

func (f *loadFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.inventory, "inventory", "i", os.Getenv("ETCDPLAY_INVENTORY"), "inventory file (Ansible YAML or INI); $ETCDPLAY_INVENTORY")
	fl.StringVarP(&f.limit, "limit", "l", "", "limit hosts to a pattern (names, groups, globs, !exclusion, &intersection)")
	fl.StringSliceVarP(&f.tags, "tags", "t", nil, "run only tasks with these tags")
	fl.StringSliceVar(&f.skipTags, "skip-tags", nil, "skip tasks with these tags")
	fl.StringArrayVarP(&f.extraVars, "extra-vars", "e", nil, "extra variables: key=value, @file.yml or a JSON/YAML object (repeatable)")
	f.registerStateDir(cmd)
}

func (f *loadFlags) registerStateDir(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "controller state directory: PKI, release cache, backups (default: .etcdplay beside the inventory; $ETCDPLAY_STATE_DIR)")
}

// resolveStateDir keeps controller state (PKI, caches, backups) beside the
// inventory by default, so one inventory always finds its own CA.
func (f *loadFlags) resolveStateDir() string {
	if f.stateDir != "" {
		return f.stateDir
	}
	if d := os.Getenv("ETCDPLAY_STATE_DIR"); d != "" {
		return d
	}
	return filepath.Join(filepath.Dir(f.inventory), ".etcdplay")
}

// compile loads the inventory and compiles the playbook against it. Every
// error here is invalid input: nothing has connected anywhere yet.
func (f *loadFlags) compile(path string) (*inventory.Inventory, *playbook.Compiled, error) {
	if f.inventory == "" {
		return nil, nil, invalid(fmt.Errorf("no inventory: pass -i FILE (or set ETCDPLAY_INVENTORY)"))
	}
	inv, err := inventory.Load(f.inventory)
	if err != nil {
		return nil, nil, invalid(err)
	}
	extra, err := parseExtraVars(f.extraVars)
	if err != nil {
		return nil, nil, invalid(err)
	}
	c, err := playbook.Load(path, inv, playbook.Options{ExtraVars: extra, Limit: f.limit, Tags: f.tags, SkipTags: f.skipTags, StateDir: f.resolveStateDir()})
	if err != nil {
		return nil, nil, invalid(err)
	}
	return inv, c, nil
}

// parseExtraVars merges -e values in order, later ones winning, as Ansible
// does: key=value pairs (values stay strings), @file, or an inline object.
func parseExtraVars(specs []string) (map[string]any, error) {
	out := map[string]any{}
	for _, s := range specs {
		s = strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "@"):
			data, err := os.ReadFile(s[1:])
			if err != nil {
				return nil, fmt.Errorf("-e %s: %w", s, err)
			}
			m := map[string]any{}
			if err := yaml.Unmarshal(data, &m); err != nil {
				return nil, fmt.Errorf("-e %s: %w", s, err)
			}
			mergeInto(out, m)
		case strings.HasPrefix(s, "{"):
			m := map[string]any{}
			if err := json.Unmarshal([]byte(s), &m); err != nil {
				if yerr := yaml.Unmarshal([]byte(s), &m); yerr != nil {
					return nil, fmt.Errorf("-e %q: not a JSON or YAML object: %w", s, err)
				}
			}
			mergeInto(out, m)
		default:
			// Split as a shell would, as ansible-playbook does:
			// greeting="hello world" is one pair.
			words, err := command.Split(s)
			if err != nil {
				return nil, fmt.Errorf("-e %q: %w", s, err)
			}
			for _, kv := range words {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return nil, fmt.Errorf("-e %q: want key=value, @file.yml or a JSON object", kv)
				}
				out[k] = v
			}
		}
	}
	return out, nil
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		dst[k] = v
	}
}
