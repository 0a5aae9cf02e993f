package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Cleanup removes what labs left behind, for example after a test binary
// was killed: the containers (by their nspawn command line, and any process
// still running on a lab overlay), every mount under the state root, the
// lab firewall rules and the state dirs. name limits it to one lab; ""
// cleans every lab under DefaultStateRoot().
func Cleanup(name string) error {
	return cleanupIn(DefaultStateRoot(), name)
}

func cleanupIn(stateRoot, name string) error {
	if name != "" && !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q: want [a-z0-9-], at most 32 characters", name)
	}
	dir := filepath.Join(stateRoot, name)
	var errs []error
	for range 3 {
		nspawns, inside := labProcs(dir)
		if len(nspawns)+len(inside) == 0 {
			break
		}
		for _, pid := range nspawns {
			powerCut(pid)
		}
		for _, pid := range inside {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		waitGone(append(nspawns, inside...), 10*time.Second)
	}
	if nspawns, inside := labProcs(dir); len(nspawns)+len(inside) > 0 {
		errs = append(errs, fmt.Errorf("lab processes still running under %s: nspawn %v, inside %v", dir, nspawns, inside))
	}
	var machines []string // nil: every lab's
	if name != "" {
		machines = []string{}
		hosts, _ := os.ReadDir(filepath.Join(dir, "hosts"))
		for _, h := range hosts {
			machines = append(machines, name+"-"+h.Name())
		}
	}
	if err := removeCgroups(machines); err != nil {
		errs = append(errs, err)
	}
	if err := removeRules(name); err != nil {
		errs = append(errs, err)
	}
	if err := unmountAll(dir); err != nil {
		errs = append(errs, err)
	} else if name == "" {
		// Keep the root itself (it may be a mount point of its own making).
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	} else if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab cleanup %s: %w", dir, err)
	}
	return nil
}
