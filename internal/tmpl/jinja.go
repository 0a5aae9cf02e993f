package tmpl

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Ansible's expressions. A template whose actions are not Go template
// syntax is read as Jinja, the way Ansible users write it, and
// translated to the equivalent Go template pipeline before parsing:
//
//	etcd_version == "v3.6.16"          (__eq .etcd_version "v3.6.16")
//	x is defined / x is not defined    (__defined $ "x") / (not ...)
//	x | default('v')                   (default "v" .x)
//	groups['etcd'] | join(',')         (join "," (index .groups "etcd"))
//	hostvars[h]['ansible_host']        (index (index .hostvars .h) "ansible_host")
//	a and not b or c in xs             (or (and .a (not .b)) (__in .c .xs))
//
// What Jinja has and etcdplay does not (statements {% %}, arithmetic,
// unknown filters and tests) is an error naming the etcdplay spelling.

// jinjaFilters maps Ansible filters to template functions and how many
// arguments they take (besides the piped value).
var jinjaFilters = map[string]struct {
	fn       string
	min, max int
}{
	"default": {fn: "default", min: 1, max: 1},
	"d":       {fn: "default", min: 1, max: 1},
	"join":    {fn: "join", min: 1, max: 1},
	"lower":   {fn: "lower"},
	"upper":   {fn: "upper"},
	"trim":    {fn: "trim"},
	"int":     {fn: "int"},
	"string":  {fn: "string"},
	"bool":    {fn: "__bool"},
	"length":  {fn: "len"},
	"count":   {fn: "len"},
	"quote":   {fn: "quote"},
	"replace": {fn: "replace", min: 2, max: 2},
	"split":   {fn: "split", min: 1, max: 1},
}

// translateJinja rewrites every {{ action }} of text from Jinja to Go
// template syntax.
func translateJinja(text string) (string, error) {
	if strings.Contains(text, "{%") {
		return "", fmt.Errorf("statements ({%% ... %%}) are not supported: use when: on the task, or a template file")
	}
	var b strings.Builder
	rest := text
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return "", fmt.Errorf("unclosed {{")
		}
		b.WriteString(rest[:i])
		expr := rest[i+2 : i+j]
		if first := strings.Fields(strings.Trim(expr, "- ")); len(first) > 0 && goKeywords[first[0]] {
			return "", fmt.Errorf("%q is Go template syntax", first[0])
		}
		out, err := jinjaExpr(strings.Trim(expr, "- "))
		if err != nil {
			return "", err
		}
		b.WriteString("{{ " + out + " }}")
		rest = rest[i+j+2:]
	}
}

// goKeywords start Go template actions: such a text is not Jinja.
var goKeywords = map[string]bool{"if": true, "else": true, "end": true, "range": true, "with": true,
	"define": true, "template": true, "block": true, "break": true, "continue": true}

type jtok struct {
	kind string // "name", "num", "str", "op"
	s    string
}

func jinjaTokens(s string) ([]jtok, error) {
	var out []jtok
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '_' || unicode.IsLetter(c):
			j := i
			for j < len(s) && (s[j] == '_' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			out = append(out, jtok{"name", s[i:j]})
			i = j
		case unicode.IsDigit(c):
			j := i
			for j < len(s) && (unicode.IsDigit(rune(s[j])) || s[j] == '.') {
				j++
			}
			out = append(out, jtok{"num", s[i:j]})
			i = j
		case c == '\'' || c == '"':
			j := i + 1
			var lit strings.Builder
			for ; j < len(s) && s[j] != s[i]; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				lit.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string in %q", s)
			}
			out = append(out, jtok{"str", lit.String()})
			i = j + 1
		default:
			two := ""
			if i+1 < len(s) {
				two = s[i : i+2]
			}
			switch two {
			case "==", "!=", "<=", ">=":
				out = append(out, jtok{"op", two})
				i += 2
				continue
			}
			if c == '.' && (i == 0 || unicode.IsSpace(rune(s[i-1]))) {
				// ".x" or "f .x": Go template syntax, not Jinja.
				return nil, fmt.Errorf("%q is Go template syntax", s)
			}
			if !strings.ContainsRune("()[].,|<>", c) {
				return nil, fmt.Errorf("%q is not supported in an expression", string(c))
			}
			out = append(out, jtok{"op", string(c)})
			i++
		}
	}
	return out, nil
}

