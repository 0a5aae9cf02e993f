package etcd_restart

import (
	"context"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/hostprobe"
)

// unitName is the unit etcd_service installs.
const unitName = etcd.UnitName

// unitPath is where etcd_service writes it (an input of the process).
const unitPath = "/etc/systemd/system/etcd.service"

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

// restartNeeded says whether the member must be restarted, and why (or
// why not). notifiedUnderCheck: the handler was notified under --check,
// where the inputs have not changed yet, so a running member is what
// apply would restart. Otherwise (apply, or a plain task that finds
// members an interrupted run left on older inputs) the host decides.
// Plan and the roll's Pending, once the lock is held, both decide with it.
func (p hostProbe) restartNeeded(notifiedUnderCheck bool) (bool, string) {
	switch {
	case !p.Running():
		return false, "etcd is " + p.Active + ", nothing to restart (etcd_service starts it)"
	case notifiedUnderCheck:
		return true, "notified: its config, certificates, binary or unit changes"
	case p.Stale():
		return true, p.NewestP + " changed after etcd started"
	}
	return false, "etcd started after its last input change"
}

// inputs are the files the etcd process reads at start and only then.
// The server and peer certificates are not among them: etcd reads those
// at every TLS handshake (since 3.2), so a rotated certificate is served
// without a restart (etcd_pki rotate checks it is). The CA is: etcd reads
// its trusted CAs once.
func inputs(c *etcd.Cluster) []string {
	p := c.Paths
	out := []string{p.ConfigFile, p.BinDir + "/etcd", unitPath}
	if c.TLS {
		out = append(out, p.CACert)
	}
	return out
}

func probeHost(ctx context.Context, h modules.Host, c *etcd.Cluster) (hostProbe, error) {
	in := inputs(c)
	f, err := hostprobe.Ask(ctx, h, hostprobe.Query{Units: []string{unitName}, Paths: in})
	if err != nil {
		return hostProbe{}, err
	}
	return newHostProbe(f, in), nil
}

// newHostProbe reads the unit's state and the newest of the inputs (in
// the order given, so ties name the first) from the host's facts.
func newHostProbe(f *hostprobe.Facts, in []string) hostProbe {
	u := f.Units[unitName]
	p := hostProbe{Active: u.Active, Started: u.Started}
	p.Newest, p.NewestP = f.Newest(in)
	return p
}
