package inventory

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/internal/yamlpos"
	"github.com/etcdplay/etcdplay/modules"
)

func (inv *Inventory) errAt(n *yaml.Node, field, format string, args ...any) *Error {
	return yamlpos.Errorf(yamlpos.At(inv.File, n), field, format, args...)
}

// parseYAML reads the YAML layout and reports every problem in it, each
// where it was written, not only the first.
func (inv *Inventory) parseYAML(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return yamlpos.DecodeError(inv.File, err)
	}
	if len(doc.Content) == 0 {
		return nil // an empty inventory is legal
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return inv.errAt(root, "", "an inventory must be a mapping of groups (all: ...), got %s", yamlpos.KindName(root))
	}
	var errs yamlpos.Errors
	for i := 0; i < len(root.Content); i += 2 {
		inv.yamlGroup(root.Content[i].Value, root.Content[i+1], "", &errs)
	}
	return errs.Err()
}

// yamlGroup reads one group: a mapping with hosts, vars and children, or
// null for an empty group. Problems go to errs; what is valid is kept.
func (inv *Inventory) yamlGroup(name string, n *yaml.Node, parent string, errs *yamlpos.Errors) {
	fail := func(at *yaml.Node, field, format string, args ...any) {
		*errs = append(*errs, inv.errAt(at, field, format, args...))
	}
	if err := checkName(name); err != nil {
		fail(n, name, "%v", err)
		return
	}
	inv.group(name)
	if parent != "" {
		inv.addChild(parent, name)
	}
	if yamlpos.IsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		fail(n, name, "a group must be a mapping with hosts, vars or children, got %s", yamlpos.KindName(n))
		return
	}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := name + "." + k.Value
		switch k.Value {
		case "hosts":
			if yamlpos.IsNull(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				fail(v, field, "must be a mapping of host names, got %s", yamlpos.KindName(v))
				continue
			}
			for j := 0; j < len(v.Content); j += 2 {
				hk, hv := v.Content[j], v.Content[j+1]
				names, err := hostNames(hk.Value)
				if err != nil {
					fail(hk, field, "%v", err)
					continue
				}
				vars, at, verr := inv.varsOf(hv, field+"."+hk.Value)
				if verr != nil {
					*errs = append(*errs, verr)
				}
				for _, hn := range names {
					inv.addHost(name, hn)
					h := inv.host(hn)
					for key, val := range vars {
						h.inline[key] = val
						h.inlineAt[key] = at[key]
					}
				}
			}
		case "vars":
			vars, at, verr := inv.varsOf(v, field)
			if verr != nil {
				*errs = append(*errs, verr)
				continue
			}
			g := inv.group(name)
			for key, val := range vars {
				g.vars[key] = val
				g.varsAt[key] = at[key]
			}
		case "children":
			if yamlpos.IsNull(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				fail(v, field, "must be a mapping of group names, got %s", yamlpos.KindName(v))
				continue
			}
			for j := 0; j < len(v.Content); j += 2 {
				inv.yamlGroup(v.Content[j].Value, v.Content[j+1], name, errs)
			}
		default:
			hint := ""
			if c := modules.Closest(k.Value, []string{"hosts", "vars", "children"}); c != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", c)
			}
			fail(k, field, "unknown key in group %q, want hosts, vars or children%s", name, hint)
		}
	}
}

// varsOf decodes a mapping of variables (null is no variables), and says
// where each value is written.
func (inv *Inventory) varsOf(n *yaml.Node, field string) (map[string]any, map[string]Pos, *Error) {
	if yamlpos.IsNull(n) {
		return nil, nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, nil, inv.errAt(n, field, "must be a mapping of variables, got %s", yamlpos.KindName(n))
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return nil, nil, inv.errAt(n, field, "%s", yamlpos.Message(err))
	}
	at := map[string]Pos{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		v := n.Content[i+1]
		at[n.Content[i].Value] = yamlpos.At(inv.File, v)
	}
	return Normalize(m).(map[string]any), at, nil
}

// Normalize turns what yaml.v3 decodes into plain JSON-like values:
// map[string]any, []any, string, bool, int, float64. Non-string map keys
// become their string form.
func Normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = Normalize(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = Normalize(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = Normalize(e)
		}
		return t
	case int64:
		return int(t)
	case uint64:
		return int(t)
	}
	return v
}

func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("empty group name")
	}
	if len(name) > 253 || !utf8.ValidString(name) {
		return fmt.Errorf("group name %.40q...: at most 253 bytes of UTF-8", name)
	}
	if strings.ContainsAny(name, " \t,:!&/\\") {
		return fmt.Errorf("invalid group name %q", name)
	}
	for _, r := range name {
		// A group name becomes a file name (group_vars/<name>).
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("group name %q: control characters are not allowed", name)
		}
	}
	return nil
}