type jparser struct {
	toks []jtok
	i    int
}

func jinjaExpr(s string) (string, error) {
	toks, err := jinjaTokens(s)
	if err != nil {
		return "", err
	}
	if len(toks) == 0 {
		return "", fmt.Errorf("empty expression")
	}
	p := &jparser{toks: toks}
	out, err := p.or()
	if err != nil {
		return "", err
	}
	if p.i < len(p.toks) {
		return "", fmt.Errorf("unexpected %q in %q", p.toks[p.i].s, s)
	}
	return out, nil
}

func (p *jparser) peek() jtok {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return jtok{}
}

func (p *jparser) accept(kind, s string) bool {
	if t := p.peek(); t.kind == kind && t.s == s {
		p.i++
		return true
	}
	return false
}

func (p *jparser) expect(s string) error {
	if !p.accept("op", s) {
		return fmt.Errorf("expected %q, got %q", s, p.peek().s)
	}
	return nil
}

func (p *jparser) or() (string, error) {
	l, err := p.and()
	for err == nil && p.accept("name", "or") {
		var r string
		if r, err = p.and(); err == nil {
			l = "(or " + l + " " + r + ")"
		}
	}
	return l, err
}

func (p *jparser) and() (string, error) {
	l, err := p.not()
	for err == nil && p.accept("name", "and") {
		var r string
		if r, err = p.not(); err == nil {
			l = "(and " + l + " " + r + ")"
		}
	}
	return l, err
}

func (p *jparser) not() (string, error) {
	if p.accept("name", "not") {
		x, err := p.not()
		return "(not " + x + ")", err
	}
	return p.cmp()
}

