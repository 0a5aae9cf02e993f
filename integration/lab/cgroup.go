package lab

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
)

// Each host's systemd-nspawn runs in a cgroup of its own,
// <hierarchy>/etcdplay-lab/<machine>. With --keep-unit and no systemd
// to make a scope, nspawn puts the container's payload under its own
// cgroup; started from one process, every host shared one, and their
// systemds raced over the same system.slice/<unit> directories: "Failed
// to attach to cgroup /system.slice/...: No such file or directory",
// units failing at boot (systemd-user-sessions among them, leaving
// /run/nologin, which refuses every user but root) and boots that never
// finished.
const cgroupParent = "etcdplay-lab"

// cgroupRoots are the hierarchies systemd tracks units in: the named
// systemd hierarchy and the unified one (cgroup v1 and hybrid), or the
// unified root alone (cgroup v2).
func cgroupRoots() []string {
	var out []string
	for _, d := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err == nil {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
			out = append(out, "/sys/fs/cgroup")
		}
	}
	return out
}

// hostCgroups makes machine's cgroup in every hierarchy and returns the
// cgroup.procs files to move nspawn into. None when the machine has no
// writable cgroup hierarchy: nspawn then runs where it is, as before.
func hostCgroups(machine string) []string {
	var procs []string
	for _, root := range cgroupRoots() {
		dir := filepath.Join(root, cgroupParent, machine)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			continue
		}
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	return procs
}

// removeCgroups removes the cgroups of the named machines (every lab's
// when machines is nil), deepest first: a cgroup goes only when it is
// empty, so one that still holds a process stays, and says so.
func removeCgroups(machines []string) error {
	var errs []error
	for _, root := range cgroupRoots() {
		parent := filepath.Join(root, cgroupParent)
		ents, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() || (machines != nil && !slices.Contains(machines, e.Name())) {
				continue
			}
			var dirs []string
			_ = filepath.WalkDir(filepath.Join(parent, e.Name()), func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
			for _, d := range dirs {
				if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}
