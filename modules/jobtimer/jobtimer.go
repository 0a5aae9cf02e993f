// Package jobtimer is the host side of a scheduled job on a member: a
// script, a oneshot service running it and a systemd timer (OnCalendar)
// starting the service, converged as one (files written atomically,
// daemon-reload, the timer enabled and started, restarted on a new
// schedule), or removed as one when the member has no schedule (state
// absent). etcd_backup_timer (snapshots) and etcd_defrag_timer (rule-based
// defrag) are this with their own script and units.
package jobtimer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/etcdplay/etcdplay/internal/diff"
	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/systemd"
	tmplmod "github.com/etcdplay/etcdplay/modules/template"
)

// Job names a scheduled job's files and how it speaks of itself.
type Job struct {
	// Name is the unit base name: <Name>.service and <Name>.timer in
	// /etc/systemd/system.
	Name string
	// Module and ScheduleVar name the module and its schedule variable in
	// messages.
	Module, ScheduleVar string
	// ScriptPath and Script are the job's script. With SelfBinary, the
	// program at ScriptPath is etcdplay itself (the agent's own
	// executable), and Script is unused: the job runs Go code, not shell.
	ScriptPath, Script string
	SelfBinary         bool
	// Extra are the paths of the job's own files (args "files") that go
	// with it when it is removed: its configuration and credentials.
	Extra []string
	// RemoveNote says what removing the job leaves ("snapshots already
	// taken are kept").
	RemoveNote string
}

func (j Job) serviceName() string { return j.Name + ".service" }
func (j Job) timerName() string   { return j.Name + ".timer" }
func (j Job) servicePath() string { return "/etc/systemd/system/" + j.serviceName() }
func (j Job) timerPath() string   { return "/etc/systemd/system/" + j.timerName() }
func (j Job) files() []string {
	return append([]string{j.timerPath(), j.servicePath(), j.ScriptPath}, j.Extra...)
}

// script is what ScriptPath must hold, and how a diff shows it: a
// binary is compared whole but shown by its sha256.
func (j Job) script() (content []byte, show string, err error) {
	if !j.SelfBinary {
		return []byte(j.Script), j.Script, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		return nil, "", err
	}
	return b, fmt.Sprintf("etcdplay binary, sha256 %x\n", sha256.Sum256(b)), nil
}

type step int

const (
	stepDir step = iota
	stepFiles
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
	Job   Job
	Args  modules.Args
	Steps []step
	// Files is the job's own file set (args "files": its configuration,
	// credentials), written before the units.
	Files etcd_install.Set
}

