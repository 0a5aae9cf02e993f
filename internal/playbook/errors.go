package playbook

import (
	"fmt"
	"strings"

	"github.com/etcdplay/etcdplay/internal/yamlpos"
)

// Error is one problem found in a playbook, at the place it was written;
// Field is a path that matches the graph's node ids: "p1.serial",
// "p1.t3.when", "p1.t3.file.mode", "p1.h1.notify".
type Error = yamlpos.Error

// Errors is every problem found, sorted by position.
type Errors = yamlpos.Errors

// collector gathers errors. The same mistake seen for several hosts of a
// play is reported once, naming the hosts.
type collector struct {
	errs  Errors
	hosts map[*Error][]string
	seen  map[string]*Error
	// playHosts is how many hosts the play being compiled has: an error
	// seen on all of them needs no host list.
	playHosts int
	total     map[*Error]int
}

func (c *collector) add(e *Error) { c.addHost(e, "") }

func (c *collector) addHost(e *Error, host string) {
	if c.seen == nil {
		c.seen = map[string]*Error{}
		c.hosts = map[*Error][]string{}
	}
	k := e.Error()
	if prev, ok := c.seen[k]; ok {
		if host != "" && len(c.hosts[prev]) > 0 && !contains(c.hosts[prev], host) {
			c.hosts[prev] = append(c.hosts[prev], host)
		}
		return
	}
	c.seen[k] = e
	if host != "" {
		c.hosts[e] = []string{host}
		if c.total == nil {
			c.total = map[*Error]int{}
		}
		c.total[e] = c.playHosts
	}
	c.errs = append(c.errs, e)
}

func (c *collector) addf(pos Pos, field, hint, format string, args ...any) {
	c.add(&Error{Pos: pos, Field: field, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

func (c *collector) hostf(host string, pos Pos, field, hint, format string, args ...any) {
	c.addHost(&Error{Pos: pos, Field: field, Msg: fmt.Sprintf(format, args...), Hint: hint}, host)
}

// err returns the errors sorted by position, with the hosts each was seen
// for added to its message, or nil.
func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	out := make(Errors, len(c.errs))
	for i, e := range c.errs {
		cp := *e
		if hs := c.hosts[e]; len(hs) > 0 && (len(hs) < c.total[e] || c.total[e] == 1) {
			cp.Msg += " (" + hostList(hs) + ")"
		}
		out[i] = &cp
	}
	out.Sort()
	return out
}

func hostList(hs []string) string {
	if len(hs) == 1 {
		return "host " + hs[0]
	}
	if len(hs) > 4 {
		return fmt.Sprintf("hosts %s and %d more", strings.Join(hs[:3], ", "), len(hs)-3)
	}
	return "hosts " + strings.Join(hs, ", ")
}
