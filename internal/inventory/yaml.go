package inventory

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/modules"
)

func (inv *Inventory) errAt(n *yaml.Node, field, format string, args ...any) *Error {
	e := &Error{File: inv.File, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

func (inv *Inventory) parseYAML(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := YAMLErrorLine(err)
		return &Error{File: inv.File, Line: line, Msg: msg}
	}
	if len(doc.Content) == 0 {
		return nil // an empty inventory is legal
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return inv.errAt(root, "", "an inventory must be a mapping of groups (all: ...), got %s", kindName(root))
	}
	for i := 0; i < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if err := inv.yamlGroup(k.Value, v, ""); err != nil {
			return err
		}
	}
	return nil
}

// yamlGroup reads one group: a mapping with hosts, vars and children, or
// null for an empty group.
func (inv *Inventory) yamlGroup(name string, n *yaml.Node, parent string) error {
	if err := checkName(name); err != nil {
		return inv.errAt(n, name, "%v", err)
	}
	inv.group(name)
	if parent != "" {
		inv.addChild(parent, name)
	}
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return inv.errAt(n, name, "a group must be a mapping with hosts, vars or children, got %s", kindName(n))
	}
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := name + "." + k.Value
		switch k.Value {
		case "hosts":
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				return inv.errAt(v, field, "must be a mapping of host names, got %s", kindName(v))
			}
			for j := 0; j < len(v.Content); j += 2 {
				hk, hv := v.Content[j], v.Content[j+1]
				names, err := hostNames(hk.Value)
				if err != nil {
					return inv.errAt(hk, field, "%v", err)
				}
				vars, at, err := inv.varsOf(hv, field+"."+hk.Value)
				if err != nil {
					return err
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
			vars, at, err := inv.varsOf(v, field)
			if err != nil {
				return err
			}
			g := inv.group(name)
			for key, val := range vars {
				g.vars[key] = val
				g.varsAt[key] = at[key]
			}
		case "children":
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				return inv.errAt(v, field, "must be a mapping of group names, got %s", kindName(v))
			}
			for j := 0; j < len(v.Content); j += 2 {
				if err := inv.yamlGroup(v.Content[j].Value, v.Content[j+1], name); err != nil {
					return err
				}
			}
		default:
			hint := ""
			if c := modules.Closest(k.Value, []string{"hosts", "vars", "children"}); c != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", c)
			}
			return inv.errAt(k, field, "unknown key in group %q, want hosts, vars or children%s", name, hint)
		}
	}
	return nil
}

// varsOf decodes a mapping of variables (null is no variables), and says
// where each value is written.
func (inv *Inventory) varsOf(n *yaml.Node, field string) (map[string]any, map[string]Pos, error) {
	if isNull(n) {
		return nil, nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, nil, inv.errAt(n, field, "must be a mapping of variables, got %s", kindName(n))
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return nil, nil, inv.errAt(n, field, "%s", yamlMsg(err))
	}
	at := map[string]Pos{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		v := n.Content[i+1]
		at[n.Content[i].Value] = Pos{File: inv.File, Line: v.Line, Column: v.Column}
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

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
	case yaml.AliasNode:
		return kindName(n.Alias)
	}
	return "nothing"
}

// yamlMsg strips yaml.v3's "yaml: " prefix.
func yamlMsg(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// YAMLErrorLine splits yaml.v3's "yaml: line N: msg" into N and msg, so the
// line can go into a file:line:column prefix like every other error.
func YAMLErrorLine(err error) (int, string) {
	s := strings.SplitN(err.Error(), "\n", 2)[0]
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, m[2]
	}
	return 0, yamlMsg(err)
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
