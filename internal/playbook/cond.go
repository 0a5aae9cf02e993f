package playbook

import (
	"fmt"

	"github.com/etcdplay/etcdplay/internal/tmpl"
)

// Holds renders conditions (when, changed_when, until) against data and
// reports whether all of them hold. The runner uses it for conditions that
// read results registered at run time.
func Holds(field string, conds []string, data map[string]any) (bool, error) {
	for _, c := range conds {
		v, err := tmpl.Value(field, wrapCond(c), data)
		if err != nil {
			return false, fmt.Errorf("%s %q: %w", field, c, err)
		}
		if !truthy(v) {
			return false, nil
		}
	}
	return true, nil
}
