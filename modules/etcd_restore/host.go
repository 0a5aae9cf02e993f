package etcd_restore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/command"
)

// probeScript reports, one key=value a line, what the restore plan depends
// on. It only reads.
// The data and WAL dirs' layout (a mount point, what they hold, free
// space) comes from etcd_install.ProbeDirs.
const probeScript = `bin=$1 up=$2
echo "active=$(systemctl is-active etcd.service 2>/dev/null)"
if [ -x "$bin" ]; then echo etcdutl=yes; else echo etcdutl=no; fi
if id -u etcd >/dev/null 2>&1; then echo user=yes; else echo user=no; fi
p=$up; while [ ! -d "$p" ]; do p=$(dirname "$p"); done
echo "upavail=$(df -Pk "$p" | awk 'NR==2 {print $4}')"
exit 0`

// hostProbe is what one member's host told us.
type hostProbe struct {
	Active    string // systemd ActiveState of etcd.service
	Etcdutl   bool
	User      bool
	UpAvailKB int64 // free space where the snapshot is uploaded
}

func parseProbe(out string) (hostProbe, error) {
	var p hostProbe
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		seen[k] = true
		switch k {
		case "active":
			p.Active = v
		case "etcdutl":
			p.Etcdutl = v == "yes"
		case "user":
			p.User = v == "yes"
		case "upavail":
			p.UpAvailKB, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	for _, k := range []string{"active", "etcdutl", "user"} {
		if !seen[k] {
			return p, fmt.Errorf("probe output lacks %s: %q", k, out)
		}
	}
	return p, nil
}

func probe(ctx context.Context, r modules.Remote, etcdutl, uploadDir string) (hostProbe, error) {
	out, err := command.Run(ctx, r, "sh", "-c", probeScript, "sh", etcdutl, uploadDir)
	if err != nil {
		return hostProbe{}, err
	}
	return parseProbe(out)
}
