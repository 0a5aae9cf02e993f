package etcd

import (
	"fmt"
	"strings"

	"github.com/etcdplay/etcdplay/internal/coerce"
)

// VarError names the variable (and the host whose value it is, when the
// value is per member) that makes the cluster model invalid.
type VarError struct {
	Var  string
	Host string // empty for cluster-wide problems
	Msg  string
}

// Variable names the variable: the compiler reports a problem with a
// variable once, however many tasks and hosts read it.
func (e *VarError) Variable() string { return e.Var }

// VarHost names the host whose value it is ("" for a cluster-wide one).
func (e *VarError) VarHost() string { return e.Host }

func (e *VarError) Error() string {
	if e.Host == "" {
		return fmt.Sprintf("variable %s: %s", e.Var, e.Msg)
	}
	return fmt.Sprintf("variable %s (host %s): %s", e.Var, e.Host, e.Msg)
}

// varReader reads typed variables from one host's vars, remembering the
// first problem with each so FromVars reports every bad variable at once.
type varReader struct {
	vars map[string]any
	host string // set for per-member reads
	errs *[]error
}

func (r varReader) fail(name, format string, args ...any) {
	*r.errs = append(*r.errs, &VarError{Var: name, Host: r.host, Msg: fmt.Sprintf(format, args...)})
}

func (r varReader) has(name string) bool {
	v, ok := r.vars[name]
	return ok && v != nil
}

func (r varReader) str(name, def string) string {
	v, ok := r.vars[name]
	if !ok || v == nil {
		return def
	}
	switch t := v.(type) {
	case string:
		if t == "" {
			return def
		}
		return t
	case int, int64, float64, bool:
		return fmt.Sprint(t)
	}
	r.fail(name, "must be a string, got %T", v)
	return def
}

func (r varReader) integer(name string, def int) int {
	v, ok := r.vars[name]
	if !ok || v == nil {
		return def
	}
	if n, ok := coerce.Int(v); ok {
		return n
	}
	r.fail(name, "must be an integer, got %v", v)
	return def
}

func (r varReader) boolean(name string, def bool) bool {
	v, ok := r.vars[name]
	if !ok || v == nil {
		return def
	}
	if b, ok := coerce.Bool(v); ok {
		return b
	}
	r.fail(name, "must be true or false, got %v", v)
	return def
}

func (r varReader) list(name string, def []string) []string {
	v, ok := r.vars[name]
	if !ok || v == nil {
		return def
	}
	switch t := v.(type) {
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case []string:
		return append([]string(nil), t...)
	case string:
		// A comma-separated string is what a -e override can carry.
		var out []string
		for _, p := range strings.Split(t, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	r.fail(name, "must be a list, got %T", v)
	return def
}

func (r varReader) size(name string, def int64) int64 {
	v, ok := r.vars[name]
	if !ok || v == nil {
		return def
	}
	n, err := ParseSize(v)
	if err != nil {
		r.fail(name, "%v", err)
		return def
	}
	return n
}
