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
const probeScript = `d=$1 w=$2 bin=$3 up=$4
if [ -d "$d" ]; then echo data=yes; else echo data=no; fi
if [ -n "$w" ]; then if [ -d "$w" ]; then echo wal=yes; else echo wal=no; fi; fi
echo "active=$(systemctl is-active etcd.service 2>/dev/null)"
if [ -x "$bin" ]; then echo etcdutl=yes; else echo etcdutl=no; fi
if id -u etcd >/dev/null 2>&1; then echo user=yes; else echo user=no; fi
p=$(dirname "$d"); while [ ! -d "$p" ]; do p=$(dirname "$p"); done
echo "avail=$(df -Pk "$p" | awk 'NR==2 {print $4}')"
p=$up; while [ ! -d "$p" ]; do p=$(dirname "$p"); done
echo "upavail=$(df -Pk "$p" | awk 'NR==2 {print $4}')"
exit 0`

// hostProbe is what one member's host told us.
type hostProbe struct {
	DataExists bool
	WALExists  bool
	Active     string // systemd ActiveState of etcd.service
	Etcdutl    bool
	User       bool
	AvailKB    int64 // free space where the data dir lives
	UpAvailKB  int64 // free space where the snapshot is uploaded
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
		case "data":
			p.DataExists = v == "yes"
		case "wal":
			p.WALExists = v == "yes"
		case "active":
			p.Active = v
		case "etcdutl":
			p.Etcdutl = v == "yes"
		case "user":
			p.User = v == "yes"
		case "avail":
			p.AvailKB, _ = strconv.ParseInt(v, 10, 64)
		case "upavail":
			p.UpAvailKB, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	for _, k := range []string{"data", "active", "etcdutl", "user", "avail"} {
		if !seen[k] {
			return p, fmt.Errorf("probe output lacks %s: %q", k, out)
		}
	}
	return p, nil
}

func probe(ctx context.Context, r modules.Remote, dataDir, walDir, etcdutl, uploadDir string) (hostProbe, error) {
	out, err := command.Run(ctx, r, "sh", "-c", probeScript, "sh", dataDir, walDir, etcdutl, uploadDir)
	if err != nil {
		return hostProbe{}, err
	}
	return parseProbe(out)
}