var cmpFuncs = map[string]string{"==": "__eq", "!=": "__ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}

func (p *jparser) cmp() (string, error) {
	start := p.i
	l, err := p.filtered()
	if err != nil {
		return "", err
	}
	t := p.peek()
	switch {
	case t.kind == "op" && cmpFuncs[t.s] != "":
		p.i++
		r, err := p.filtered()
		return "(" + cmpFuncs[t.s] + " " + l + " " + r + ")", err
	case t.kind == "name" && t.s == "in":
		p.i++
		r, err := p.filtered()
		return "(__in " + l + " " + r + ")", err
	case t.kind == "name" && t.s == "not" && p.i+1 < len(p.toks) && p.toks[p.i+1].s == "in":
		p.i += 2
		r, err := p.filtered()
		return "(not (__in " + l + " " + r + "))", err
	case t.kind == "name" && t.s == "is":
		p.i++
		neg := p.accept("name", "not")
		test := p.peek()
		if test.kind != "name" {
			return "", fmt.Errorf("expected a test after is")
		}
		p.i++
		var out string
		switch test.s {
		case "defined", "undefined":
			path, ok := p.path(start)
			if !ok {
				return "", fmt.Errorf("is %s applies to a variable (a.b.c)", test.s)
			}
			out = "(__defined " + strconv.Quote(path) + ")"
			if test.s == "undefined" {
				neg = !neg
			}
		case "none":
			out = "(__eq " + l + " nil)"
		case "true", "false":
			out = "(__eq " + l + " " + test.s + ")"
		default:
			return "", fmt.Errorf("test %q is not supported (defined, undefined, none, true, false are)", test.s)
		}
		if neg {
			out = "(not " + out + ")"
		}
		return out, nil
	}
	return l, nil
}

// path is the dotted variable the tokens from start up to the current
// one name, when they are a plain name.name... chain.
func (p *jparser) path(start int) (string, bool) {
	toks := p.toks[start : p.i-2]
	if p.toks[p.i-2].s == "not" {
		toks = p.toks[start : p.i-3]
	}
	var parts []string
	for i, t := range toks {
		switch {
		case i%2 == 0 && t.kind == "name":
			parts = append(parts, t.s)
		case i%2 == 1 && t.kind == "op" && t.s == ".":
		default:
			return "", false
		}
	}
	return strings.Join(parts, "."), len(parts) > 0 && len(toks)%2 == 1
}

func (p *jparser) filtered() (string, error) {
	x, err := p.postfix()
	for err == nil && p.accept("op", "|") {
		name := p.peek()
		if name.kind != "name" {
			return "", fmt.Errorf("expected a filter name after |")
		}
		p.i++
		f, ok := jinjaFilters[name.s]
		if !ok {
			return "", fmt.Errorf("filter %q is not supported (supported: default, join, lower, upper, trim, int, string, bool, length, quote, replace, split)", name.s)
		}
		var args []string
		if p.accept("op", "(") {
			for !p.accept("op", ")") {
				if len(args) > 0 {
					if err := p.expect(","); err != nil {
						return "", err
					}
				}
				a, err := p.or()
				if err != nil {
					return "", err
				}
				args = append(args, a)
			}
		}
		if name.s == "default" || name.s == "d" {
			// default(v, true) also replaces "" and false, which default
			// does anyway; with no argument, "".
			if len(args) == 0 {
				args = []string{`""`}
			}
			args = args[:1]
		}
		if name.s == "join" && len(args) == 0 {
			args = []string{`""`}
		}
		if name.s == "split" && len(args) == 0 {
			args = []string{`" "`}
		}
		if len(args) < f.min || len(args) > f.max {
			return "", fmt.Errorf("filter %s takes %d argument(s), got %d", name.s, f.max, len(args))
		}
		x = "(" + f.fn + " " + strings.Join(append(args, x), " ") + ")"
	}
	return x, err
}

func (p *jparser) postfix() (string, error) {
	x, err := p.primary()
	for err == nil {
		switch {
		case p.accept("op", "."):
			t := p.peek()
			if t.kind != "name" {
				return "", fmt.Errorf("expected a name after the dot")
			}
			p.i++
			if strings.HasPrefix(x, ".") && !strings.ContainsAny(x, " ()") {
				x += "." + t.s
			} else {
				x = "(index " + x + " " + strconv.Quote(t.s) + ")"
			}
		case p.accept("op", "["):
			var k string
			if k, err = p.or(); err != nil {
				return "", err
			}
			if err = p.expect("]"); err != nil {
				return "", err
			}
			x = "(index " + x + " " + k + ")"
		default:
			return x, nil
		}
	}
	return x, err
}

func (p *jparser) primary() (string, error) {
	t := p.peek()
	p.i++
	switch t.kind {
	case "num":
		return t.s, nil
	case "str":
		return strconv.Quote(t.s), nil
	case "name":
		switch t.s {
		case "true", "True":
			return "true", nil
		case "false", "False":
			return "false", nil
		case "none", "None":
			return "nil", nil
		}
		return "." + t.s, nil
	case "op":
		switch t.s {
		case "(":
			x, err := p.or()
			if err != nil {
				return "", err
			}
			return x, p.expect(")")
		case "[":
			var items []string
			for !p.accept("op", "]") {
				if len(items) > 0 {
					if err := p.expect(","); err != nil {
						return "", err
					}
				}
				x, err := p.or()
				if err != nil {
					return "", err
				}
				items = append(items, x)
			}
			return "(list " + strings.Join(items, " ") + ")", nil
		}
	}
	p.i--
	if t.kind == "" {
		return "", fmt.Errorf("the expression ends too early")
	}
	return "", fmt.Errorf("unexpected %q", t.s)
}
