package etcd_restart

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// unitName is the unit etcd_service installs.
const unitName = "etcd.service"

// unitPath is where etcd_service writes it (an input of the process).
const unitPath = "/etc/systemd/system/etcd.service"

// probeScript reports the unit's state and start time, then the mtime of
// every input of the running process, both of the path itself (a link
// swapped by an upgrade) and of what it points to. Missing inputs are
// simply not listed.
const probeScript = `systemctl show ` + unitName + ` -p ActiveState -p ExecMainStartTimestamp --timestamp=us+utc
stat -c '%.9Y %n' -- "$@" 2>/dev/null
stat -L -c '%.9Y %n' -- "$@" 2>/dev/null
exit 0`

// hostProbe is what one host told us about its etcd.
type hostProbe struct {
	Active  string    // systemd ActiveState
	Started time.Time // when the running process started (zero if never)
	Newest  time.Time // newest mtime among the inputs
	NewestP string    // which input that was
}

// Running reports whether etcd is up or coming up.
func (p hostProbe) Running() bool {
	switch p.Active {
	case "active", "activating", "reloading":
		return true
	}
	return false
}

// Stale reports whether the running process predates a change to one of
// its inputs: only then does a restart change anything. A member that the
// same run started for the first time (bootstrap) is not stale.
func (p hostProbe) Stale() bool {
	return p.Running() && !p.Started.IsZero() && p.Newest.After(p.Started)
}

// inputs are the files the etcd process reads at start.
func inputs(c *etcd.Cluster) []string {
	p := c.Paths
	out := []string{p.ConfigFile, p.BinDir + "/etcd", unitPath}
	if c.TLS {
		out = append(out, p.CACert, p.ServerCert, p.ServerKey, p.PeerCert, p.PeerKey)
	}
	return out
}

// startLayout is systemd's --timestamp=us+utc format.
const startLayout = "Mon 2006-01-02 15:04:05.000000 MST"

func parseProbe(out string) (hostProbe, error) {
	var p hostProbe
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && !strings.Contains(k, " ") {
			switch k {
			case "ActiveState":
				p.Active = v
			case "ExecMainStartTimestamp":
				if v != "" && v != "n/a" {
					t, err := time.Parse(startLayout, v)
					if err != nil {
						return p, fmt.Errorf("systemd start time %q: %w", v, err)
					}
					p.Started = t
				}
			}
			continue
		}
		ts, path, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		sec, frac, _ := strings.Cut(ts, ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		ns := int64(0)
		var err2 error
		if frac != "" {
			ns, err2 = strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		}
		if err1 != nil || err2 != nil {
			continue
		}
		if t := time.Unix(s, ns); t.After(p.Newest) {
			p.Newest, p.NewestP = t, path
		}
	}
	if p.Active == "" {
		return p, fmt.Errorf("no ActiveState in systemctl output: %q", out)
	}
	return p, nil
}

func probeHost(ctx context.Context, r modules.Remote, c *etcd.Cluster) (hostProbe, error) {
	argv := append([]string{"sh", "-c", probeScript, "sh"}, inputs(c)...)
	out, err := command.Run(ctx, r, argv...)
	if err != nil {
		return hostProbe{}, err
	}
	return parseProbe(out)
}
