// Package etcd_service manages etcd's systemd side on a host: the etcd
// system user and group, the data directory, the unit file, enablement, and
// the first start. It runs in the agent (one round trip per host, which
// keeps a warm no-op apply fast) after Resolve has rendered the unit on the
// controller.
//
// It never restarts a running etcd: that is the rolling etcd_restart
// handler's job, so that no two members are ever down at once.
package etcd_service

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/systemd"
	"github.com/etcdplay/etcdplay/modules/user"
)

func init() { modules.Register("etcd_service", Module{}) }

// Module is the etcd_service module.
type Module struct{}

// spec covers the playbook-facing arguments and those Resolve adds.
var spec = modules.Spec{
	// Playbook-facing.
	"state":           {Kind: modules.String, OneOf: []string{"started", "present", "stopped"}},
	"enabled":         {Kind: modules.Bool},
	"template":        {Kind: modules.String},
	"ionice_priority": {Kind: modules.Int},
	"start_timeout":   {Kind: modules.String},
	// Filled in by Resolve from the cluster model.
	"unit":      {Kind: modules.String, Required: true},
	"unit_path": {Kind: modules.String},
	"name":      {Kind: modules.String},
	"user":      {Kind: modules.String},
	"group":     {Kind: modules.String},
	"home":      {Kind: modules.String},
	"shell":     {Kind: modules.String},
	"dirs":      {Kind: modules.List},
	// restore_marker is etcd.HostPaths.RestoreMarker: while it exists a
	// restore has this member stopped, and starting it is refused.
	"restore_marker": {Kind: modules.String},
	// start_after are the peer URLs of the members before this one; a new
	// cluster's member starts once they serve (see peers.go). data_dir
	// and config_file tell whether this member is new.
	"start_after": {Kind: modules.List},
	"data_dir":    {Kind: modules.String},
	"config_file": {Kind: modules.String},
}

// Validate checks the resolved arguments.
func (Module) Validate(args modules.Args) error {
	if err := spec.Check(args); err != nil {
		return err
	}
	if p := args.Int("ionice_priority", 0); p < 0 || p > 7 {
		return &modules.ArgError{Arg: "ionice_priority", Msg: fmt.Sprintf("best-effort IO priority must be 0 (highest) to 7, got %d", p)}
	}
	return nil
}

func wantFrom(args modules.Args) *want {
	w := &want{
		Name:     args.Str("name", "etcd.service"),
		UnitPath: args.Str("unit_path", DefaultUnitPath),
		User:     args.Str("user", "etcd"),
		Group:    args.Str("group", "etcd"),
		Home:     args.Str("home", "/var/lib/etcd"),
		Shell:    args.Str("shell", "/usr/sbin/nologin"),
		Dirs:     args.Strings("dirs"),
		Enabled:  args.Bool("enabled", true),
		State:    args.Str("state", "started"),
		Marker:   args.Str("restore_marker", ""),

		StartAfter: args.Strings("start_after"),
		DataDir:    args.Str("data_dir", ""),
		ConfigFile: args.Str("config_file", ""),
	}
	if u, ok := args["unit"]; ok {
		w.Unit = []byte(fmt.Sprint(u))
	}
	return w
}

// Plan looks at the host; it changes nothing.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	w := wantFrom(args)
	st, err := gatherState(ctx, w)
	if err != nil {
		return nil, fmt.Errorf("etcd_service on %s: %w", env.Host, err)
	}
	c, err := plan(st, w)
	if err != nil {
		return nil, fmt.Errorf("etcd_service on %s: %w", env.Host, err)
	}
	return c, nil
}

// Apply carries out the plan's steps in order.
func (Module) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	p, ok := c.Payload.(*payload)
	if !ok {
		return nil, fmt.Errorf("etcd_service on %s: plan payload missing", env.Host)
	}
	w := p.Want
	for _, s := range p.Steps {
		var err error
		switch s {
		case stepAccounts:
			err = user.ApplyAccounts(ctx, p.Accounts...)
		case stepDirs:
			err = ensureDirs(w)
		case stepUnit:
			err = writeUnit(ctx, w, p.NewUnit)
		case stepReload:
			err = systemd.Run(ctx, "daemon-reload", "", false)
		case stepEnable:
			// Any reload the unit needs was planned before this one.
			err = systemd.Run(ctx, "enable", w.Name, false)
		case stepDisable:
			err = systemd.Run(ctx, "disable", w.Name, false)
		case stepStart:
			if p.WaitFor != nil {
				waitForPeers(ctx, p.WaitFor, startAfterLimit)
			}
			err = systemd.Run(ctx, "start", w.Name, true)
		case stepStop:
			err = systemd.Run(ctx, "stop", w.Name, false)
		}
		if err != nil {
			return nil, fmt.Errorf("etcd_service on %s: %w", env.Host, err)
		}
	}
	return &modules.Result{Status: modules.StatusChanged, Change: c}, nil
}

// writeUnit writes the unit atomically, so systemd never reads half of
// it. A unit new to systemd should then show as loaded, with nothing to
// reload; a systemd that still holds "not found" for it gets the reload.
func writeUnit(ctx context.Context, w *want, isNew bool) error {
	if err := os.MkdirAll(filepath.Dir(w.UnitPath), 0o755); err != nil {
		return err
	}
	if err := hostfile.WriteAtomic(w.UnitPath, w.Unit, 0o644, -1, -1); err != nil || !isNew {
		return err
	}
	u, err := systemd.Show(ctx, w.Name)
	if err != nil {
		return err
	}
	if u.LoadState == "loaded" && !u.NeedDaemonReload {
		return nil
	}
	return systemd.Run(ctx, "daemon-reload", "", false)
}

// ensureDirs creates the data directories 0700 owned by the etcd user
// (looked up again: the user may have been created a step earlier).
func ensureDirs(w *want) error {
	u, ok, err := user.LookupAccount(w.User)
	if err == nil && !ok {
		err = fmt.Errorf("user %s does not exist", w.User)
	}
	if err != nil {
		return err
	}
	g, ok, err := user.LookupGroup(w.Group)
	if err == nil && !ok {
		err = fmt.Errorf("group %s does not exist", w.Group)
	}
	if err != nil {
		return err
	}
	dir := hostfile.Want{Mode: dirMode, UID: u.UID, GID: g.GID}
	for _, d := range w.Dirs {
		if err := os.MkdirAll(d, dirMode); err != nil {
			return err
		}
		if err := dir.Set(d); err != nil {
			return err
		}
	}
	return nil
}