// Plan compares the host with the job's files and timer state. args carry
// state (present or absent), schedule, the rendered service and timer,
// user, and dir when the job has one.
func Plan(ctx context.Context, env *modules.Env, j Job, args modules.Args) (*modules.Change, error) {
	ch := &modules.Change{}
	p := &payload{Job: j, Args: args}
	add := func(s step, op, target, detail string) {
		p.Steps = append(p.Steps, s)
		ch.Add(op, target, detail)
	}
	unit, err := systemd.Show(ctx, j.timerName())
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", j.Module, env.Host, err)
	}

	if args.Str("state", "present") == "absent" {
		installed := false
		for _, f := range j.files() {
			if _, err := os.Lstat(f); err == nil {
				installed = true
			}
		}
		if unit.Active() || unit.UnitFileState == "enabled" {
			add(stepStopDisable, "!", "stop and disable "+j.timerName(), "no "+j.ScheduleVar+" for this member")
		}
		if installed {
			add(stepRemove, "-", strings.Join(j.files(), ", "), j.RemoveNote)
			add(stepReload, "!", "systemctl daemon-reload", "")
		}
		return finish(ch, p), nil
	}

	schedule := args.Str("schedule", "")
	if out, err := exec.CommandContext(ctx, "systemd-analyze", "calendar", "--", schedule).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s on %s: %s %q is not a systemd calendar expression: %s",
			j.Module, env.Host, j.ScheduleVar, schedule, strings.TrimSpace(string(out)))
	}
	user := args.Str("user", "etcd")
	uid, err := hostfile.LookupUID(user)
	if err != nil {
		return nil, fmt.Errorf("%s on %s: user %s: %w (run site.yml first)", j.Module, env.Host, user, err)
	}
	if dir := args.Str("dir", ""); dir != "" {
		st, err := hostfile.StateFollow(dir)
		if err != nil {
			return nil, err
		}
		switch {
		case st.Exists && !st.IsDir():
			return nil, fmt.Errorf("%s on %s: %s exists and is not a directory", j.Module, env.Host, dir)
		case !st.Exists:
			add(stepDir, "+", dir, "directory 0700 "+user)
		case st.Perm() != 0o700 || st.UID != uid:
			add(stepDir, "~", dir, "mode 0700, owner "+user)
		}
	}
	if _, ok := args["files"]; ok {
		fm, _ := args["files"].(map[string]any)
		set, err := etcd_install.SetFromArgs(modules.Args(fm))
		if err != nil {
			return nil, err
		}
		fc, err := etcd_install.PlanSet(set)
		if err != nil {
			return nil, fmt.Errorf("%s on %s: %w", j.Module, env.Host, err)
		}
		if len(fc.Actions) > 0 {
			p.Files = set
			p.Steps = append(p.Steps, stepFiles)
			ch.Actions = append(ch.Actions, fc.Actions...)
			ch.Diffs = append(ch.Diffs, fc.Diffs...)
		}
	}
	script, scriptShown, err := j.script()
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", j.Module, env.Host, err)
	}
	unitChanged := false
	for _, f := range []struct {
		s            step
		path, want   string
		shown        string
		unitFile     bool
		restartTimer bool
	}{
		{stepScript, j.ScriptPath, string(script), scriptShown, false, false},
		{stepService, j.servicePath(), args.Str("service", ""), "", true, false},
		{stepTimer, j.timerPath(), args.Str("timer", ""), "", true, true},
	} {
		cur, err := os.ReadFile(f.path)
		after, before := f.want, string(cur)
		if f.shown != "" {
			after = f.shown
			before = fmt.Sprintf("etcdplay binary, sha256 %x\n", sha256.Sum256(cur))
		}
		switch {
		case errors.Is(err, os.ErrNotExist):
			add(f.s, "+", f.path, "")
			ch.Diffs = append(ch.Diffs, diff.NewFileDiff(f.path, "", after, false))
		case err != nil:
			return nil, err
		case !bytes.Equal(cur, []byte(f.want)):
			add(f.s, "~", f.path, "content")
			ch.Diffs = append(ch.Diffs, diff.NewFileDiff(f.path, before, after, false))
		default:
			continue
		}
		if f.unitFile {
			unitChanged = true
		}
		if f.restartTimer && unit.Active() {
			add(stepRestart, "!", "restart "+j.timerName(), "new schedule")
		}
	}
	if unitChanged || unit.NeedDaemonReload {
		add(stepReload, "!", "systemctl daemon-reload", "")
	}
	if unit.UnitFileState != "enabled" {
		add(stepEnable, "!", "enable "+j.timerName(), "")
	}
	if !unit.Active() {
		add(stepStart, "!", "start "+j.timerName(), schedule+": "+args.Str("start_detail", j.Name))
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
func Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	p, ok := ch.Payload.(*payload)
	if !ok {
		return nil, errors.New("job timer: plan payload missing")
	}
	order := []step{stepStopDisable, stepRemove, stepDir, stepFiles, stepScript, stepService, stepTimer, stepReload, stepEnable, stepRestart, stepStart}
	has := map[step]bool{}
	for _, s := range p.Steps {
		has[s] = true
	}
	for _, s := range order {
		if !has[s] {
			continue
		}
		if s == stepFiles {
			if err := etcd_install.ApplySet(p.Files); err != nil {
				return nil, fmt.Errorf("%s on %s: %w", p.Job.Module, env.Host, err)
			}
			continue
		}
		if err := p.Job.do(ctx, s, p.Args); err != nil {
			return nil, fmt.Errorf("%s on %s: %w", p.Job.Module, env.Host, err)
		}
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch}, nil
}

