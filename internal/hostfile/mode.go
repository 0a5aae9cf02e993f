package hostfile

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ModeArg normalises a mode argument the way Ansible reads it: a YAML
// integer (mode: 0644 decodes as 420) is the mode's numeric value; a string
// is octal ("0644", "644") or symbolic ("u=rw,g=r,o="). It returns "" for
// no mode, an octal string such as "0644", or the symbolic string.
func ModeArg(v any) (string, error) {
	switch t := v.(type) {
	case nil:
		return "", nil
	case int:
		return octal(int64(t))
	case int64:
		return octal(t)
	case float64: // integers that went through JSON
		if t != float64(int64(t)) {
			return "", fmt.Errorf("mode %v is not an integer", t)
		}
		return octal(int64(t))
	case string:
		s := strings.TrimSpace(t)
		if s == "" {
			return "", nil
		}
		if isOctal(s) {
			n, err := strconv.ParseInt(s, 8, 32)
			if err != nil {
				return "", fmt.Errorf("mode %q: %w", s, err)
			}
			return octal(n)
		}
		if _, err := ParseMode(s, 0, false); err != nil {
			return "", err
		}
		return s, nil
	}
	return "", fmt.Errorf("mode must be a string or an integer, got %T", v)
}

func octal(n int64) (string, error) {
	if n < 0 || n > 0o7777 {
		return "", fmt.Errorf("mode %o is out of range (0000-7777)", n)
	}
	return fmt.Sprintf("%04o", n), nil
}

func isOctal(s string) bool {
	for _, r := range s {
		if r < '0' || r > '7' {
			return false
		}
	}
	return s != ""
}

// ParseMode computes the permission bits spec asks for, given the current
// bits (symbolic specs such as "u+x" are relative to them) and whether the
// path is a directory (for "X").
func ParseMode(spec string, cur os.FileMode, isDir bool) (os.FileMode, error) {
	if isOctal(spec) {
		n, err := strconv.ParseUint(spec, 8, 32)
		if err != nil || n > 0o7777 {
			return 0, fmt.Errorf("mode %q: not a valid octal mode", spec)
		}
		return fromUnix(uint32(n)), nil
	}
	bits := toUnix(cur)
	for clause := range strings.SplitSeq(spec, ",") {
		var err error
		if bits, err = applyClause(clause, bits, isDir); err != nil {
			return 0, fmt.Errorf("mode %q: %w", spec, err)
		}
	}
	return fromUnix(bits), nil
}

func applyClause(clause string, bits uint32, isDir bool) (uint32, error) {
	i := strings.IndexAny(clause, "+-=")
	if i < 0 {
		return 0, fmt.Errorf("clause %q has no operator (+, - or =)", clause)
	}
	who, op, perms := clause[:i], clause[i], clause[i+1:]
	var mask uint32
	if who == "" {
		who = "a"
	}
	for _, w := range who {
		switch w {
		case 'u':
			mask |= 0o4700
		case 'g':
			mask |= 0o2070
		case 'o':
			mask |= 0o1007
		case 'a':
			mask |= 0o7777
		default:
			return 0, fmt.Errorf("clause %q: unknown class %q", clause, w)
		}
	}
	var want uint32
	for _, p := range perms {
		switch p {
		case 'r':
			want |= 0o444
		case 'w':
			want |= 0o222
		case 'x':
			want |= 0o111
		case 'X':
			if isDir || bits&0o111 != 0 {
				want |= 0o111
			}
		case 's':
			want |= 0o6000
		case 't':
			want |= 0o1000
		default:
			return 0, fmt.Errorf("clause %q: unknown permission %q", clause, p)
		}
	}
	want &= mask
	switch op {
	case '+':
		bits |= want
	case '-':
		bits &^= want
	case '=':
		// "=" resets every bit of the named classes, setuid and setgid
		// included, as chmod(1) does for a regular file.
		bits = bits&^mask | want
	}
	return bits, nil
}

func toUnix(m os.FileMode) uint32 {
	b := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

func fromUnix(b uint32) os.FileMode {
	m := os.FileMode(b & 0o777)
	if b&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if b&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if b&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

// FormatMode prints permission bits the way a plan shows them ("0644").
func FormatMode(m os.FileMode) string { return fmt.Sprintf("%04o", toUnix(m)) }
