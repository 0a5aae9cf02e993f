package etcd_config

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
)

// Module is etcd_config: rendered on the controller (Resolve), written on
// the host.
type Module struct{}

// argContent carries the rendered config from Resolve to the host.
const argContent = "_content"

// Arguments as a playbook writes them; Resolve replaces them with the
// rendered content and where to put it.
var taskSpec = modules.Spec{
	// state: initial-cluster-state (default: the host's
	// etcd_initial_cluster_state, else new).
	"state":              {Kind: modules.String, OneOf: []string{"new", "existing"}},
	"template":           {Kind: modules.String},
	"dest":               {Kind: modules.String},
	"mode":               {Kind: modules.String},
	"owner":              {Kind: modules.String},
	"group":              {Kind: modules.String},
	"heartbeat_interval": {Kind: modules.Int},
	"election_timeout":   {Kind: modules.Int},
}

// What the host receives.
var hostSpec = modules.Spec{
	argContent: {Kind: modules.String, Required: true},
	"dest":     {Kind: modules.String, Required: true},
	"mode":     {Kind: modules.String},
	"owner":    {Kind: modules.String},
	"group":    {Kind: modules.String},
	"template": {Kind: modules.String}, // where the content came from, for messages
}

// Resolve renders the member's etcd.yaml from the cluster model. Every
// model error (duplicate names, enable-v2 on 3.6, ...) stops the run here,
// before any host is touched.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	if _, done := args[argContent]; done {
		return args, nil
	}
	if err := taskSpec.Check(args); err != nil {
		return nil, err
	}
	c, err := etcd.FromVars(rc.Vars)
	if err != nil {
		return nil, fmt.Errorf("etcd_config for %s: %w", rc.Host, err)
	}
	state := args.Str("state", "")
	if state == "" {
		if s, ok := rc.Vars["etcd_initial_cluster_state"].(string); ok && s != "" {
			state = s
		}
	}
	name, text, err := load(rc.BaseDir, args.Str("template", DefaultTemplate))
	if err != nil {
		return nil, &modules.ArgError{Arg: "template", Msg: err.Error()}
	}
	// With etcd_heartbeat_interval: auto, the timing is what etcd_tune
	// last measured and recorded in the state dir (etcd's defaults before
	// the first measurement).
	heartbeat, election, err := c.EffectiveTiming(rc.StateDir)
	if err != nil {
		return nil, fmt.Errorf("etcd_config for %s: %w", rc.Host, err)
	}
	out, err := Render(name, text, c, rc.Host, Options{
		State:             state,
		HeartbeatInterval: args.Int("heartbeat_interval", heartbeat),
		ElectionTimeout:   args.Int("election_timeout", election),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd_config for %s: %s: %w", rc.Host, name, err)
	}
	return modules.Args{
		argContent: out,
		"template": name,
		"dest":     args.Str("dest", c.Paths.ConfigFile),
		"mode":     args.Str("mode", "0640"),
		"owner":    args.Str("owner", "root"),
		// etcd runs as etcd and must read its config; nobody else needs to.
		"group": args.Str("group", "etcd"),
	}, nil
}

func (Module) Validate(args modules.Args) error {
	if _, ok := args[argContent]; !ok {
		return &modules.ArgError{Arg: "state", Msg: "etcd_config was not rendered on the controller (compile-time resolution skipped)"}
	}
	if err := hostSpec.Check(args); err != nil {
		return err
	}
	if !filepath.IsAbs(args.Str("dest", "")) {
		return &modules.ArgError{Arg: "dest", Msg: "must be an absolute path"}
	}
	return nil
}

func set(args modules.Args) etcd_install.Set {
	dest := args.Str("dest", "")
	return etcd_install.Set{
		Dirs: []etcd_install.Dir{{Path: filepath.Dir(dest), Mode: "0755"}},
		Files: []etcd_install.File{{Path: dest, Content: args.Str(argContent, ""),
			Mode: args.Str("mode", ""), Owner: args.Str("owner", ""), Group: args.Str("group", "")}},
	}
}

func (Module) Plan(_ context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd_install.PlanSet(set(args))
	if err != nil {
		return nil, fmt.Errorf("etcd_config on %s: %w", env.Host, err)
	}
	return c, nil
}

func (Module) Apply(_ context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	if err := etcd_install.ApplySet(c.Payload.(etcd_install.Set)); err != nil {
		return nil, fmt.Errorf("etcd_config on %s: %w", env.Host, err)
	}
	return &modules.Result{Status: modules.StatusChanged, Change: c}, nil
}

func init() {
	modules.Register("etcd_config", Module{})
}
