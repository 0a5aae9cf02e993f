// Package coerce is the one reading of a yes/no or a whole number that a
// person wrote: in a playbook's arguments, an inventory, a variable or the
// environment. YAML, INI and -e hand over strings, bools and numbers alike,
// so "yes", true and 1 must all mean the same wherever they are read.
// It is a leaf: the engine and the modules both use it.
package coerce

import (
	"math"
	"strconv"
	"strings"
)

// Bool reads a truth value as Ansible does: true, yes, on, y, t and 1
// (any case, surrounding space ignored), false, no, off, n, f, 0 and the
// empty string, a bool, or the number 1 or 0. ok is false for anything
// else.
func Bool(v any) (value, ok bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case string:
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "true", "yes", "on", "y", "t", "1":
			return true, true
		case "false", "no", "off", "n", "f", "0", "":
			return false, true
		}
	case int, int64, float64:
		if n, ok := Int(t); ok && (n == 0 || n == 1) {
			return n == 1, true
		}
	}
	return false, false
}

// Int reads a whole number: an int, an integral float (YAML and JSON
// decode numbers so), or a string holding one (surrounding space ignored).
// ok is false for anything else, a fraction included.
func Int(v any) (int, bool) {
	switch t := v.(type) {
	case int:
		return t, true
	case int64:
		return int(t), true
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return int(t), true
		}
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(t)); err == nil {
			return n, true
		}
	}
	return 0, false
}
