package inventory

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/internal/yamlpos"
)

// parseINI reads Ansible's INI layout:
//
//	host1 ansible_host=10.0.0.1        # before any section: ungrouped
//	[etcd]
//	etcd[1:3] ansible_user=admin
//	etcd4:2222                          # host:port
//	[cluster:children]
//	etcd
//	[etcd:vars]
//	etcd_version=v3.6.16
//
// Values are typed as Ansible's ini plugin types them (iniValue).
func (inv *Inventory) parseINI(data []byte) error {
	st := iniSection{name: "ungrouped", kind: "hosts"}
	var errs yamlpos.Errors
	for i, raw := range strings.Split(string(data), "\n") {
		if e := inv.iniLine(&st, raw, i+1); e != nil {
			errs = append(errs, e)
		}
	}
	return errs.Err()
}

// iniSection is the section the lines being read belong to; kind "" after
// a bad header, whose lines are skipped rather than misread.
type iniSection struct{ name, kind string }

// iniLine reads one line into the inventory, or says what is wrong with it.
func (inv *Inventory) iniLine(st *iniSection, raw string, lineNo int) *Error {
	line := strings.TrimSpace(raw)
	col := strings.Index(raw, line) + 1
	if line == "" || line[0] == '#' || line[0] == ';' {
		return nil
	}
	errf := func(field, format string, args ...any) *Error {
		return yamlpos.Errorf(Pos{File: inv.File, Line: lineNo, Column: col}, field, format, args...)
	}
	if line[0] == '[' {
		st.kind = ""
		if !strings.HasSuffix(line, "]") {
			return errf("", "section header %q is missing its closing ]", line)
		}
		name := strings.TrimSpace(line[1 : len(line)-1])
		section, kind := name, "hosts"
		if g, k, ok := strings.Cut(name, ":"); ok {
			section, kind = g, k
		}
		if kind != "hosts" && kind != "vars" && kind != "children" {
			return errf(name, "unknown section kind %q, want :vars or :children", kind)
		}
		if err := checkName(section); err != nil {
			return errf(name, "%v", err)
		}
		st.name, st.kind = section, kind
		inv.group(section)
		return nil
	}
	section := st.name
	switch st.kind {
	case "hosts":
		fields, err := splitINI(line)
		if err != nil {
			return errf(section, "%v", err)
		}
		name, port, hasPort := splitHostPort(fields[0])
		vars := map[string]any{}
		if hasPort {
			vars["ansible_port"] = port
		}
		for _, f := range fields[1:] {
			k, v, ok := strings.Cut(f, "=")
			if !ok || k == "" {
				return errf(fields[0], "expected key=value, got %q", f)
			}
			vars[k] = iniValue(v)
		}
		names, err := hostNames(name)
		if err != nil {
			return errf(section, "%v", err)
		}
		for _, hn := range names {
			inv.addHost(section, hn)
			h := inv.host(hn)
			for k, v := range vars {
				h.inline[k] = v
				h.inlineAt[k] = Pos{File: inv.File, Line: lineNo, Column: col}
			}
		}
	case "children":
		if err := checkName(line); err != nil {
			return errf(section+":children", "%v", err)
		}
		inv.addChild(section, line)
	case "vars":
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return errf(section+":vars", "expected key=value, got %q", line)
		}
		g := inv.group(section)
		g.vars[k] = iniValue(strings.TrimSpace(v))
		g.varsAt[k] = Pos{File: inv.File, Line: lineNo, Column: col}
	}
	return nil
}

