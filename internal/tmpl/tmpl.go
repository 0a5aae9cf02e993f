// Package tmpl renders playbook values: Go text/template over a host's
// variables and facts, strict about undefined variables.
//
// Two spellings are accepted for a variable: Go's {{ .etcd_version }} and
// Ansible's {{ etcd_version }}. A bare name that is not a template function
// is read as a variable, so {{ etcd_version }}, {{ hostvars.etcd1.ansible_host }}
// and {{ etcd_version | default "v3.6.16" }} work; a variable that shares a
// function's name (join, default, ...) must be written with the dot.
//
// A value that is one whole action, "{{ .x }}" with nothing around it,
// keeps the type of what it evaluates to (a list stays a list, an int an
// int); any other text renders to a string. An undefined variable is an
// *Error with Undefined set, except as the input of default, which exists
// to supply a value for exactly that case.
package tmpl

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
)

// Error is a template that failed to parse or to render.
type Error struct {
	// Name is the name the template was given (the field it came from).
	Name string
	// Undefined is the dotted path of the undefined variable, when that
	// is what failed ("etcd_version", "hostvars.etcd9").
	Undefined string
	// Syntax is true for an error found without data: a parse error or an
	// unknown function (Check finds these).
	Syntax bool
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// ErrUndefined is matched by errors.Is for an undefined variable.
var ErrUndefined = errors.New("undefined variable")

// Is lets errors.Is(err, ErrUndefined) find undefined-variable errors.
func (e *Error) Is(target error) bool { return target == ErrUndefined && e.Undefined != "" }

// Has reports whether s contains template syntax worth rendering (or
// Jinja statements, which are refused rather than passed through).
func Has(s string) bool { return strings.Contains(s, "{{") || strings.Contains(s, "{%") }

// String renders text to a string (a whole-action template included).
func String(name, text string, data map[string]any) (string, error) {
	if !Has(text) {
		return text, nil
	}
	_, s, err := render(name, text, data, false)
	return s, err
}

// Value renders text: a whole-action template returns its value with its
// type, anything else a string. Text without "{{" is returned unchanged.
func Value(name, text string, data map[string]any) (any, error) {
	if !Has(text) {
		return text, nil
	}
	cap, s, err := render(name, text, data, true)
	if err != nil {
		return nil, err
	}
	if cap != nil && cap.set {
		return cap.val, nil
	}
	return s, nil
}

// Render renders every string inside v (maps and lists recursively, keys
// left alone) with Value and returns a new value; v is not modified. name
// prefixes the path of each string in error messages ("args.dest").
func Render(name string, v any, data map[string]any) (any, error) {
	switch t := v.(type) {
	case string:
		return Value(name, t, data)
	case map[string]any:
		out := make(map[string]any, len(t))
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys) // first error is deterministic
		for _, k := range keys {
			r, err := Render(name+"."+k, t[k], data)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			r, err := Render(fmt.Sprintf("%s[%d]", name, i), e, data)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// Check parses text without rendering it: syntax errors and unknown
// functions are found without any data.
func Check(name, text string) error {
	if !Has(text) {
		return nil
	}
	return named(compile(text, false).err, name)
}

// compiled is a parsed template, cached by text: playbooks render the same
// text for every host, and parsing dominates rendering.
type compiled struct {
	t *template.Template
	// whole is set when the text is one action whose value is captured
	// (typed rendering); path is set when that action is a plain variable
	// read, which needs no execution at all.
	whole bool
	path  []string
	err   *Error
}

type cacheKey struct {
	text  string
	typed bool
}

var cache sync.Map // cacheKey -> *compiled

func compile(text string, typed bool) *compiled {
	k := cacheKey{text, typed}
	if c, ok := cache.Load(k); ok {
		return c.(*compiled)
	}
	c := &compiled{}
	// Ansible's (Jinja) expressions first: Go template syntax (.x,
	// space-separated arguments) does not read as Jinja, and where both
	// read a text ({{ x }}, {{ x | lower }}) they mean the same. Then Go's.
	var tr *parse.Tree
	jt, jerr := translateJinja(text)
	if jerr == nil {
		tr, _ = parseRewrite(jt)
	}
	var perr *Error
	if tr == nil {
		if tr, perr = parseRewrite(text); perr != nil && jerr != nil && looksJinja(text) {
			perr.Msg += " (read as Ansible's expression: " + jerr.Error() + ")"
		}
	}
	if strings.Contains(text, "{%") {
		perr = &Error{Syntax: true, Msg: "Jinja statements ({% ... %}) are not supported: use when: on the task, or a template file with Go template actions"}
	}
	if perr != nil {
		c.err = perr
	} else {
		if typed && len(tr.Root.Nodes) == 1 {
			if a, ok := tr.Root.Nodes[0].(*parse.ActionNode); ok && len(a.Pipe.Decl) == 0 {
				c.whole = true
				if len(a.Pipe.Cmds) == 1 && len(a.Pipe.Cmds[0].Args) == 1 {
					if f, ok := a.Pipe.Cmds[0].Args[0].(*parse.FieldNode); ok {
						c.path = f.Ident
					}
				}
				a.Pipe = &parse.PipeNode{NodeType: parse.NodePipe, Pos: a.Pipe.Pos, Line: a.Pipe.Line,
					Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand, Pos: a.Pipe.Pos, Args: []parse.Node{
						&parse.IdentifierNode{NodeType: parse.NodeIdentifier, Pos: a.Pipe.Pos, Ident: "__capture"},
						a.Pipe,
					}}}}
			}
		}
		t := template.New("t").Option("missingkey=error").Funcs(static)
		if _, err := t.AddParseTree("t", tr); err != nil {
			c.err = &Error{Msg: err.Error()}
		}
		c.t = t
	}
	cache.Store(k, c)
	return c
}

var jinjaFilterCallRE = regexp.MustCompile(`\|\s*\w+\(`)

// looksJinja says text uses Ansible's expression syntax somewhere, so an
// error reading it that way is worth showing.
func looksJinja(text string) bool {
	for _, m := range []string{"==", "!=", " is ", " in ", "('", "(\"", "['", "[\"", " and ", " or ", "{%"} {
		if strings.Contains(text, m) {
			return true
		}
	}
	return jinjaFilterCallRE.MatchString(text)
}

// parseRewrite parses text as a Go template and rewrites it (bare names
// to variables, default's soft input).
func parseRewrite(text string) (*parse.Tree, *Error) {
	tr := parse.New("t")
	tr.Mode = parse.SkipFuncCheck
	if _, err := tr.Parse(text, "", "", map[string]*parse.Tree{}, static); err != nil {
		return nil, &Error{Syntax: true, Msg: syntaxMsg(err)}
	}
	if err := rewriteList(tr.Root, static); err != nil {
		err.Syntax = true
		return nil, err
	}
	return tr, nil
}

func named(e *Error, name string) error {
	if e == nil {
		return nil
	}
	cp := *e
	cp.Name = name
	return &cp
}

func render(name, text string, data map[string]any, typed bool) (*capture, string, error) {
	c := compile(text, typed)
	if c.err != nil {
		return nil, "", named(c.err, name)
	}
	if c.path != nil {
		if v, ok := lookup(data, c.path); ok {
			return &capture{val: v, set: true}, "", nil
		}
		// Not found: execute anyway, for text/template's own message.
	}
	t := c.t
	var cap *capture
	if c.whole {
		// The one function that differs per render: it receives the value.
		var err error
		if t, err = t.Clone(); err != nil {
			return nil, "", &Error{Name: name, Msg: err.Error()}
		}
		cap = &capture{}
		t.Funcs(template.FuncMap{"__capture": func(v any) string {
			cap.val, cap.set = v, true
			return ""
		}})
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, "", execError(name, err)
	}
	return cap, buf.String(), nil
}

// capture receives the value of a whole-action template during execution.
type capture struct {
	val any
	set bool
}

var (
	noEntryRE  = regexp.MustCompile(`at <([^>]*)>: map has no entry for key "([^"]*)"`)
	nilFieldRE = regexp.MustCompile(`at <([^>]*)>: nil pointer evaluating interface \{\}\.(\S+)`)
	atRE       = regexp.MustCompile(`^at <[^>]*>: `)
	prefixRE   = regexp.MustCompile(`^template: [^:]*:\d+(:\d+)?: (executing "[^"]*" )?`)
)

// execError turns text/template's execution errors into short ones; an
// undefined variable is named by its dotted path.
func execError(name string, err error) error {
	msg := err.Error()
	if m := noEntryRE.FindStringSubmatch(msg); m != nil {
		path := undefinedPath(m[1], m[2])
		return &Error{Name: name, Undefined: path, Msg: fmt.Sprintf("undefined variable %q", path)}
	}
	if m := nilFieldRE.FindStringSubmatch(msg); m != nil {
		path := undefinedPath(m[1], m[2])
		return &Error{Name: name, Undefined: path, Msg: fmt.Sprintf("undefined variable %q", path)}
	}
	var ue *undefinedError
	if errors.As(err, &ue) {
		return &Error{Name: name, Undefined: ue.path, Msg: fmt.Sprintf("undefined variable %q", ue.path)}
	}
	var ee template.ExecError
	if errors.As(err, &ee) {
		msg = ee.Err.Error()
	}
	return &Error{Name: name, Msg: atRE.ReplaceAllString(prefixRE.ReplaceAllString(msg, ""), "")}
}

// undefinedError is what functions return for an undefined variable.
type undefinedError struct{ path string }

func (e *undefinedError) Error() string { return fmt.Sprintf("undefined variable %q", e.path) }

// undefinedPath recovers the dotted path up to the missing key from the
// action text text/template quotes ("<.hostvars.etcd9.x>", key "etcd9").
func undefinedPath(expr, key string) string {
	for _, f := range strings.Fields(expr) {
		f = strings.Trim(f, "()|")
		if !strings.HasPrefix(f, ".") {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(f, "."), ".")
		for i, p := range parts {
			if p == key {
				return strings.Join(parts[:i+1], ".")
			}
		}
	}
	return key
}

var syntaxRE = regexp.MustCompile(`^template: .*?:(\d+): (.*)$`)

func syntaxMsg(err error) string {
	m := syntaxRE.FindStringSubmatch(err.Error())
	if m == nil {
		return "template syntax: " + err.Error()
	}
	if m[1] != "1" {
		return fmt.Sprintf("template syntax (line %s): %s", m[1], m[2])
	}
	return "template syntax: " + m[2]
}
