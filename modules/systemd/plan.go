package systemd

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// showProps are the properties Show reads.
var showProps = []string{"Id", "LoadState", "ActiveState", "SubState", "UnitFileState", "NeedDaemonReload", "ExecMainStartTimestamp"}

// UnitState is a unit as systemd reports it.
type UnitState struct {
	ID               string
	LoadState        string // loaded, not-found, masked, ...
	ActiveState      string // active, inactive, failed, activating, ...
	SubState         string
	UnitFileState    string // enabled, disabled, static, masked, ...
	NeedDaemonReload bool
	// MainStarted is when the service's main process last started
	// (ExecMainStartTimestamp, to the microsecond, UTC); zero when it
	// never did or the unit is not a service.
	MainStarted time.Time
}

// startLayout is how `systemctl show --timestamp=us+utc` prints a time.
const startLayout = "Mon 2006-01-02 15:04:05.000000 MST"

// ParseShow reads `systemctl show --timestamp=us+utc` output (Key=Value
// lines).
func ParseShow(out string) (UnitState, error) {
	var st UnitState
	for line := range strings.SplitSeq(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "Id":
			st.ID = v
		case "LoadState":
			st.LoadState = v
		case "ActiveState":
			st.ActiveState = v
		case "SubState":
			st.SubState = v
		case "UnitFileState":
			st.UnitFileState = v
		case "NeedDaemonReload":
			st.NeedDaemonReload = v == "yes"
		case "ExecMainStartTimestamp":
			if v == "" || v == "n/a" {
				continue
			}
			t, err := time.Parse(startLayout, v)
			if err != nil {
				return st, fmt.Errorf("systemd start time %q: %w", v, err)
			}
			st.MainStarted = t
		}
	}
	if st.LoadState == "" || st.ActiveState == "" {
		return st, fmt.Errorf("systemctl show gave no LoadState/ActiveState: %q", out)
	}
	return st, nil
}

// AnyNeedsReload reads `systemctl show -p Id,NeedDaemonReload '*'` output
// (one block per loaded unit) and reports whether any unit file changed on
// disk since systemd loaded it.
func AnyNeedsReload(out string) bool {
	return strings.Contains(out, "NeedDaemonReload=yes")
}

// step is one systemctl call.
type step struct {
	op   string // plan symbol: '!' run, '~' update
	verb string // systemctl verb
	unit string
}

func (s step) target() string {
	if s.unit == "" {
		return "systemd"
	}
	return s.unit
}

// Active means running or on its way there.
func (st UnitState) Active() bool {
	switch st.ActiveState {
	case "active", "activating", "reloading", "refreshing":
		return true
	}
	return false
}

// Enabledness is whether enable/disable apply and, if so, the current
// setting. Static, generated, transient, alias and indirect units have no
// [Install] choice to make: asking to enable or disable them is a no-op, as
// it is for systemctl itself.
func (st UnitState) Enabledness() (fixed, enabled bool) {
	switch st.UnitFileState {
	case "enabled", "enabled-runtime", "linked", "linked-runtime":
		return false, true
	case "disabled", "":
		return false, false
	}
	return true, false
}

// PlanSteps lists the systemctl calls that bring st to w, in the order they
// must run: daemon-reload, (un)mask, enable/disable, then start, stop,
// restart or reload. A unit systemd does not know is an error, except
// under check (an earlier task would have written it) or after a
// daemon-reload that this plan includes; then replan is true and its state
// is assumed stopped and disabled.
func PlanSteps(w want, st UnitState, check bool) (steps []step, replan bool, err error) {
	if w.daemonReload && (st.NeedDaemonReload || st.LoadState == "not-found") {
		steps = append(steps, step{op: "!", verb: "daemon-reload"})
	}
	if w.unit == "" {
		return steps, false, nil
	}
	if st.LoadState == "not-found" && (w.state != "" || w.enabled != nil || w.masked != nil) {
		if w.state == "stopped" && w.enabled == nil && w.masked == nil {
			return steps, false, nil // nothing to stop, as Ansible
		}
		if !check && !w.daemonReload {
			return nil, false, errors.New("unit not found (write its unit file first, and set daemon_reload: yes)")
		}
		replan = !check
		st = UnitState{LoadState: "not-found", ActiveState: "inactive", UnitFileState: "disabled"}
	}
	isMasked := st.UnitFileState == "masked" || st.UnitFileState == "masked-runtime" || st.LoadState == "masked"
	if w.masked != nil && *w.masked != isMasked {
		verb := "mask"
		if !*w.masked {
			verb = "unmask"
		}
		steps = append(steps, step{op: "~", verb: verb, unit: w.unit})
		isMasked = *w.masked
		if !isMasked {
			st.UnitFileState = "disabled"
		}
	}
	if isMasked && (w.state == "started" || w.state == "restarted" || w.state == "reloaded" || w.enabled != nil && *w.enabled) {
		return nil, false, errors.New("unit is masked (set masked: no to unmask it)")
	}
	if w.enabled != nil {
		if fixed, on := st.Enabledness(); !fixed && on != *w.enabled {
			verb := "enable"
			if !*w.enabled {
				verb = "disable"
			}
			steps = append(steps, step{op: "~", verb: verb, unit: w.unit})
		}
	}
	switch w.state {
	case "started":
		if !st.Active() {
			steps = append(steps, step{op: "!", verb: "start", unit: w.unit})
		}
	case "stopped":
		if st.Active() || st.ActiveState == "deactivating" {
			steps = append(steps, step{op: "!", verb: "stop", unit: w.unit})
		}
	case "restarted":
		// Always, like Ansible: a handler asks for it because something
		// changed that only a restart picks up.
		steps = append(steps, step{op: "!", verb: "restart", unit: w.unit})
	case "reloaded":
		verb := "reload"
		if !st.Active() {
			verb = "start"
		}
		steps = append(steps, step{op: "!", verb: verb, unit: w.unit})
	}
	return steps, replan, nil
}
