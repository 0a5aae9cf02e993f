// Package etcd_proxy runs etcd's own proxies on client hosts (inventory
// group etcd_clients): `etcd grpc-proxy` (L7: coalesces watches and lease
// keep-alives, namespaces, terminates TLS) or `etcd gateway` (L4: TCP to
// the members, round robin). Applications there talk to a stable local
// endpoint while the cluster's membership changes, and the proxy's
// endpoint list is rendered from the live member list, so a scale-out or a
// replaced node reaches the proxies on the next converge.
//
// It runs on the controller (the member list comes from the etcd API, and
// the proxy's health is checked through it) and composes the host side
// from the service planner etcd_service runs in the agent: the proxy's
// user, its directory, the unit, enablement and the first start.
//
// States:
//   - preflight checks what only the host can tell (the listen address is
//     one of its own) before anything changes on any host;
//   - present and started converge the unit (started also starts it and
//     waits until it serves);
//   - restarted, the handler, restarts the proxies whose unit or
//     certificates changed after they started, one at a time, each
//     serving again before the next.
package etcd_proxy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	tmplmod "github.com/etcdplay/etcdplay/modules/template"
)

func init() {
	modules.Register("etcd_proxy", Module{})
	modules.RegisterGroup(etcd.ClientsGroup)
}

// Module is the etcd_proxy module.
type Module struct{}

// RunsOnController marks etcd_proxy as controller-side.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	"state": {Kind: modules.String, OneOf: []string{"preflight", "present", "started", "restarted"}},
	// template overrides the unit template (looked up beside the playbook
	// first, then in the binary).
	"template": {Kind: modules.String},
	// timeout bounds the wait for a proxy to serve after a start.
	"timeout": {Kind: modules.Duration},
	// base_dir is the playbook's directory (set by Resolve: templates).
	"base_dir": {Kind: modules.String},
}

// DefaultTemplate is the unit template's name.
const DefaultTemplate = "etcd-proxy.service.tmpl"

const defaultTimeout = 60 * time.Second

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	return spec.Check(args)
}

// unitSafe is what may go into an ExecStart argument unquoted: no
// whitespace, no systemd specifier (%) or variable ($), no escape.
var unitSafe = regexp.MustCompile(`^[A-Za-z0-9/._:+@,=\[\]-]+$`)

// Resolve checks at compile time that the host is a client host and that
// its proxy's variables are sound, so bad input stops the run before any
// host is touched, and renders the template once to catch its errors.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	c, err := etcd.FromVars(rc.Vars)
	if err != nil {
		return nil, err
	}
	px, err := c.Proxy(rc.Host)
	if err != nil {
		return nil, fmt.Errorf("etcd_proxy for %s: %w", rc.Host, err)
	}
	for v, val := range map[string]string{
		"etcd_proxy_namespace":       px.Namespace,
		"etcd_proxy_resolver_prefix": px.ResolverPrefix,
		"etcd_proxy_advertise_url":   px.AdvertiseURL,
		"etcd_proxy_metrics_url":     px.MetricsURL,
	} {
		if val != "" && !unitSafe.MatchString(val) {
			return nil, &etcd.VarError{Var: v, Host: rc.Host, Msg: fmt.Sprintf("%q must be letters, digits and /._:+@,=- only (it goes into the unit's command line)", val)}
		}
	}
	if _, err := renderUnit(rc.BaseDir, args.Str("template", DefaultTemplate), c, *px, rc.Vars); err != nil {
		return nil, &modules.ArgError{Arg: "template", Msg: err.Error()}
	}
	out := modules.Args{}
	for k, v := range args {
		out[k] = v
	}
	out["base_dir"] = rc.BaseDir
	return out, nil
}

// Plan dispatches on state.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	state := args.Str("state", "started")
	if state == "restarted" {
		return planRestart(ctx, env, c, args)
	}
	px, err := c.Proxy(env.Host)
	if err != nil {
		return nil, fmt.Errorf("etcd_proxy: %w", err)
	}
	if env.Remote == nil {
		return nil, fmt.Errorf("etcd_proxy on %s: no connection to the host", env.Host)
	}
	for _, w := range px.Warnings {
		env.Logf("warning: %s", w)
	}
	if state == "preflight" {
		if err := preflight(ctx, env.Remote, *px); err != nil {
			return nil, fmt.Errorf("etcd_proxy on %s: %w", env.Host, err)
		}
		return &modules.Change{}, nil
	}
	return planUnit(ctx, env, c, *px, args, state)
}

// Apply carries out what Plan decided.
func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	switch p := ch.Payload.(type) {
	case *unitPlan:
		return applyUnit(ctx, env, ch, p)
	case *restartPlan:
		return applyRestart(ctx, env, ch, p)
	}
	return nil, errors.New("etcd_proxy: plan payload missing")
}

// unitData is what the unit template sees.
type unitData struct {
	Mode        string // grpc-proxy or gateway
	Host        string
	User, Group string
	Binary      string
	Listen      string
	// EndpointsFile sets ETCD_PROXY_ENDPOINTS, the members to start with.
	EndpointsFile string
	// Flags are the mode's further options, one "--flag=value" each.
	Flags []string
	Vars  map[string]any
}

// renderUnit renders the proxy's unit. The endpoints are not in it (they
// are in ProxyEndpointsFile), so a membership change leaves it alone.
func renderUnit(baseDir, tmpl string, c *etcd.Cluster, px etcd.Proxy, vars map[string]any) (string, error) {
	d := unitData{
		Mode: px.Mode, Host: px.Host,
		User: etcd.ProxyUser, Group: etcd.ProxyUser,
		Binary:        path.Join(c.Paths.BinDir, "etcd"),
		Listen:        px.Listen(),
		EndpointsFile: etcd.ProxyEndpointsFile,
		Flags:         flags(c, px),
		Vars:          vars,
	}
	return tmplmod.RenderFile(baseDir, tmpl, d)
}
