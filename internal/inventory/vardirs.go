package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/internal/yamlpos"
)

// loadVarDirs reads group_vars/ and host_vars/ beside the inventory file.
// Each entry is <name>, <name>.yml, <name>.yaml or <name>.json, or a
// directory <name>/ whose YAML files are merged in lexical order.
func (inv *Inventory) loadVarDirs(dir string) error {
	for _, name := range inv.order {
		vars, at, err := readVarsEntry(filepath.Join(dir, "group_vars"), name)
		if err != nil {
			return err
		}
		g := inv.groups[name]
		g.fileVars, g.fileVarsAt = mergeVars(g.fileVars, g.fileVarsAt, vars, at)
	}
	for _, h := range inv.hosts {
		vars, at, err := readVarsEntry(filepath.Join(dir, "host_vars"), h.Name)
		if err != nil {
			return err
		}
		h.fileVars, h.fileVarsAt = mergeVars(h.fileVars, h.fileVarsAt, vars, at)
	}
	return nil
}

// mergeVars layers the vars of a later inventory source over an earlier
// one's, as Ansible merges several -i sources in order.
func mergeVars(old map[string]any, oldAt map[string]Pos, vars map[string]any, at map[string]Pos) (map[string]any, map[string]Pos) {
	if old == nil {
		return vars, at
	}
	for k, v := range vars {
		old[k] = v
		oldAt[k] = at[k]
	}
	return old, oldAt
}

func readVarsEntry(dir, name string) (map[string]any, map[string]Pos, error) {
	out := map[string]any{}
	outAt := map[string]Pos{}
	for _, ext := range []string{"", ".yml", ".yaml", ".json"} {
		p := filepath.Join(dir, name+ext)
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("inventory: %w", err)
		}
		files := []string{p}
		if st.IsDir() {
			files = nil
			err := filepath.WalkDir(p, func(f string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				switch strings.ToLower(filepath.Ext(f)) {
				case ".yml", ".yaml", ".json":
					if !d.IsDir() {
						files = append(files, f)
					}
				}
				return nil
			})
			if err != nil {
				return nil, nil, fmt.Errorf("inventory: %w", err)
			}
			sort.Strings(files)
		}
		for _, f := range files {
			vars, at, err := readVarsFile(f)
			if err != nil {
				return nil, nil, err
			}
			for k, v := range vars {
				out[k] = v
				outAt[k] = at[k]
			}
		}
	}
	return out, outAt, nil
}

func readVarsFile(path string) (map[string]any, map[string]Pos, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("inventory: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, yamlpos.DecodeError(path, err)
	}
	if len(doc.Content) == 0 || yamlpos.IsNull(doc.Content[0]) {
		return nil, nil, nil
	}
	if strings.HasPrefix(doc.Content[0].Tag, "!vault") || strings.HasPrefix(strings.TrimSpace(string(data)), "$ANSIBLE_VAULT") {
		return nil, nil, &Error{Pos: Pos{File: path}, Msg: "ansible-vault encrypted files are not supported; decrypt it or pass the secret with -e @file"}
	}
	tmp := &Inventory{File: path}
	vars, at, verr := tmp.varsOf(doc.Content[0], "vars")
	if verr != nil { // returned as error only when set: a nil *Error is not a nil error
		return nil, nil, verr
	}
	return vars, at, nil
}
