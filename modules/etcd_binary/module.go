package etcd_binary

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
)

// Module is etcd_binary. It runs on the controller: the release is fetched
// and verified there once, and pushed only to hosts that lack it.
type Module struct{}

// RunsOnController marks the module controller-side.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	// version overrides etcd_version (the upgrade runbook passes it).
	"version":      {Kind: modules.String, Valid: etcd.ValidVersion},
	"install_root": {Kind: modules.String},
	"bin_dir":      {Kind: modules.String},
	"upload_dir":   {Kind: modules.String},
	// stage installs the release beside the running one without switching
	// the links (upgrade.yml switches them one member at a time).
	"stage": {Kind: modules.Bool},
}

func (Module) Validate(args modules.Args) error {
	return spec.Check(args)
}

// Prepare fetches, verifies and repacks the release while the runner is
// still connecting to hosts; Plan then finds it in the cache.
func (Module) Prepare(ctx context.Context, env *modules.Env, args modules.Args) {
	if c, err := cluster(env, args); err == nil && env.StateDir != "" {
		_, _ = Fetch(ctx, c, env.StateDir, nil)
	}
}

// plan is the payload Plan hands to Apply.
type plan struct {
	rel    *Release
	remote string // where the tarball goes on the host
	args   modules.Args
	upload bool
}

func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := cluster(env, args)
	if err != nil {
		return nil, err
	}
	if env.Remote == nil {
		return nil, fmt.Errorf("etcd_binary on %s: no connection to the host", env.Host)
	}
	if env.StateDir == "" {
		return nil, fmt.Errorf("etcd_binary on %s: no controller state directory", env.Host)
	}
	rel, err := Fetch(ctx, c, env.StateDir, env.Logf)
	if err != nil {
		return nil, fmt.Errorf("etcd_binary on %s: %w", env.Host, err)
	}
	paths := c.Paths
	p := &plan{rel: rel, remote: filepath.Join(args.Str("upload_dir", paths.UploadDir), rel.HostName())}
	p.args = etcd_install.InstallArgs{
		Version:     c.Version.String(),
		Tarball:     p.remote,
		SHA256:      rel.Files,
		InstallRoot: args.Str("install_root", paths.InstallRoot),
		BinDir:      args.Str("bin_dir", paths.BinDir),
		Stage:       args.Bool("stage", false),
	}.Args()
	res, err := env.Remote.Plan(ctx, "etcd_install", p.args)
	if err != nil {
		return nil, fmt.Errorf("etcd_binary on %s: %w", env.Host, err)
	}
	if res.Status == modules.StatusFailed {
		return nil, fmt.Errorf("etcd_binary on %s: %s", env.Host, res.Msg)
	}
	ch := &modules.Change{Payload: p}
	if res.Change != nil {
		for _, a := range res.Change.Actions {
			// The host needs the tarball only to unpack a release, not to
			// re-point links at one it already has.
			if a.Target == filepath.Join(p.args.Str("install_root", ""), c.Version.String()) {
				p.upload = true
			}
		}
		if p.upload {
			ch.Add("+", p.remote, fmt.Sprintf("upload the binaries of %s (sha256 %s)", c.Tarball(), rel.SHA256[:12]))
		}
		ch.Actions = append(ch.Actions, res.Change.Actions...)
	}
	return ch, nil
}

func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	p := ch.Payload.(*plan)
	w, err := env.Writer(env.Host)
	if err != nil {
		return nil, fmt.Errorf("etcd_binary: %w", err)
	}
	if p.upload {
		// Upload does not create directories; the upload dir is private
		// to root while a release sits in it.
		dir := etcd_install.Set{Dirs: []etcd_install.Dir{{Path: filepath.Dir(p.remote), Mode: "0700", Owner: "root", Group: "root"}}}
		if res, err := w.Apply(ctx, "etcd_files", dir.Args()); err != nil || res.Status == modules.StatusFailed {
			if err == nil {
				err = fmt.Errorf("%s", res.Msg)
			}
			return nil, fmt.Errorf("etcd_binary on %s: %w", env.Host, err)
		}
		f, err := os.Open(p.rel.Repack)
		if err != nil {
			return nil, fmt.Errorf("etcd_binary on %s: %w", env.Host, err)
		}
		err = w.Upload(ctx, f, p.remote, 0o600)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("etcd_binary on %s: upload %s: %w", env.Host, p.remote, err)
		}
	}
	res, err := w.Apply(ctx, "etcd_install", p.args)
	if err != nil {
		return nil, fmt.Errorf("etcd_binary on %s: %w", env.Host, err)
	}
	if res.Status == modules.StatusFailed {
		return res, fmt.Errorf("etcd_binary on %s: %s", env.Host, res.Msg)
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch,
		Data: map[string]any{"version": p.args.Str("version", ""), "sha256": p.rel.SHA256}}, nil
}

func cluster(env *modules.Env, args modules.Args) (*etcd.Cluster, error) {
	c, err := etcd.FromVarsAt(env.Vars, args.Str("version", ""))
	if err != nil {
		return nil, fmt.Errorf("etcd_binary on %s: %w", env.Host, err)
	}
	return c, nil
}

func init() {
	modules.Register("etcd_binary", Module{})
}

// Resolve checks the cluster model at compile time, so a bad etcd_version
// or release URL stops the run before any host is touched.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	if _, err := cluster(&modules.Env{Host: rc.Host, Vars: rc.Vars}, args); err != nil {
		return nil, err
	}
	return args, nil
}