func (j Job) do(ctx context.Context, s step, args modules.Args) error {
	switch s {
	case stepStopDisable:
		// As systemctl disable --now, less its daemon-reload: the plan
		// reloads once the files are gone.
		if err := systemd.Run(ctx, "disable", j.timerName(), false); err != nil {
			return err
		}
		return systemd.Run(ctx, "stop", j.timerName(), false)
	case stepRemove:
		for _, f := range j.files() {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	case stepDir:
		dir := args.Str("dir", "")
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
		if err := os.MkdirAll(filepath.Dir(j.ScriptPath), 0o755); err != nil {
			return err
		}
		script, _, err := j.script()
		if err != nil {
			return err
		}
		return hostfile.WriteAtomic(j.ScriptPath, script, 0o755, 0, 0)
	case stepService:
		return hostfile.WriteAtomic(j.servicePath(), []byte(args.Str("service", "")), 0o644, 0, 0)
	case stepTimer:
		return hostfile.WriteAtomic(j.timerPath(), []byte(args.Str("timer", "")), 0o644, 0, 0)
	case stepReload:
		return systemd.Run(ctx, "daemon-reload", "", false)
	case stepEnable:
		// The plan reloads before this whenever a unit file changed.
		return systemd.Run(ctx, "enable", j.timerName(), false)
	case stepRestart:
		return systemd.Run(ctx, "restart", j.timerName(), false)
	case stepStart:
		return systemd.Run(ctx, "start", j.timerName(), false)
	}
	return fmt.Errorf("unknown step %d", s)
}

// Spec is a job timer module's arguments: its own, plus the state,
// schedule and timeout every job timer takes and what every job's Resolve
// fills in.
func Spec(own modules.Spec) modules.Spec {
	s := modules.Spec{
		"state":    {Kind: modules.String, OneOf: []string{"present", "absent"}},
		"schedule": {Kind: modules.String},
		"timeout":  {Kind: modules.String},
		// Filled in by Resolve.
		"service":      {Kind: modules.String},
		"timer":        {Kind: modules.String},
		"user":         {Kind: modules.String},
		"start_detail": {Kind: modules.String},
	}
	maps.Copy(s, own)
	return s
}

// Module is a job timer as a module: the job, its arguments, and those
// required with state present. A job's package embeds it and adds its own
// Resolve (which renders the units).
type Module struct {
	Job      Job
	Spec     modules.Spec
	Required []string
}

// Validate checks the resolved arguments.
func (m Module) Validate(args modules.Args) error {
	if err := m.Spec.Check(args); err != nil {
		return err
	}
	if args.Str("state", "present") == "present" {
		for _, k := range m.Required {
			if args.Str(k, "") == "" {
				return &modules.ArgError{Arg: k, Msg: "is required with state present"}
			}
		}
	}
	return nil
}

// Plan compares the host with the job's files and timer state.
func (m Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	return Plan(ctx, env, m.Job, args)
}

// Apply does the planned steps.
func (m Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	return Apply(ctx, env, ch)
}

// Start is where a timer module's Resolve begins: the cluster model, the
// host's member in it, a copy of the arguments with the resolved state,
// and the schedule.
type Start struct {
	Cluster  *etcd.Cluster
	Member   *etcd.Member
	Out      modules.Args
	Schedule string
}

// Absent reports a job to remove: nothing else needs resolving.
func (s *Start) Absent() bool { return s.Out["state"] == "absent" }

// Start reads the cluster model, the member on rc's host and the job's
// state and schedule (Schedule).
func (j Job) Start(args modules.Args, rc *modules.ResolveContext) (*Start, error) {
	c, m, err := etcd.MemberOf(rc.Vars, rc.Host)
	if err != nil {
		return nil, err
	}
	state, schedule, err := j.Schedule(args, rc.Vars, rc.Host)
	if err != nil {
		return nil, err
	}
	out := modules.Args{"state": state}
	for k, v := range args {
		if k != "state" {
			out[k] = v
		}
	}
	return &Start{Cluster: c, Member: m, Out: out, Schedule: schedule}, nil
}

// Schedule reads a job's state and schedule for a host: the schedule
// argument, else the job's variable; no schedule and no state means
// absent (a timer left from before is removed). A schedule that cannot go
// into a unit file is refused as a bad variable.
func (j Job) Schedule(args modules.Args, vars map[string]any, host string) (state, schedule string, err error) {
	schedule = strings.TrimSpace(args.Str("schedule", modules.Args(vars).Str(j.ScheduleVar, "")))
	state = args.Str("state", "")
	if state == "" {
		state = "present"
		if schedule == "" {
			state = "absent"
		}
	}
	if state == "absent" {
		return state, schedule, nil
	}
	if schedule == "" {
		return "", "", &modules.ArgError{Arg: "schedule", Msg: fmt.Sprintf("is required with state present (or set %s, e.g. daily)", j.ScheduleVar)}
	}
	if strings.ContainsAny(schedule, "\n\r%\\") {
		return "", "", &etcd.VarError{Var: j.ScheduleVar, Host: host, Msg: fmt.Sprintf("%q is not an OnCalendar expression", schedule)}
	}
	return state, schedule, nil
}

// unitSafe is what may appear in an Environment= value or ExecStart path
// without systemd quoting or specifier expansion coming into play.
var unitSafe = regexp.MustCompile(`^[A-Za-z0-9/._:+@,-]+$`)

// RenderUnits checks that the values going into the units unquoted are
// safe there, renders <Name>.service.tmpl and <Name>.timer.tmpl (the
// playbook's templates/ first, then the built-in ones) with data, and sets
// them as the service and timer arguments of out.
func (j Job) RenderUnits(baseDir, host string, data any, unquoted []string, out modules.Args) error {
	for _, v := range unquoted {
		if !unitSafe.MatchString(v) {
			return fmt.Errorf("%s on %s: %q cannot go into a unit file unquoted", j.Module, host, v)
		}
	}
	for _, u := range []string{"service", "timer"} {
		name := j.Name + "." + u + ".tmpl"
		s, err := tmplmod.RenderFile(baseDir, name, data)
		if err != nil {
			return fmt.Errorf("template %s: %w", name, err)
		}
		out[u] = s
	}
	return nil
}
