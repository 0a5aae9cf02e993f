package harness

import (
	"sort"
	"testing"
)

// EtcdDirs are where the etcd modules write on a host: config, unit and
// PKI under /etc, the data dir, the releases under /opt, the links under
// /usr/local and the upload dir for tarballs.
var EtcdDirs = []string{"/etc", "/var/lib/etcd", "/usr/local", "/opt", "/var/tmp/etcdplay"}

// HostSnapshots are Snapshots of every lab host, by host name.
type HostSnapshots map[string]map[string]string

// SnapshotAll snapshots dirs (EtcdDirs when none) on every lab host.
func (e *Env) SnapshotAll(t testing.TB, dirs ...string) HostSnapshots {
	t.Helper()
	if len(dirs) == 0 {
		dirs = EtcdDirs
	}
	out := HostSnapshots{}
	for _, h := range e.Lab.Hosts() {
		out[h.Name] = e.Snapshot(t, h.Name, dirs...)
	}
	return out
}

// ChangedSince lists what differs on any host between before and now
// ("etcd2: ~ /etc/etcd/etcd.yaml: ..."), sorted; empty means every host is
// byte-for-byte as it was.
func (e *Env) ChangedSince(t testing.TB, before HostSnapshots, dirs ...string) []string {
	t.Helper()
	now := e.SnapshotAll(t, dirs...)
	var out []string
	for host, snap := range now {
		for _, d := range SnapshotDiff(before[host], snap) {
			out = append(out, host+": "+d)
		}
	}
	sort.Strings(out)
	return out
}
