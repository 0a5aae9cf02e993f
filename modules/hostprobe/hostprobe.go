// Package hostprobe is the read-only question controller-side modules ask
// a host about its state (systemd units, paths, users, free space) before
// they plan. It runs in the agent as a registered probe: Go code that only
// reads, reached through modules.Host.Probe, so a Plan, and every --check,
// learns what it needs without a command running on the host.
package hostprobe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"time"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/systemd"
)

// Name is the probe's registry name.
const Name = "host"

func init() { modules.RegisterProbe(Name, prober{}) }

// Query says what to look at. Every list may be empty.
type Query struct {
	// Units are systemd unit names.
	Units []string
	// Paths are files whose existence, mode and mtime matter.
	Paths []string
	// Users are account names.
	Users []string
	// Free are paths whose filesystem's free space matters (measured at
	// the nearest existing dir when the path does not exist yet).
	Free []string
	// Addrs asks for the host's interface addresses.
	Addrs bool
}

func (q Query) args() modules.Args {
	return modules.Args{"units": list(q.Units), "paths": list(q.Paths), "users": list(q.Users), "free": list(q.Free), "addrs": q.Addrs}
}

func list(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Facts is the answer, keyed like the Query.
type Facts struct {
	Units map[string]Unit   `json:"units,omitempty"`
	Paths map[string]Path   `json:"paths,omitempty"`
	Users map[string]bool   `json:"users,omitempty"`
	Free  map[string]uint64 `json:"free,omitempty"`
	// Addrs are the interface addresses in CIDR form (10.0.0.5/24).
	Addrs []string `json:"addrs,omitempty"`
}

// Newest is the newest mtime among paths (ties name the first given) and
// the path that has it; zero and "" when none exists.
func (f *Facts) Newest(paths []string) (time.Time, string) {
	var t time.Time
	var p string
	for _, path := range paths {
		if st := f.Paths[path]; st.Exists && st.ModTime.After(t) {
			t, p = st.ModTime, path
		}
	}
	return t, p
}

// Unit is a systemd unit's state as `systemctl show` reports it.
type Unit struct {
	// Load is LoadState: "not-found" before the unit file exists.
	Load string `json:"load"`
	// Active is ActiveState: active, activating, inactive, failed, ...
	Active string `json:"active"`
	// Enabled is UnitFileState: enabled, disabled, or empty.
	Enabled string `json:"enabled,omitempty"`
	// Started is when the running main process started (zero if never).
	Started time.Time `json:"started,omitempty"`
}

// Running reports whether the unit is up or on its way up or down (a
// process may be there).
func (u Unit) Running() bool {
	switch u.Active {
	case "active", "activating", "reloading", "deactivating":
		return true
	}
	return false
}

// Path is one path's state.
type Path struct {
	Exists     bool `json:"exists"`
	Executable bool `json:"executable,omitempty"`
	// ModTime is the newer of the path's own mtime and, for a symlink,
	// its target's: swapping a link (an upgrade) and rewriting the file
	// it points to both count as a change.
	ModTime time.Time `json:"mtime,omitempty"`
}

// Ask runs q on h.
func Ask(ctx context.Context, h modules.Host, q Query) (*Facts, error) {
	var f Facts
	if err := h.Probe(ctx, Name, q.args(), &f); err != nil {
		return nil, err
	}
	return &f, nil
}

type prober struct{}

func (prober) Probe(ctx context.Context, args modules.Args) (any, error) {
	f := Facts{}
	if units := args.Strings("units"); len(units) > 0 {
		f.Units = map[string]Unit{}
		for _, u := range units {
			st, err := unitState(ctx, u)
			if err != nil {
				return nil, err
			}
			f.Units[u] = st
		}
	}
	if paths := args.Strings("paths"); len(paths) > 0 {
		f.Paths = map[string]Path{}
		for _, p := range paths {
			st, err := pathState(p)
			if err != nil {
				return nil, err
			}
			f.Paths[p] = st
		}
	}
	if users := args.Strings("users"); len(users) > 0 {
		f.Users = map[string]bool{}
		for _, name := range users {
			_, err := user.Lookup(name)
			var unknown user.UnknownUserError
			switch {
			case err == nil:
				f.Users[name] = true
			case errors.As(err, &unknown):
				f.Users[name] = false
			default:
				return nil, fmt.Errorf("look up user %s: %w", name, err)
			}
		}
	}
	if free := args.Strings("free"); len(free) > 0 {
		f.Free = map[string]uint64{}
		for _, p := range free {
			n, _, err := hostfile.FreeBytes(p)
			if err != nil {
				return nil, err
			}
			f.Free[p] = n
		}
	}
	if args.Bool("addrs", false) {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return nil, fmt.Errorf("interface addresses: %w", err)
		}
		for _, a := range addrs {
			f.Addrs = append(f.Addrs, a.String())
		}
	}
	return f, nil
}

func unitState(ctx context.Context, unit string) (Unit, error) {
	st, err := systemd.Show(ctx, unit)
	if err != nil {
		return Unit{}, err
	}
	return Unit{Load: st.LoadState, Active: st.ActiveState, Enabled: st.UnitFileState, Started: st.MainStarted}, nil
}

func pathState(p string) (Path, error) {
	li, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Path{}, nil
	}
	if err != nil {
		return Path{}, err
	}
	st := Path{Exists: true, ModTime: li.ModTime()}
	fi := li
	if li.Mode()&os.ModeSymlink != 0 {
		if fi, err = os.Stat(p); err != nil {
			// A dangling link exists but is not a usable file.
			return st, nil
		}
		if fi.ModTime().After(st.ModTime) {
			st.ModTime = fi.ModTime()
		}
	}
	st.Executable = fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
	return st, nil
}
