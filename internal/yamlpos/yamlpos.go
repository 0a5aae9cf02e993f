// Package yamlpos is how the inventory and playbook readers say where a
// problem was written: a position (file, line, column) taken from yaml.v3
// nodes or its decode errors, an error that reads
// `file:line:col: field: msg (did you mean "hint"?)`, and the list of
// every problem found, sorted by position, so a reader reports them all at
// once. It also names what a node holds, for "want a mapping, got ..."
// messages.
package yamlpos

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pos is where something was written: a file, and its 1-based line and
// column when known.
type Pos struct {
	File   string
	Line   int
	Column int
}

// At is the position of n in file (the file alone when n is nil).
func At(file string, n *yaml.Node) Pos {
	if n == nil {
		return Pos{File: file}
	}
	return Pos{File: file, Line: n.Line, Column: n.Column}
}

func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// Error is one problem, at the place it was written.
type Error struct {
	Pos Pos
	// Field says what is wrong, as a path ("p1.t3.file.mode",
	// "etcd.hosts.etcd1").
	Field string
	Msg   string
	// Hint is the closest valid name, for typos.
	Hint string
}

// Errorf is an Error at pos.
func Errorf(pos Pos, field, format string, args ...any) *Error {
	return &Error{Pos: pos, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Pos.File != "" {
		b.WriteString(e.Pos.String())
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		fmt.Fprintf(&b, " (did you mean %q?)", e.Hint)
	}
	return b.String()
}

// Errors is every problem found. errors.As finds each *Error inside it.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual errors to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Sort orders the errors by file, line and column, keeping the order of
// errors at one place.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// Err is the errors sorted, or nil when there are none.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	es.Sort()
	return es
}

// IsNull reports whether n is absent or YAML's null (`~`, `null`, nothing).
func IsNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// KindName names what n holds: "a mapping", "a list", `str "x"`,
// `int "3"`, "nothing".
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		tag := strings.TrimPrefix(n.ShortTag(), "!!")
		if tag == "null" {
			return "nothing"
		}
		return fmt.Sprintf("%s %q", tag, n.Value)
	case yaml.AliasNode:
		return KindName(n.Alias)
	}
	return "nothing"
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// DecodeError places a yaml.v3 error ("yaml: line N: msg") in file at its
// line, so it reads like every other error.
func DecodeError(file string, err error) *Error {
	s := strings.SplitN(err.Error(), "\n", 2)[0]
	if m := lineRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &Error{Pos: Pos{File: file, Line: n}, Msg: m[2]}
	}
	return &Error{Pos: Pos{File: file}, Msg: Message(err)}
}

// Message is a yaml.v3 error without its "yaml: " prefix.
func Message(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}
