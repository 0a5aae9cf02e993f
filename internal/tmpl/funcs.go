package tmpl

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/internal/coerce"
)

// FuncNames lists the template functions (besides text/template's own),
// for documentation and hints.
func FuncNames() []string { return funcNames(static) }

// static are the template functions. Those that read other variables
// (hostvar, collect, __get) take the root data as a hidden first argument:
// the parse tree is rewritten to pass $, so one set of functions, and one
// parsed template per text, serves every host.
var static = funcs()

// dataFuncs take $ as their first argument after rewriting.
var dataFuncs = map[string]bool{"hostvar": true, "collect": true, "__get": true, "__defined": true}

func funcNames(m map[string]any) []string {
	var out []string
	for n := range m {
		if !strings.HasPrefix(n, "__") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// funcs are the functions templates may call. Argument order follows the
// pipeline convention: the piped value comes last (`.xs | join ","`).
func funcs() map[string]any {
	return map[string]any{
		// default d v: v, or d when v is undefined, nil or "".
		"default": func(d, v any) any {
			if v == nil || v == "" {
				return d
			}
			return v
		},
		"join": func(sep string, list any) (string, error) {
			xs, err := toList(list)
			if err != nil {
				return "", fmt.Errorf("join: %w", err)
			}
			parts := make([]string, len(xs))
			for i, x := range xs {
				parts[i] = fmt.Sprint(x)
			}
			return strings.Join(parts, sep), nil
		},
		"split": func(sep, s string) []any {
			var out []any
			for _, p := range strings.Split(s, sep) {
				out = append(out, p)
			}
			return out
		},
		// quote quotes for a POSIX shell, like Ansible's quote filter.
		"quote":   func(v any) string { return shellQuote(fmt.Sprint(v)) },
		"lower":   func(s string) string { return strings.ToLower(s) },
		"upper":   func(s string) string { return strings.ToUpper(s) },
		"trim":    func(s string) string { return strings.TrimSpace(s) },
		"replace": func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"b64enc": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"b64dec": func(s string) (string, error) {
			b, err := base64.StdEncoding.DecodeString(s)
			return string(b), err
		},
		"sha256": func(s string) string {
			sum := sha256.Sum256([]byte(s))
			return hex.EncodeToString(sum[:])
		},
		"toYaml": func(v any) (string, error) {
			b, err := yaml.Marshal(v)
			return strings.TrimSuffix(string(b), "\n"), err
		},
		"toJson": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"int":    toInt,
		"string": func(v any) string { return fmt.Sprint(v) },
		// hostvar h name: another host's variable (hostvars.h.name), an
		// error naming it when undefined.
		"hostvar": func(data map[string]any, host, name string) (any, error) {
			if v, ok := lookup(data, []string{"hostvars", host, name}); ok {
				return v, nil
			}
			return nil, &undefinedError{path: "hostvars." + host + "." + name}
		},
		// collect g name: the variable name of every host of group g, in
		// inventory order, as a list (endpoints, peer URLs).
		"collect": func(data map[string]any, group, name string) ([]any, error) {
			hs, ok := lookup(data, []string{"groups", group})
			if !ok {
				return nil, &undefinedError{path: "groups." + group}
			}
			list, err := toList(hs)
			if err != nil {
				return nil, err
			}
			out := make([]any, 0, len(list))
			for _, h := range list {
				v, ok := lookup(data, []string{"hostvars", fmt.Sprint(h), name})
				if !ok {
					return nil, &undefinedError{path: fmt.Sprintf("hostvars.%v.%s", h, name)}
				}
				out = append(out, v)
			}
			return out, nil
		},
		// list a b c: a list of its arguments.
		"list": func(xs ...any) []any { return xs },
		"__get": func(data map[string]any, path string) any {
			v, _ := lookup(data, strings.Split(path, "."))
			return v
		},
		// Ansible's comparisons, membership, bool filter and defined
		// test, for translated Jinja expressions (jinja.go).
		"__eq": func(a, b any) bool { return looseEqual(a, b) },
		"__ne": func(a, b any) bool { return !looseEqual(a, b) },
		"__in": func(x, in any) (bool, error) {
			switch c := in.(type) {
			case string:
				return strings.Contains(c, fmt.Sprint(x)), nil
			case map[string]any:
				_, ok := c[fmt.Sprint(x)]
				return ok, nil
			}
			xs, err := toList(in)
			if err != nil {
				return false, fmt.Errorf("in: %w", err)
			}
			for _, y := range xs {
				if looseEqual(x, y) {
					return true, nil
				}
			}
			return false, nil
		},
		"__bool": func(v any) bool {
			switch t := v.(type) {
			case bool:
				return t
			case string:
				switch strings.ToLower(strings.TrimSpace(t)) {
				case "true", "yes", "on", "1", "y":
					return true
				}
				return false
			case int:
				return t != 0
			case float64:
				return t != 0
			}
			return v != nil
		},
		"__defined": func(data map[string]any, path string) bool {
			_, ok := lookup(data, strings.Split(path, "."))
			return ok
		},
		// __capture is replaced per render for whole-action templates.
		"__capture": func(any) string { return "" },
	}
}

func lookup(data map[string]any, path []string) (any, bool) {
	var cur any = data
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func toList(v any) ([]any, error) {
	switch t := v.(type) {
	case []any:
		return t, nil
	case []string:
		out := make([]any, len(t))
		for i, s := range t {
			out[i] = s
		}
		return out, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("want a list, got %T", v)
}

// toInt is the int filter: a whole number as everywhere (coerce.Int),
// and as in Jinja a fraction truncated and a bool 1 or 0.
func toInt(v any) (int, error) {
	if n, ok := coerce.Int(v); ok {
		return n, nil
	}
	switch t := v.(type) {
	case float64:
		return int(t), nil
	case bool:
		if t {
			return 1, nil
		}
		return 0, nil
	case string:
		return 0, fmt.Errorf("int: %q is not an integer", t)
	}
	return 0, fmt.Errorf("int: cannot convert %T", v)
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%_-+=:,./") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// looseEqual compares as Ansible does: numbers by value whatever their
// type, anything else by its value.
func looseEqual(a, b any) bool {
	if fa, ok := number(a); ok {
		if fb, ok := number(b); ok {
			return fa == fb
		}
	}
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func number(v any) (float64, bool) {
	switch t := v.(type) {
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case float64:
		return t, true
	}
	return 0, false
}