// splitINI splits a host line on whitespace, keeping quoted values whole
// and stopping at a # comment.
func splitINI(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	var quote rune
	inField := false
	for _, r := range line {
		switch {
		case quote != 0:
			cur.WriteRune(r)
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
			inField = true
			cur.WriteRune(r)
		case r == '#' && !inField:
			return finishFields(out, &cur), nil
		case unicode.IsSpace(r):
			if inField {
				out = append(out, cur.String())
				cur.Reset()
				inField = false
			}
		default:
			inField = true
			cur.WriteRune(r)
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	return finishFields(out, &cur), nil
}

func finishFields(out []string, cur *strings.Builder) []string {
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// iniValue types a value the way Ansible's ini plugin does
// (lib/ansible/plugins/inventory/ini.py, _parse_value): Python's
// ast.literal_eval, the value kept as a string when it is not a literal.
// The plugin does this for host lines and :vars lines alike (its docs say
// :vars values stay strings; the code has types them since 2.4, and an
// inventory must mean the same under both tools). So: quoted strings lose
// their quotes, True/False/None, Python integers (0x1f, 1_000; not 0644,
// which Python refuses, so a file mode stays the string "0644") and
// floats, and lists and dicts; "true", "yes" or "FALSE" stay strings.
func iniValue(s string) any {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	switch s {
	case "True":
		return true
	case "False":
		return false
	case "None":
		return nil
	}
	if pyIntRE.MatchString(s) {
		if n, err := strconv.ParseInt(s, 0, 64); err == nil {
			return int(n)
		}
	}
	if pyFloatRE.MatchString(s) && strings.ContainsAny(s, ".eE") { // digits alone are an int or nothing
		if f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64); err == nil {
			return f
		}
	}
	if s != "" && (s[0] == '[' || s[0] == '{' || s[0] == '(') {
		// Python's list, dict and tuple literals are YAML flow collections
		// but for tuples' parentheses.
		var v any
		text := s
		if s[0] == '(' && s[len(s)-1] == ')' {
			text = "[" + s[1:len(s)-1] + "]"
		}
		if err := yaml.Unmarshal([]byte(text), &v); err == nil {
			switch v.(type) {
			case []any, map[string]any:
				return v
			}
		}
	}
	return s
}

var (
	// Python 3 integer literals: no leading zeros on decimals.
	pyIntRE   = regexp.MustCompile(`^[+-]?(0+|[1-9](_?[0-9])*|0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+)$`)
	pyFloatRE = regexp.MustCompile(`^[+-]?([0-9](_?[0-9])*)?(\.([0-9](_?[0-9])*)?)?([eE][+-]?[0-9](_?[0-9])*)?$`)
)

// splitHostPort splits "name:port" (not an IPv6 address).
func splitHostPort(s string) (string, int, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.Count(s, ":") > 1 {
		return s, 0, false
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil {
		return s, 0, false
	}
	return s[:i], p, true
}

// hostNames checks a host name or pattern as written and expands it. A
// name becomes a file name (host_vars/<name>) and an SSH target: no
// control characters, whitespace or '/'.
func hostNames(name string) ([]string, error) {
	if name == "" {
		return nil, fmt.Errorf("empty host name")
	}
	if len(name) > 253 || !utf8.ValidString(name) {
		return nil, fmt.Errorf("host name %.40q...: at most 253 bytes of UTF-8", name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '/' || r == ' ' || r == '\\' {
			return nil, fmt.Errorf("host name %q: control characters, spaces, '/' and '\\' are not allowed", name)
		}
	}
	return expandRange(name)
}

// maxRangeHosts bounds what one host pattern may expand to: a typo such as
// node[1:9999999999] must be an error, not a controller out of memory.
const maxRangeHosts = 10_000

// expandRange expands Ansible host ranges: etcd[1:3], etcd[01:10:2],
// node-[a:c]. A name without brackets is itself.
func expandRange(name string) ([]string, error) {
	open := strings.IndexByte(name, '[')
	if open < 0 {
		return []string{name}, nil
	}
	end := strings.IndexByte(name[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("host range %q is missing its closing ]", name)
	}
	end += open
	head, spec, tail := name[:open], name[open+1:end], name[end+1:]
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("host range %q: want [start:end] or [start:end:step]", name)
	}
	step := 1
	if len(parts) == 3 {
		n, err := strconv.Atoi(parts[2])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("host range %q: bad step %q", name, parts[2])
		}
		step = n
	}
	rest, err := expandRange(tail)
	if err != nil {
		return nil, err
	}
	var items []string
	lo, hi := parts[0], parts[1]
	if a, err1 := strconv.Atoi(lo); err1 == nil {
		b, err := strconv.Atoi(hi)
		if err != nil || b < a {
			return nil, fmt.Errorf("host range %q: bad bounds", name)
		}
		if n := (b-a)/step + 1; n > maxRangeHosts || n < 1 {
			return nil, fmt.Errorf("host range %q names %d hosts; one range may name at most %d", name, uint(b-a)/uint(step)+1, maxRangeHosts)
		}
		for n := a; n <= b; n += step {
			s := strconv.Itoa(n)
			if len(lo) > 1 && lo[0] == '0' { // zero-padded: etcd[01:10]
				s = fmt.Sprintf("%0*d", len(lo), n)
			}
			items = append(items, s)
		}
	} else if len(lo) == 1 && len(hi) == 1 && lo[0] <= hi[0] {
		for c := lo[0]; c <= hi[0]; c += byte(step) {
			items = append(items, string(c))
			if int(c)+step > 255 {
				break
			}
		}
	} else {
		return nil, fmt.Errorf("host range %q: bad bounds", name)
	}
	if len(items)*len(rest) > maxRangeHosts {
		return nil, fmt.Errorf("host range %q names %d hosts; one range may name at most %d", name, len(items)*len(rest), maxRangeHosts)
	}
	var out []string
	for _, it := range items {
		for _, r := range rest {
			out = append(out, head+it+r)
		}
	}
	return out, nil
}
