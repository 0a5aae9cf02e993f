package etcd_service

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules/systemd"
	"github.com/etcdplay/etcdplay/modules/user"
	"gopkg.in/yaml.v3"
)

// hostState is everything Plan looks at, gathered in one pass so the plan
// itself is a pure function (and table-testable).
type hostState struct {
	User     *user.Account // nil when absent
	Group    *user.Group   // nil when absent
	Dirs     map[string]hostfile.FileState
	Unit     []byte // nil when the unit file does not exist
	UnitSeen bool
	Systemd  systemd.UnitState
	Marker   []byte // the restore marker's content; nil without one
	// NewClusterMember: the data dir holds no member yet and etcd.yaml
	// says initial-cluster-state new, so etcd will ask its peers before
	// it bootstraps.
	NewClusterMember bool
}

// lookupGroup finds a group among those gathered: the plan stays a pure
// function of the state.
func (st *hostState) lookupGroup(name string) (user.Group, bool, error) {
	if st.Group != nil && st.Group.Name == name {
		return *st.Group, true, nil
	}
	return user.Group{}, false, nil
}

func gatherState(ctx context.Context, w *want) (*hostState, error) {
	st := &hostState{Dirs: map[string]hostfile.FileState{}}
	if a, ok, err := user.LookupAccount(w.User); err != nil {
		return nil, err
	} else if ok {
		st.User = &a
	}
	if g, ok, err := user.LookupGroup(w.Group); err != nil {
		return nil, err
	} else if ok {
		st.Group = &g
	}
	for _, d := range w.Dirs {
		ds, err := hostfile.StateFollow(d)
		if err != nil {
			return nil, err
		}
		st.Dirs[d] = ds
	}
	unit, err := os.ReadFile(w.UnitPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		st.Unit, st.UnitSeen = unit, true
	}
	if w.Marker != "" {
		switch b, err := os.ReadFile(w.Marker); {
		case err == nil:
			st.Marker = b
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	st.Systemd, err = systemd.Show(ctx, w.Name)
	if err != nil {
		return nil, err
	}
	if len(w.StartAfter) > 0 && !st.Systemd.Active() && !memberDataExists(w.DataDir) {
		st.NewClusterMember = initialClusterNew(w.ConfigFile)
	}
	return st, nil
}

// initialClusterNew reports whether the etcd config file says
// initial-cluster-state: new (etcd's default when it is unset).
func initialClusterNew(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var cfg struct {
		State string `yaml:"initial-cluster-state"`
	}
	if yaml.Unmarshal(b, &cfg) != nil {
		return false
	}
	return cfg.State == "" || cfg.State == "new"
}
