package etcd_backup_timer

import (
	"fmt"
	"path"
	"regexp"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// Defaults of the variables this module reads.
const (
	DefaultDir       = "/var/backups/etcd"
	DefaultLocalKeep = 7
	defaultTimeout   = "15min"
)

// unitData is what the unit templates see.
type unitData struct {
	Name, User, Group string
	Endpoint          string
	TLS               bool
	CACert, Cert, Key string
	Dir               string
	Keep              int
	Etcdctl           string
	Script            string
	Schedule          string
	Timeout           string
	Vars              map[string]any
}

// safeRE is what may appear in an Environment= value or ExecStart path
// without systemd quoting or specifier expansion coming into play.
var safeRE = regexp.MustCompile(`^[A-Za-z0-9/._:+@-]+$`)

// Resolve reads the backup variables, renders the units on the controller
// and hands the agent plain content.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	c, err := etcd.FromVars(rc.Vars)
	if err != nil {
		return nil, err
	}
	m, err := c.Member(rc.Host)
	if err != nil {
		return nil, err
	}
	vars := modules.Args(rc.Vars)
	pick := func(arg, variable, def string) string {
		if v := args.Str(arg, ""); v != "" {
			return v
		}
		return vars.Str(variable, def)
	}
	out := modules.Args{}
	for k, v := range args {
		out[k] = v
	}
	state, schedule, err := job.Schedule(args, rc.Vars, rc.Host)
	if err != nil {
		return nil, err
	}
	out["state"] = state
	if state == "absent" {
		// Not chosen for local backups: make sure no timer is left.
		return out, nil
	}
	dir := pick("dir", "etcd_backup_dir", DefaultDir)
	if !path.IsAbs(dir) || !safeRE.MatchString(dir) || path.Clean(dir) == "/" {
		return nil, &etcd.VarError{Var: "etcd_backup_dir", Host: rc.Host, Msg: fmt.Sprintf("%q must be an absolute path of letters, digits and /._:+@-", dir)}
	}
	keep := args.Int("keep", vars.Int("etcd_backup_local_keep", DefaultLocalKeep))
	if keep < 1 {
		return nil, &etcd.VarError{Var: "etcd_backup_local_keep", Host: rc.Host, Msg: fmt.Sprintf("%v must be at least 1", keep)}
	}
	d := unitData{
		Name: m.Name, User: "etcd", Group: "etcd",
		Endpoint: m.ClientURL, TLS: c.TLS,
		CACert: c.Paths.CACert, Cert: c.Paths.ServerCert, Key: c.Paths.ServerKey,
		Dir: dir, Keep: keep,
		Etcdctl:  path.Join(c.Paths.BinDir, "etcdctl"),
		Script:   ScriptPath,
		Schedule: schedule,
		Timeout:  args.Str("timeout", defaultTimeout),
		Vars:     rc.Vars,
	}
	if err := job.RenderUnits(rc.BaseDir, rc.Host, d, []string{d.Endpoint, d.CACert, d.Cert, d.Key, d.Etcdctl, d.Timeout}, out); err != nil {
		return nil, err
	}
	out["schedule"] = schedule
	out["dir"] = dir
	out["keep"] = keep
	out["user"] = d.User
	out["start_detail"] = fmt.Sprintf("snapshots into %s, keep %d", dir, keep)
	return out, nil
}
