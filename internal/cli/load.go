package cli

import (
	"encoding/json"
	"fmt"
	"io"
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
	// inventories are the -i sources, merged in order (files, dirs, or a
	// host list "h1,h2,").
	inventories []string
	limit       string
	tags        []string
	skipTags    []string
	extraVars   []string
	stateDir    string
	// cluster picks one etcd_cluster_name of an inventory holding several
	// (status, ctl, backups).
	cluster string
}

func (f *loadFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	f.registerInventory(cmd)
	fl.StringVarP(&f.limit, "limit", "l", "", "limit hosts to a pattern (names, groups, globs, !exclusion, &intersection), or @FILE of them")
	fl.StringSliceVarP(&f.tags, "tags", "t", nil, "run only tasks with these tags")
	fl.StringSliceVar(&f.skipTags, "skip-tags", nil, "skip tasks with these tags")
	fl.StringArrayVarP(&f.extraVars, "extra-vars", "e", nil, "extra variables: key=value, @file.yml or a JSON/YAML object (repeatable)")
	f.registerStateDir(cmd)
}

// registerInventory adds -i: repeatable, merged in order as
// ansible-playbook merges; $ETCDPLAY_INVENTORY when none is given.
func (f *loadFlags) registerInventory(cmd *cobra.Command) {
	var def []string
	if v := os.Getenv("ETCDPLAY_INVENTORY"); v != "" {
		def = []string{v}
	}
	cmd.Flags().StringArrayVarP(&f.inventories, "inventory", "i", def,
		"inventory: a file (Ansible YAML or INI), a directory of them, or a host list h1,h2, (repeatable, merged in order); $ETCDPLAY_INVENTORY")
}

// resolveLimit reads --limit @FILE (a retry file: one host or pattern a
// line, # comments) into the pattern it stands for, as ansible-playbook.
func resolveLimit(limit string) (string, error) {
	file, ok := strings.CutPrefix(limit, "@")
	if !ok {
		return limit, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--limit @%s: %w", file, err)
	}
	var pats []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			pats = append(pats, line)
		}
	}
	if len(pats) == 0 {
		return "", fmt.Errorf("--limit @%s: the file names no host", file)
	}
	return strings.Join(pats, ","), nil
}

// registerCluster adds the flags of the verbs that work on the
// inventory's cluster without a playbook (status, backups, ctl): -i, -e
// and --state-dir.
func (f *loadFlags) registerCluster(cmd *cobra.Command) {
	f.registerInventory(cmd)
	cmd.Flags().StringArrayVarP(&f.extraVars, "extra-vars", "e", nil, "extra variables: key=value, @file.yml or a JSON object")
	cmd.Flags().StringVar(&f.cluster, "cluster", "", "the cluster (etcd_cluster_name) to act on, when the inventory's etcd group holds several")
	f.registerStateDir(cmd)
}

// needInventory is the error of a verb run without -i.
func (f *loadFlags) needInventory() error {
	if len(f.inventories) == 0 {
		return invalid(fmt.Errorf("no inventory: pass -i FILE (or set ETCDPLAY_INVENTORY)"))
	}
	return nil
}

// loadInventory merges the -i sources.
func (f *loadFlags) loadInventory() (*inventory.Inventory, error) {
	if err := f.needInventory(); err != nil {
		return nil, err
	}
	inv, err := inventory.LoadAll(f.inventories)
	if err != nil {
		return nil, invalid(err)
	}
	return inv, nil
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
	first := "."
	if len(f.inventories) > 0 {
		first = f.inventories[0]
		if st, err := os.Stat(first); err == nil && st.IsDir() {
			// An inventory directory keeps its state inside it.
			return filepath.Join(first, ".etcdplay")
		}
	}
	return filepath.Join(filepath.Dir(first), ".etcdplay")
}

// compile loads the inventory and compiles the playbook against it. Every
// error here is invalid input: nothing has connected anywhere yet. The
// compiler's warnings go to warn, one a line.
func (f *loadFlags) compile(warn io.Writer, path string) (*inventory.Inventory, *playbook.Compiled, error) {
	inv, err := f.loadInventory()
	if err != nil {
		return nil, nil, err
	}
	extra, err := parseExtraVars(f.extraVars)
	if err != nil {
		return nil, nil, invalid(err)
	}
	limit, err := resolveLimit(f.limit)
	if err != nil {
		return nil, nil, invalid(err)
	}
	c, err := playbook.Load(path, inv, playbook.Options{ExtraVars: extra, Limit: limit, Tags: f.tags, SkipTags: f.skipTags, StateDir: f.resolveStateDir()})
	if err != nil {
		return nil, nil, invalid(err)
	}
	printWarnings(warn, c.Warnings)
	return inv, c, nil
}

// printWarnings prints the compiler's warnings, one a line.
func printWarnings(w io.Writer, warnings playbook.Errors) {
	for _, x := range warnings {
		fmt.Fprintf(w, "warning: %v\n", x)
	}
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
