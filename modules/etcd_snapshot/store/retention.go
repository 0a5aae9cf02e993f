package store

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Policy is grandfather-father-son retention: the newest Last backups,
// plus the newest backup of each of the newest Hourly hours, Daily days,
// Weekly ISO weeks and Monthly months that have one. A backup kept by any
// tier is kept.
type Policy struct {
	Last    int `json:"last" yaml:"last"`
	Hourly  int `json:"hourly" yaml:"hourly"`
	Daily   int `json:"daily" yaml:"daily"`
	Weekly  int `json:"weekly" yaml:"weekly"`
	Monthly int `json:"monthly" yaml:"monthly"`
}

// String is the policy in operator terms.
func (p Policy) String() string {
	var parts []string
	for _, t := range []struct {
		n    int
		name string
	}{{p.Last, "newest"}, {p.Hourly, "hourly"}, {p.Daily, "daily"}, {p.Weekly, "weekly"}, {p.Monthly, "monthly"}} {
		if t.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", t.n, t.name))
		}
	}
	if len(parts) == 0 {
		return "keep all"
	}
	return "keep " + strings.Join(parts, ", ")
}

// Empty says the policy keeps everything (no tier set).
func (p Policy) Empty() bool { return p == Policy{} }

type tier struct {
	n      int
	period func(time.Time) string
}

func (p Policy) tiers() []tier {
	return []tier{
		{p.Hourly, func(t time.Time) string { return t.Format("2006010215") }},
		{p.Daily, func(t time.Time) string { return t.Format("20060102") }},
		{p.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) }},
		{p.Monthly, func(t time.Time) string { return t.Format("200601") }},
	}
}

// Select splits entries into those the policy keeps and those it drops,
// each newest first, by the snapshots' own times (UTC). An empty policy
// keeps everything. Whatever the policy says, the newest verified backup
// is never dropped: a location never loses its last good copy to
// retention.
func (p Policy) Select(entries []Entry) (keep, drop []Entry) {
	es := append([]Entry(nil), entries...)
	sort.SliceStable(es, func(i, k int) bool {
		ti, tk := es[i].Time(), es[k].Time()
		if !ti.Equal(tk) {
			return ti.After(tk)
		}
		return es[i].Meta.Revision > es[k].Meta.Revision
	})
	if p.Empty() {
		return es, nil
	}
	kept := make([]bool, len(es))
	for i := range es {
		if i < p.Last {
			kept[i] = true
		}
	}
	for _, t := range p.tiers() {
		if t.n <= 0 {
			continue
		}
		seen := map[string]bool{}
		for i, e := range es {
			per := t.period(e.Time().UTC())
			if seen[per] {
				continue
			}
			if len(seen) == t.n {
				break
			}
			seen[per] = true
			kept[i] = true
		}
	}
	goodKept := false
	for i, e := range es {
		if kept[i] && e.Meta.Verified {
			goodKept = true
		}
	}
	if !goodKept {
		for i, e := range es {
			if e.Meta.Verified {
				kept[i] = true
				break
			}
		}
	}
	for i, e := range es {
		if kept[i] {
			keep = append(keep, e)
		} else {
			drop = append(drop, e)
		}
	}
	return keep, drop
}
