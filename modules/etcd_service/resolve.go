package etcd_service

import (
	"path/filepath"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	tmplmod "github.com/etcdplay/etcdplay/modules/template"
)

// DefaultUnitPath is where the unit goes: /etc/systemd/system, so a
// distribution package's unit in /lib/systemd can never shadow ours.
const DefaultUnitPath = "/etc/systemd/system/etcd.service"

// DefaultTemplate is the unit template's name, looked up in the playbook's
// templates/ directory first and then in the binary.
const DefaultTemplate = "etcd.service.tmpl"

// DefaultStartTimeout bounds how long systemd waits for etcd's READY=1.
// A new member waits for quorum before it is ready, so this must cover
// the slowest peer's start.
const DefaultStartTimeout = "120"

// UnitData is what the unit template sees.
type UnitData struct {
	Name            string // etcd member name
	User, Group     string
	Binary          string
	ConfigFile      string
	DataDir         string
	IONicePriority  int
	TimeoutStartSec string
	Vars            map[string]any // the host's variables, for custom templates
}

// Resolve renders the unit on the controller and adds the cluster model's
// paths, so the agent gets plain values.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	c, m, err := etcd.MemberOf(rc.Vars, rc.Host)
	if err != nil {
		return nil, err
	}
	out := modules.Args{}
	for k, v := range args {
		out[k] = v
	}
	data := UnitData{
		Name:            m.Name,
		User:            "etcd",
		Group:           "etcd",
		Binary:          filepath.Join(c.Paths.BinDir, "etcd"),
		ConfigFile:      c.Paths.ConfigFile,
		DataDir:         c.DataDir,
		IONicePriority:  args.Int("ionice_priority", c.IonicePriority),
		TimeoutStartSec: args.Str("start_timeout", DefaultStartTimeout),
		Vars:            rc.Vars,
	}
	name := args.Str("template", DefaultTemplate)
	unit, err := tmplmod.RenderFile(rc.BaseDir, name, data)
	if err != nil {
		return nil, &modules.ArgError{Arg: "template", Msg: err.Error()}
	}
	dirs := []any{c.DataDir}
	if c.WALDir != "" {
		dirs = append(dirs, c.WALDir)
	}
	before := []any{} // not nil: arguments travel to the agent as JSON
	for _, o := range c.Members {
		if o.Host == m.Host {
			break
		}
		before = append(before, o.PeerURL)
	}
	out["unit"] = unit
	out["start_after"] = before
	out["data_dir"] = c.DataDir
	out["config_file"] = c.Paths.ConfigFile
	setDefault(out, "unit_path", DefaultUnitPath)
	setDefault(out, "name", "etcd.service")
	setDefault(out, "user", data.User)
	setDefault(out, "group", data.Group)
	setDefault(out, "home", c.DataDir)
	setDefault(out, "shell", "/usr/sbin/nologin")
	setDefault(out, "dirs", dirs)
	setDefault(out, "restore_marker", c.Paths.RestoreMarker)
	return out, nil
}

func setDefault(a modules.Args, k string, v any) {
	if _, ok := a[k]; !ok {
		a[k] = v
	}
}
