package etcd_member

import (
	"context"
	"fmt"
	"strings"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// unit is the unit etcd_service installs.
const unit = "etcd.service"

// hostState is what a joining or retiring member's host looks like.
type hostState struct {
	Loaded   string   // systemd LoadState: "not-found" before etcd_service ran
	Active   string   // systemd ActiveState of etcd
	Enabled  string   // systemd UnitFileState of etcd
	NonEmpty []string // data (and WAL) dirs that hold something
}

func (s hostState) running() bool {
	switch s.Active {
	case "active", "activating", "reloading", "deactivating":
		return true
	}
	return false
}

// probeScript prints the unit's state, then each given directory that is
// not empty. It reads only.
const probeScript = `systemctl show ` + unit + ` -p LoadState -p ActiveState -p UnitFileState
for d in "$@"; do
  if [ -d "$d" ] && [ -n "$(ls -A -- "$d" 2>/dev/null)" ]; then echo "nonempty=$d"; fi
done
exit 0`

func dataDirs(c *etcd.Cluster) []string {
	dirs := []string{c.DataDir}
	if c.WALDir != "" {
		dirs = append(dirs, c.WALDir)
	}
	return dirs
}

func probeHost(ctx context.Context, r modules.Remote, c *etcd.Cluster) (hostState, error) {
	out, err := command.Run(ctx, r, append([]string{"sh", "-c", probeScript, "sh"}, dataDirs(c)...)...)
	if err != nil {
		return hostState{}, err
	}
	return parseHostState(out), nil
}

func parseHostState(out string) hostState {
	var s hostState
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "LoadState":
			s.Loaded = v
		case "ActiveState":
			s.Active = v
		case "UnitFileState":
			s.Enabled = v
		case "nonempty":
			s.NonEmpty = append(s.NonEmpty, v)
		}
	}
	return s
}

// moveAsideScript renames each directory to DIR.SUFFIX, never deleting
// anything, and (with keep=1) leaves an empty DIR owned by etcd, 0700, for
// the new member. $1 is the suffix, $2 keep, the rest the directories.
const moveAsideScript = `set -e
suffix=$1; keep=$2; shift 2
for d in "$@"; do
  if [ -d "$d" ] && [ -n "$(ls -A -- "$d" 2>/dev/null)" ]; then
    if [ -e "$d.$suffix" ]; then echo "$d.$suffix already exists" >&2; exit 1; fi
    mv -- "$d" "$d.$suffix"
  fi
  if [ "$keep" = 1 ]; then
    mkdir -p -- "$d"; chown etcd:etcd -- "$d"; chmod 0700 -- "$d"
  fi
done`

func moveAside(ctx context.Context, r modules.Remote, suffix string, keep bool, dirs []string) error {
	k := "0"
	if keep {
		k = "1"
	}
	_, err := command.Run(ctx, r, append([]string{"sh", "-c", moveAsideScript, "sh", suffix, k}, dirs...)...)
	return err
}

// writeConfig writes the joiner's etcd.yaml through etcd_config's host
// side (atomic write, mode 0640 root:etcd).
func writeConfig(ctx context.Context, r modules.Remote, c *etcd.Cluster, tmplName, content string) error {
	res, err := r.Do(ctx, "etcd_config", modules.Args{
		"_content": content, "template": tmplName, "dest": c.Paths.ConfigFile,
		"mode": "0640", "owner": "root", "group": "etcd",
	}, false)
	if err != nil {
		return err
	}
	if res.Status == modules.StatusFailed {
		return fmt.Errorf("write %s: %s", c.Paths.ConfigFile, res.Msg)
	}
	return nil
}
