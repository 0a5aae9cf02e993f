// Package etcd_backup_timer installs scheduled local snapshots on a member:
// a systemd timer (etcd_backup_schedule, an OnCalendar expression) that
// runs a oneshot service taking `etcdctl snapshot save` over TLS into
// etcd_backup_dir and keeping the newest etcd_backup_local_keep. It is the
// operators' cron script done right: TLS, atomic files, no shell quoting
// of settings, retention that only touches its own files.
//
// Members without etcd_backup_schedule get state absent: a timer installed
// earlier is stopped and removed; the snapshots stay.
//
// It runs in the agent on the host, after Resolve rendered the units on the
// controller.
package etcd_backup_timer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/systemd"
)

func init() { modules.Register("etcd_backup_timer", Module{}) }

// Module is the etcd_backup_timer module.
type Module struct{}

// Unit names and paths on the host.
const (
	ServiceName = "etcd-backup.service"
	TimerName   = "etcd-backup.timer"
	ServicePath = "/etc/systemd/system/" + ServiceName
	TimerPath   = "/etc/systemd/system/" + TimerName
)

var spec = modules.Spec{
	// Playbook-facing (each defaults to its variable).
	"state":    {Kind: modules.String, OneOf: []string{"present", "absent"}},
	"schedule": {Kind: modules.String},
	"dir":      {Kind: modules.String},
	"keep":     {Kind: modules.Int},
	"timeout":  {Kind: modules.String},
	// Filled in by Resolve.
	"service": {Kind: modules.String},
	"timer":   {Kind: modules.String},
	"user":    {Kind: modules.String},
}

// Validate checks the resolved arguments.
func (Module) Validate(args modules.Args) error {
	if err := spec.Check(args); err != nil {
		return err
	}
	if args.Str("state", "present") == "present" {
		for _, k := range []string{"service", "timer", "schedule", "dir"} {
			if args.Str(k, "") == "" {
				return &modules.ArgError{Arg: k, Msg: "is required with state present"}
			}
		}
	}
	return nil
}

type step int

const (
	stepDir step = iota
	stepScript
	stepService
	stepTimer
	stepReload
	stepEnable
	stepStart
	stepRestart
	stepStopDisable
	stepRemove
)

type payload struct {
	Args  modules.Args
	Steps []step
}

// Plan compares the host with the wanted files and timer state.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	ch := &modules.Change{}
	p := &payload{Args: args}
	add := func(s step, op, target, detail string) {
		p.Steps = append(p.Steps, s)
		ch.Add(op, target, detail)
	}
	unit, err := show(ctx, TimerName)
	if err != nil {
		return nil, fmt.Errorf("etcd_backup_timer on %s: %w", env.Host, err)
	}

	if args.Str("state", "present") == "absent" {
		installed := false
		for _, f := range []string{TimerPath, ServicePath, ScriptPath} {
			if _, err := os.Lstat(f); err == nil {
				installed = true
			}
		}
		if unit.active() || unit.enabled() {
			add(stepStopDisable, "!", "stop and disable "+TimerName, "no etcd_backup_schedule for this member")
		}
		if installed {
			add(stepRemove, "-", TimerPath+", "+ServicePath+", "+ScriptPath, "snapshots already taken are kept")
			add(stepReload, "!", "systemctl daemon-reload", "")
		}
		return finish(ch, p), nil
	}

	schedule := args.Str("schedule", "")
	if out, err := exec.CommandContext(ctx, "systemd-analyze", "calendar", "--", schedule).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("etcd_backup_timer on %s: etcd_backup_schedule %q is not a systemd calendar expression: %s",
			env.Host, schedule, strings.TrimSpace(string(out)))
	}
	user := args.Str("user", "etcd")
	uid, err := hostfile.LookupUID(user)
	if err != nil {
		return nil, fmt.Errorf("etcd_backup_timer on %s: user %s: %w (run site.yml first)", env.Host, user, err)
	}
	dir := args.Str("dir", DefaultDir)
	st, err := hostfile.StateFollow(dir)
	if err != nil {
		return nil, err
	}
	switch {
	case st.Exists && !st.IsDir():
		return nil, fmt.Errorf("etcd_backup_timer on %s: %s exists and is not a directory", env.Host, dir)
	case !st.Exists:
		add(stepDir, "+", dir, "directory 0700 "+user)
	case st.Perm() != 0o700 || st.UID != uid:
		add(stepDir, "~", dir, "mode 0700, owner "+user)
	}
	unitChanged := false
	for _, f := range []struct {
		s            step
		path, want   string
		unitFile     bool
		restartTimer bool
	}{
		{stepScript, ScriptPath, Script, false, false},
		{stepService, ServicePath, args.Str("service", ""), true, false},
		{stepTimer, TimerPath, args.Str("timer", ""), true, true},
	} {
		cur, err := os.ReadFile(f.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			add(f.s, "+", f.path, "")
			ch.Diffs = append(ch.Diffs, modules.FileDiff{Path: f.path, After: f.want})
		case err != nil:
			return nil, err
		case !bytes.Equal(cur, []byte(f.want)):
			add(f.s, "~", f.path, "content")
			ch.Diffs = append(ch.Diffs, modules.FileDiff{Path: f.path, Before: string(cur), After: f.want})
		default:
			continue
		}
		if f.unitFile {
			unitChanged = true
		}
		if f.restartTimer && unit.active() {
			add(stepRestart, "!", "restart "+TimerName, "new schedule")
		}
	}
	if unitChanged || unit.NeedDaemonReload {
		add(stepReload, "!", "systemctl daemon-reload", "")
	}
	if !unit.enabled() {
		add(stepEnable, "!", "enable "+TimerName, "")
	}
	if !unit.active() {
		add(stepStart, "!", "start "+TimerName, "snapshots "+schedule+" into "+dir+", keep "+fmt.Sprint(args.Int("keep", DefaultLocalKeep)))
	}
	return finish(ch, p), nil
}

