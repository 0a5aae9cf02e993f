package modules

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/internal/coerce"
)

// Args are a task's module arguments after templating, as decoded from YAML
// (string, bool, int, float64, []any, map[string]any).
type Args map[string]any

// Kind is the type an argument must have.
type Kind int

const (
	String Kind = iota
	Bool
	Int
	List
	Map
	Any
	// Duration is a positive Go duration ("90s", "2m") or a bare number
	// of seconds; Args.Duration reads it.
	Duration
)

func (k Kind) String() string {
	return [...]string{"string", "bool", "int", "list", "map", "any", "duration"}[k]
}

// Param describes one argument a module accepts.
type Param struct {
	Kind     Kind
	Required bool
	// OneOf restricts a string argument to these values.
	OneOf []string
	// Valid, when set, checks a string argument's value further (a
	// version, a name); its error is the message.
	Valid func(string) error
}

// Spec is the full set of arguments a module accepts, by name.
type Spec map[string]Param

// ArgError names the offending argument so the compiler can point at its
// line in the playbook.
type ArgError struct {
	Arg  string
	Msg  string
	Hint string // closest valid name, for typos
}

func (e *ArgError) Error() string {
	if e.Hint != "" {
		return fmt.Sprintf("argument %q: %s (did you mean %q?)", e.Arg, e.Msg, e.Hint)
	}
	return fmt.Sprintf("argument %q: %s", e.Arg, e.Msg)
}

// Check validates args against the spec: unknown names (with the closest
// valid one), missing required ones, wrong types, values outside OneOf.
// Errors come back in a stable order so golden files stay stable.
func (s Spec) Check(args Args) error {
	names := make([]string, 0, len(args))
	for n := range args {
		names = append(names, n)
	}
	sort.Strings(names)
	valid := make([]string, 0, len(s))
	for n := range s {
		valid = append(valid, n)
	}
	sort.Strings(valid)
	for _, n := range names {
		p, ok := s[n]
		if !ok {
			return &ArgError{Arg: n, Msg: "unknown argument", Hint: Closest(n, valid)}
		}
		if err := p.check(args[n]); err != nil {
			return &ArgError{Arg: n, Msg: err.Error()}
		}
	}
	for _, n := range valid {
		if _, ok := args[n]; !ok && s[n].Required {
			return &ArgError{Arg: n, Msg: "is required"}
		}
	}
	return nil
}

func (p Param) check(v any) error {
	switch p.Kind {
	case Any:
		return nil
	case String:
		switch v.(type) {
		case string, int, float64: // YAML scalars such as mode: 0644 or port numbers
		default:
			return fmt.Errorf("must be a string, got %s", typeName(v))
		}
		if len(p.OneOf) > 0 {
			s := fmt.Sprint(v)
			for _, o := range p.OneOf {
				if s == o {
					return nil
				}
			}
			return fmt.Errorf("must be one of %s, got %q", strings.Join(p.OneOf, ", "), s)
		}
		if p.Valid != nil {
			return p.Valid(fmt.Sprint(v))
		}
	case Duration:
		if _, err := parseDuration(v); err != nil {
			return err
		}
	case Bool:
		if _, err := toBool(v); err != nil {
			return err
		}
	case Int:
		if _, err := toInt(v); err != nil {
			return err
		}
	case List:
		if _, ok := v.([]any); !ok {
			return fmt.Errorf("must be a list, got %s", typeName(v))
		}
	case Map:
		if _, ok := v.(map[string]any); !ok {
			return fmt.Errorf("must be a map, got %s", typeName(v))
		}
	}
	return nil
}

// Duration returns a Duration argument, or def when absent.
func (a Args) Duration(name string, def time.Duration) (time.Duration, error) {
	v, ok := a[name]
	if !ok || v == nil {
		return def, nil
	}
	d, err := parseDuration(v)
	if err != nil {
		return 0, &ArgError{Arg: name, Msg: err.Error()}
	}
	return d, nil
}

func parseDuration(v any) (time.Duration, error) {
	s := strings.TrimSpace(fmt.Sprint(v))
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("must be positive, got %d", n)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration (e.g. 60s, 2m, or seconds)", s)
	}
	return d, nil
}

// Str returns a string argument, or def when absent.
func (a Args) Str(name, def string) string {
	v, ok := a[name]
	if !ok || v == nil {
		return def
	}
	return fmt.Sprint(v)
}

// Bool returns a boolean argument ("yes", "true", true, ...), or def.
func (a Args) Bool(name string, def bool) bool {
	v, ok := a[name]
	if !ok || v == nil {
		return def
	}
	b, err := toBool(v)
	if err != nil {
		return def
	}
	return b
}

// Int returns an integer argument, or def.
func (a Args) Int(name string, def int) int {
	v, ok := a[name]
	if !ok || v == nil {
		return def
	}
	n, err := toInt(v)
	if err != nil {
		return def
	}
	return n
}

// Strings returns a list argument as strings (a single string is a list
// of one).
func (a Args) Strings(name string) []string {
	switch v := a[name].(type) {
	case nil:
		return nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case []string:
		return v
	default:
		return []string{fmt.Sprint(v)}
	}
}

func toBool(v any) (bool, error) {
	if b, ok := coerce.Bool(v); ok {
		return b, nil
	}
	return false, fmt.Errorf("must be a boolean, got %s %v", typeName(v), v)
}

func toInt(v any) (int, error) {
	if n, ok := coerce.Int(v); ok {
		return n, nil
	}
	return 0, fmt.Errorf("must be an integer, got %s %v", typeName(v), v)
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case int, int64:
		return "int"
	case float64:
		return "number"
	case []any:
		return "list"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

// Closest returns the candidate nearest to name by edit distance, or "" when
// nothing is close enough to be a plausible typo.
func Closest(name string, candidates []string) string {
	best, bestD := "", len(name)/2+2
	for _, c := range candidates {
		if d := EditDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
