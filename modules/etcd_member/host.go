package etcd_member

import (
	"context"
	"fmt"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/hostprobe"
)

// unit is the unit etcd_service installs.
const unit = etcd.UnitName

// hostState is what a joining or retiring member's host looks like.
type hostState struct {
	Loaded   string   // systemd LoadState: "not-found" before etcd_service ran
	Active   string   // systemd ActiveState of etcd
	Enabled  string   // systemd UnitFileState of etcd
	NonEmpty []string // data (and WAL) dirs that hold etcd data
	// Layout of each data (and WAL) dir, by path.
	Layout map[string]etcd_install.DirLayout
}

// aside is where dir's data goes when moved aside with suffix.
func (s hostState) aside(dir, suffix string) string {
	if l, ok := s.Layout[dir]; ok {
		return l.Beside(suffix)
	}
	return dir + "." + suffix
}

func (s hostState) running() bool { return hostprobe.Unit{Active: s.Active}.Running() }

func dataDirs(c *etcd.Cluster) []string {
	dirs := []string{c.DataDir}
	if c.WALDir != "" {
		dirs = append(dirs, c.WALDir)
	}
	return dirs
}

func probeHost(ctx context.Context, r modules.Host, c *etcd.Cluster) (hostState, error) {
	f, err := hostprobe.Ask(ctx, r, hostprobe.Query{Units: []string{unit}})
	if err != nil {
		return hostState{}, err
	}
	u := f.Units[unit]
	st := hostState{Loaded: u.Load, Active: u.Active, Enabled: u.Enabled}
	lay, err := etcd_install.ProbeDirs(ctx, r, dataDirs(c)...)
	if err != nil {
		return hostState{}, err
	}
	st.Layout = map[string]etcd_install.DirLayout{}
	for _, l := range lay {
		st.Layout[l.Path] = l
		if l.HasData() {
			st.NonEmpty = append(st.NonEmpty, l.Path)
		}
	}
	return st, nil
}

// writeConfig writes the joiner's etcd.yaml through etcd_config's host
// side (atomic write, mode 0640 root:etcd).
func writeConfig(ctx context.Context, w modules.HostWriter, c *etcd.Cluster, tmplName, content string) error {
	res, err := w.Apply(ctx, "etcd_config", modules.Args{
		"_content": content, "template": tmplName, "dest": c.Paths.ConfigFile,
		"mode": "0640", "owner": "root", "group": "etcd",
	})
	if err != nil {
		return err
	}
	if res.Status == modules.StatusFailed {
		return fmt.Errorf("write %s: %s", c.Paths.ConfigFile, res.Msg)
	}
	return nil
}
