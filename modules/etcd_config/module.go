package etcd_config

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

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
	// data_dir: once it holds a member, etcd no longer reads the
	// initial-cluster* keys, and a change to them alone is not made.
	"data_dir": {Kind: modules.String},
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
	return HostArgs(c, rc.Host, rc.BaseDir, rc.StateDir, rc.Vars, args)
}

// HostArgs renders host's etcd.yaml from the cluster model c and returns
// what the host side of etcd_config takes: the one rendering of etcd.yaml,
// for this module and for modules that write a member's config in steps
// (the TLS migration renders it from a model of the phase it moves to).
// args are the task's (state, template, dest, mode, owner, group,
// heartbeat_interval, election_timeout); vars are the host's variables.
func HostArgs(c *etcd.Cluster, host, baseDir, stateDir string, vars map[string]any, args modules.Args) (modules.Args, error) {
	state := args.Str("state", "")
	if state == "" {
		if s, ok := vars["etcd_initial_cluster_state"].(string); ok && s != "" {
			state = s
		}
	}
	name, text, err := load(baseDir, args.Str("template", DefaultTemplate))
	if err != nil {
		return nil, &modules.ArgError{Arg: "template", Msg: err.Error()}
	}
	// With etcd_heartbeat_interval: auto, the timing is what etcd_tune
	// last measured and recorded in the state dir (etcd's defaults before
	// the first measurement).
	heartbeat, election, err := c.EffectiveTiming(stateDir)
	if err != nil {
		return nil, fmt.Errorf("etcd_config for %s: %w", host, err)
	}
	out, err := Render(name, text, c, host, Options{
		State:             state,
		HeartbeatInterval: args.Int("heartbeat_interval", heartbeat),
		ElectionTimeout:   args.Int("election_timeout", election),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd_config for %s: %s: %w", host, name, err)
	}
	return modules.Args{
		argContent: out,
		"template": name,
		"dest":     args.Str("dest", c.Paths.ConfigFile),
		"data_dir": c.DataDir,
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
	if cur, ok := bootstrappedOnly(args); ok {
		// Keep the file as it is: what differs etcd does not read, and a
		// rewrite would restart a converged member for nothing (after a
		// scale-out, every member's initial-cluster would "change").
		args = maps.Clone(args)
		args[argContent] = cur
	}
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

// bootstrapKeys are read by etcd only when its data dir holds no member
// yet (etcd's docs: "ignored on restart"). A line starting with one of
// them is such a key.
var bootstrapKeys = []string{"initial-cluster:", "initial-cluster-state:", "initial-cluster-token:"}

// bootstrappedOnly returns the file on the host when the member has
// bootstrapped (data_dir/member exists) and the file differs from the
// rendered content only in bootstrapKeys.
func bootstrappedOnly(args modules.Args) (string, bool) {
	dataDir := args.Str("data_dir", "")
	if dataDir == "" {
		return "", false
	}
	if st, err := os.Stat(etcd.MemberDir(dataDir)); err != nil || !st.IsDir() {
		return "", false
	}
	cur, err := os.ReadFile(args.Str("dest", ""))
	if err != nil {
		return "", false
	}
	want := args.Str(argContent, "")
	if string(cur) == want || withoutBootstrapKeys(string(cur)) != withoutBootstrapKeys(want) {
		return "", false
	}
	return string(cur), true
}

func withoutBootstrapKeys(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		boot := false
		for _, k := range bootstrapKeys {
			if strings.HasPrefix(line, k) {
				boot = true
			}
		}
		if !boot {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}
