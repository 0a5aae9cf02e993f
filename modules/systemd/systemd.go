// Package systemd is the "systemd" module: daemon-reload, enable or
// disable, mask, and start, stop, restart or reload a unit, with Ansible's
// systemd module arguments. Plan reads the unit's state (Show); Apply acts
// on it (Run). Both speak to systemd over its own socket where they can,
// and run systemctl where they cannot.
package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/etcdplay/etcdplay/modules"
)

func init() { modules.Register("systemd", Module{}) }

// Module manages one systemd unit.
type Module struct{}

var spec = modules.Spec{
	"name":          {Kind: modules.String},
	"state":         {Kind: modules.String, OneOf: []string{"started", "stopped", "restarted", "reloaded"}},
	"enabled":       {Kind: modules.Bool},
	"daemon_reload": {Kind: modules.Bool},
	"masked":        {Kind: modules.Bool},
}

// want is what the task asks for.
type want struct {
	unit         string
	state        string
	enabled      *bool
	masked       *bool
	daemonReload bool
}

func parse(args modules.Args) (want, error) {
	if err := spec.Check(args); err != nil {
		return want{}, err
	}
	w := want{
		unit:         UnitName(args.Str("name", "")),
		state:        args.Str("state", ""),
		daemonReload: args.Bool("daemon_reload", false),
	}
	if _, ok := args["enabled"]; ok {
		b := args.Bool("enabled", false)
		w.enabled = &b
	}
	if _, ok := args["masked"]; ok {
		b := args.Bool("masked", false)
		w.masked = &b
	}
	if w.unit == "" && (w.state != "" || w.enabled != nil || w.masked != nil) {
		return w, &modules.ArgError{Arg: "name", Msg: "is required with state, enabled or masked"}
	}
	if w.unit == "" && !w.daemonReload {
		return w, &modules.ArgError{Arg: "name", Msg: "is required (or daemon_reload: yes)"}
	}
	if w.masked != nil && *w.masked && (w.state == "started" || w.state == "restarted" || w.state == "reloaded") {
		return w, &modules.ArgError{Arg: "masked", Msg: "a masked unit cannot be " + w.state}
	}
	return w, nil
}

// UnitName adds ".service" to a bare name, as systemctl does.
func UnitName(name string) string {
	if name == "" {
		return ""
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 && isUnitSuffix(name[i+1:]) {
		return name
	}
	return name + ".service"
}

func isUnitSuffix(s string) bool {
	switch s {
	case "service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope":
		return true
	}
	return false
}

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	_, err := parse(args)
	return err
}

// payload is what Plan hands to Apply.
type payload struct {
	w     want
	steps []step
	// replan: the unit was unknown to systemd when planned; after the
	// daemon-reload, Apply reads its state again before acting on it.
	replan bool
}

// Plan reads the unit's state and lists the systemctl steps needed.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	w, err := parse(args)
	if err != nil {
		return nil, err
	}
	var st UnitState
	if w.unit == "" {
		out, err := Systemctl(ctx, "show", "--property=Id,NeedDaemonReload", "*")
		if err != nil {
			return nil, err
		}
		st.NeedDaemonReload = AnyNeedsReload(out)
	} else {
		if st, err = Show(ctx, w.unit); err != nil {
			return nil, err
		}
	}
	steps, replan, err := PlanSteps(w, st, env.Check)
	if err != nil {
		return nil, fmt.Errorf("systemd %s: %w", w.unit, err)
	}
	c := &modules.Change{Payload: payload{w: w, steps: steps, replan: replan}}
	for _, s := range steps {
		c.Add(s.op, s.target(), s.verb)
	}
	return c, nil
}

// Apply runs the planned systemctl steps in order.
func (Module) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	p, ok := c.Payload.(payload)
	if !ok {
		return nil, errors.New("systemd: change has no plan payload")
	}
	steps := p.steps
	for i := 0; i < len(steps); i++ {
		s := steps[i]
		if err := s.run(ctx); err != nil {
			return nil, err
		}
		if s.verb == "daemon-reload" && p.replan {
			now, err := Show(ctx, p.w.unit)
			if err != nil {
				return nil, err
			}
			w := p.w
			w.daemonReload = false
			rest, _, err := PlanSteps(w, now, false)
			if err != nil {
				return nil, fmt.Errorf("systemd %s: %w", p.w.unit, err)
			}
			steps = append(steps[:i+1], rest...)
		}
	}
	return &modules.Result{Status: modules.StatusChanged, Change: c}, nil
}

// Systemctl runs systemctl with args and returns its stdout; a variable so
// an agent test can count calls.
var Systemctl = func(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "systemctl", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Show is the unit's state: the one way every module reads a unit. It
// asks systemd over its own socket when it can (showBus), else runs
// `systemctl show`; both give the same state.
func Show(ctx context.Context, unit string) (UnitState, error) {
	if st, ok := showBus(ctx, unit); ok {
		return st, nil
	}
	return showSystemctl(ctx, unit)
}

func showSystemctl(ctx context.Context, unit string) (UnitState, error) {
	out, err := Systemctl(ctx, "show", "--timestamp=us+utc", "--property="+strings.Join(showProps, ","), unit)
	if err != nil {
		return UnitState{}, err
	}
	return ParseShow(out)
}

func (s step) run(ctx context.Context) error {
	return Run(ctx, s.verb, s.unit, false)
}

// Run carries out one systemctl verb on unit ("" for daemon-reload), the
// one way every module acts on a unit: daemon-reload, enable, disable,
// mask, unmask, start, stop, restart or reload, as `systemctl VERB UNIT`
// would (enable and disable as with --no-reload). It asks systemd over
// its own socket when it can (runBus), else runs systemctl. A job waits
// until systemd has carried it out, as systemctl does, unless noBlock.
func Run(ctx context.Context, verb, unit string, noBlock bool) error {
	ok, err := runBus(ctx, verb, unit, noBlock)
	if !ok {
		err = runSystemctl(ctx, verb, unit, noBlock)
	}
	if err != nil && (verb == "start" || verb == "restart" || verb == "reload") {
		// The reason a unit failed is in its journal, not in systemctl's
		// "see journalctl" message: show the operator the last lines.
		if j, jerr := exec.CommandContext(ctx, "journalctl", "-u", unit, "-n", "20", "--no-pager", "-o", "cat").Output(); jerr == nil && len(j) > 0 {
			return fmt.Errorf("%w\nlast journal lines of %s:\n%s", err, unit, strings.TrimRight(string(j), "\n"))
		}
	}
	return err
}

func runSystemctl(ctx context.Context, verb, unit string, noBlock bool) error {
	args := []string{verb, "--quiet"}
	if verb == "enable" || verb == "disable" {
		// Without --no-reload each of these is a daemon-reload too: about
		// 0.3 s of systemd's CPU per host, 8 s for 30 lab hosts on two
		// cores. The links are on disk for the next boot, and start and
		// stop are explicit steps; only new Alias= names wait for the
		// next daemon-reload. (mask and unmask keep theirs: systemd must
		// see a masked unit as masked at once.)
		args = append(args, "--no-reload")
	}
	if noBlock {
		args = append(args, "--no-block")
	}
	if unit != "" {
		args = append(args, unit)
	}
	_, err := Systemctl(ctx, args...)
	return err
}
