package etcd_service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/etcdplay/etcdplay/modules/systemd"
	"github.com/etcdplay/etcdplay/modules/user"
	"gopkg.in/yaml.v3"
)

// dirState is what we know of one directory we manage.
type dirState struct {
	Exists   bool
	IsDir    bool
	Mode     fs.FileMode
	UID, GID int
}

// unitState is the part of `systemctl show` we act on.
type unitState struct {
	LoadState        string // loaded, not-found
	ActiveState      string // active, activating, inactive, failed, ...
	UnitFileState    string // enabled, disabled, "" when not found
	NeedDaemonReload bool
}

// Running reports whether etcd is up or on its way up (a bootstrapping
// member waits in "activating" until the cluster has quorum).
func (u unitState) Running() bool {
	switch u.ActiveState {
	case "active", "activating", "reloading":
		return true
	}
	return false
}

// hostState is everything Plan looks at, gathered in one pass so the plan
// itself is a pure function (and table-testable).
type hostState struct {
	User     *user.Account // nil when absent
	Group    *user.Group   // nil when absent
	Dirs     map[string]dirState
	Unit     []byte // nil when the unit file does not exist
	UnitSeen bool
	Systemd  unitState
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
	st := &hostState{Dirs: map[string]dirState{}}
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
		fi, err := os.Stat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			st.Dirs[d] = dirState{}
		case err != nil:
			return nil, err
		default:
			ds := dirState{Exists: true, IsDir: fi.IsDir(), Mode: fi.Mode().Perm(), UID: -1, GID: -1}
			if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
				ds.UID, ds.GID = int(sys.Uid), int(sys.Gid)
			}
			st.Dirs[d] = ds
		}
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
	st.Systemd, err = showUnit(ctx, w.Name)
	if err != nil {
		return nil, err
	}
	if len(w.StartAfter) > 0 && !st.Systemd.Running() && !memberDataExists(w.DataDir) {
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

// showUnit asks systemd about the unit in one exec (the no-op path of a
// warm apply is dominated by process starts, so keep them few).
func showUnit(ctx context.Context, name string) (unitState, error) {
	out, err := exec.CommandContext(ctx, "systemctl", "show", name,
		"-p", "LoadState", "-p", "ActiveState", "-p", "UnitFileState", "-p", "NeedDaemonReload").Output()
	if err != nil {
		return unitState{}, fmt.Errorf("systemctl show %s: %w%s", name, err, stderrOf(err))
	}
	return parseShow(out), nil
}

func parseShow(out []byte) unitState {
	u := systemd.ParseShow(string(out))
	return unitState{LoadState: u.LoadState, ActiveState: u.ActiveState,
		UnitFileState: u.UnitFileState, NeedDaemonReload: u.NeedDaemonReload}
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// run executes one command of an Apply step, with its stderr in the error.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
		}
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}
