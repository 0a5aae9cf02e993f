package inventory

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Match returns the hosts a pattern selects, in inventory order, as Ansible
// reads play `hosts:` and --limit:
//
//	all, *            every host
//	etcd              a group (its hosts and its children's) or a host
//	etcd*, h?         shell globs over group and host names
//	~etcd[0-9]+       a regular expression over group and host names, matched
//	                  from the start of the name (as Ansible's re.match)
//	etcd[0], etcd[0:1]  a slice of a group (0-based, end inclusive)
//	a,b  a:b          union;  a:&b  intersection;  a:!b  exclusion
//
// Unions are taken first, then intersections, then exclusions, whatever the
// order they are written in; a pattern of only & and ! terms starts from
// all. A name that matches nothing selects nothing: the caller decides
// whether that is an error. Only a malformed pattern is an error.
func (inv *Inventory) Match(pattern string) ([]*Host, error) {
	terms := splitPattern(pattern)
	if len(terms) == 0 {
		return nil, fmt.Errorf("host pattern %q is empty", pattern)
	}
	var union, inter, excl []string
	for _, t := range terms {
		switch t[0] {
		case '&':
			inter = append(inter, t[1:])
		case '!':
			excl = append(excl, t[1:])
		default:
			union = append(union, t)
		}
	}
	if len(union) == 0 {
		union = []string{"all"}
	}
	sel := map[string]bool{}
	for _, t := range union {
		set, err := inv.term(t, pattern)
		if err != nil {
			return nil, err
		}
		for n := range set {
			sel[n] = true
		}
	}
	for _, t := range inter {
		set, err := inv.term(t, pattern)
		if err != nil {
			return nil, err
		}
		for n := range sel {
			if !set[n] {
				delete(sel, n)
			}
		}
	}
	for _, t := range excl {
		set, err := inv.term(t, pattern)
		if err != nil {
			return nil, err
		}
		for n := range set {
			delete(sel, n)
		}
	}
	var out []*Host
	for _, h := range inv.hosts {
		if sel[h.Name] {
			out = append(out, h)
		}
	}
	return out, nil
}

// splitPattern splits on commas, or on colons outside [...] when there is
// no comma (Ansible's older separator), dropping empty terms.
func splitPattern(p string) []string {
	sep := ','
	if !strings.Contains(p, ",") {
		sep = ':'
	}
	var out []string
	depth, start := 0, 0
	flush := func(end int) {
		if t := strings.TrimSpace(p[start:end]); t != "" {
			out = append(out, t)
		}
	}
	for i, r := range p {
		switch {
		case r == '[':
			depth++
		case r == ']' && depth > 0:
			depth--
		case r == sep && depth == 0:
			flush(i)
			start = i + 1
		}
	}
	flush(len(p))
	return out
}

var subscriptRE = regexp.MustCompile(`^(.+)\[(?:(-?[0-9]+)|([0-9]*):([0-9]*))\]$`)

// term resolves one pattern term (modifier already removed) to host names.
func (inv *Inventory) term(t, whole string) (map[string]bool, error) {
	if t == "" {
		return nil, fmt.Errorf("host pattern %q: & or ! with nothing after it", whole)
	}
	set := map[string]bool{}
	addGroup := func(g string) {
		for _, n := range inv.members[g] {
			set[n] = true
		}
	}
	if m := subscriptRE.FindStringSubmatch(t); m != nil && !strings.ContainsAny(m[1], "*?[~") {
		base, err := inv.Match(m[1])
		if err != nil {
			return nil, err
		}
		lo, hi := 0, len(base)-1
		if m[2] != "" {
			lo, _ = strconv.Atoi(m[2])
			if lo < 0 {
				lo += len(base)
			}
			hi = lo
		} else {
			if m[3] != "" {
				lo, _ = strconv.Atoi(m[3])
			}
			if m[4] != "" {
				hi, _ = strconv.Atoi(m[4])
			}
		}
		for i := max(lo, 0); i <= hi && i < len(base); i++ {
			set[base[i].Name] = true
		}
		return set, nil
	}
	switch {
	case t == "all" || t == "*":
		addGroup("all")
	case t[0] == '~':
		// Ansible matches with Python's re.match: anchored at the start
		// of the name, not at its end.
		if _, err := regexp.Compile(t[1:]); err != nil {
			return nil, fmt.Errorf("host pattern %q: %v", whole, err)
		}
		re := regexp.MustCompile(`^(?:` + t[1:] + `)`)
		for _, g := range inv.order {
			if re.MatchString(g) {
				addGroup(g)
			}
		}
		for _, h := range inv.hosts {
			if re.MatchString(h.Name) {
				set[h.Name] = true
			}
		}
	case strings.ContainsAny(t, "*?["):
		if _, err := path.Match(t, ""); err != nil {
			return nil, fmt.Errorf("host pattern %q: bad glob %q", whole, t)
		}
		for _, g := range inv.order {
			if ok, _ := path.Match(t, g); ok {
				addGroup(g)
			}
		}
		for _, h := range inv.hosts {
			if ok, _ := path.Match(t, h.Name); ok {
				set[h.Name] = true
			}
		}
	default:
		if _, ok := inv.groups[t]; ok {
			addGroup(t)
		}
		if _, ok := inv.byName[t]; ok {
			set[t] = true
		}
	}
	return set, nil
}