func finish(ch *modules.Change, p *payload) *modules.Change {
	if len(ch.Actions) == 0 {
		return &modules.Change{}
	}
	ch.Payload = p
	return ch
}

// Apply does the planned steps in order: files and dir first, then
// daemon-reload, then the timer.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	p, ok := ch.Payload.(*payload)
	if !ok {
		return nil, errors.New("etcd_backup_timer: plan payload missing")
	}
	order := []step{stepStopDisable, stepRemove, stepDir, stepScript, stepService, stepTimer, stepReload, stepEnable, stepRestart, stepStart}
	has := map[step]bool{}
	for _, s := range p.Steps {
		has[s] = true
	}
	for _, s := range order {
		if !has[s] {
			continue
		}
		if err := do(ctx, s, p.Args); err != nil {
			return nil, fmt.Errorf("etcd_backup_timer on %s: %w", env.Host, err)
		}
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch}, nil
}

func do(ctx context.Context, s step, args modules.Args) error {
	switch s {
	case stepStopDisable:
		return systemctl(ctx, "disable", "--now", TimerName)
	case stepRemove:
		for _, f := range []string{TimerPath, ServicePath, ScriptPath} {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	case stepDir:
		dir := args.Str("dir", DefaultDir)
		uid, err := hostfile.LookupUID(args.Str("user", "etcd"))
		if err != nil {
			return err
		}
		gid, err := hostfile.LookupGID(args.Str("user", "etcd"))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return err
		}
		return os.Chown(dir, uid, gid)
	case stepScript:
		if err := os.MkdirAll(filepath.Dir(ScriptPath), 0o755); err != nil {
			return err
		}
		return hostfile.WriteAtomic(ScriptPath, []byte(Script), 0o755, 0, 0)
	case stepService:
		return hostfile.WriteAtomic(ServicePath, []byte(args.Str("service", "")), 0o644, 0, 0)
	case stepTimer:
		return hostfile.WriteAtomic(TimerPath, []byte(args.Str("timer", "")), 0o644, 0, 0)
	case stepReload:
		return systemctl(ctx, "daemon-reload")
	case stepEnable:
		return systemctl(ctx, "enable", TimerName)
	case stepRestart:
		return systemctl(ctx, "restart", TimerName)
	case stepStart:
		return systemctl(ctx, "start", TimerName)
	}
	return fmt.Errorf("unknown step %d", s)
}

func systemctl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "systemctl", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// unitState is the part of `systemctl show` the plan needs.
type unitState struct {
	ActiveState, UnitFileState string
	NeedDaemonReload           bool
}

func (u unitState) active() bool  { return u.ActiveState == "active" || u.ActiveState == "activating" }
func (u unitState) enabled() bool { return u.UnitFileState == "enabled" }

func show(ctx context.Context, name string) (unitState, error) {
	out, err := exec.CommandContext(ctx, "systemctl", "show", name, "-p", "ActiveState", "-p", "UnitFileState", "-p", "NeedDaemonReload").Output()
	if err != nil {
		return unitState{}, fmt.Errorf("systemctl show %s: %w", name, err)
	}
	s := systemd.ParseShow(string(out))
	return unitState{ActiveState: s.ActiveState, UnitFileState: s.UnitFileState, NeedDaemonReload: s.NeedDaemonReload}, nil
}
