package lab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// hostLimits are kernel limits every container's systemd draws from: each
// booted host takes several inotify instances (systemd, journald, logind),
// and Debian's default of 128 per user stops a boot at about 15 hosts with
// "Failed to create inotify object: Too many open files".
var hostLimits = []struct {
	path string
	min  int
}{
	{"/proc/sys/fs/inotify/max_user_instances", 8192},
	{"/proc/sys/fs/inotify/max_user_watches", 524288},
}

// raiseLimits raises (never lowers) the limits above; they are machine-wide.
func raiseLimits() error {
	for _, l := range hostLimits {
		raw, err := os.ReadFile(l.path)
		if err != nil {
			return fmt.Errorf("read %s: %w", l.path, err)
		}
		cur, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			return fmt.Errorf("read %s: %w", l.path, err)
		}
		if cur >= l.min {
			continue
		}
		if err := os.WriteFile(l.path, []byte(strconv.Itoa(l.min)), 0o644); err != nil {
			return fmt.Errorf("raise %s to %d (containers' systemd needs it): %w", l.path, l.min, err)
		}
	}
	return nil
}
