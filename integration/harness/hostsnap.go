package harness

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	return Diff(before, e.SnapshotAll(t, dirs...))
}

// Diff lists what differs on any host between two HostSnapshots, sorted.
func Diff(before, now HostSnapshots) []string {
	var out []string
	for host, snap := range now {
		for _, d := range SnapshotDiff(before[host], snap) {
			out = append(out, host+": "+d)
		}
	}
	sort.Strings(out)
	return out
}

// CheckDirs are the dirs a --check must leave byte-for-byte as they were
// on hosts whose etcd runs: everything etcdplay writes except the data
// dir's contents, which etcd itself keeps writing.
var CheckDirs = []string{"/etc", "/usr/local", "/opt", "/var/tmp/etcdplay"}

// CheckSnapshot is, for every lab host, a snapshot of CheckDirs plus the
// names beside the data dir in /var/lib: a data dir moved aside or staged
// (a restore, a joiner's old data) shows up there.
func (e *Env) CheckSnapshot(t testing.TB) HostSnapshots {
	t.Helper()
	out := e.SnapshotAll(t, CheckDirs...)
	for host, snap := range out {
		root, err := e.Lab.HostRoot(host)
		if err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(filepath.Join(root, "var/lib"))
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range ents {
			// etcdplay's own agent lives here (as Ansible's remote tmp
			// does in ~/.ansible): every run needs it, a dry run too, and
			// it is not state of the host's etcd.
			if de.Name() == "etcdplay" {
				continue
			}
			snap["/var/lib/"+de.Name()+" (entry)"] = de.Type().String()
		}
	}
	return out
}

// Unchanged fails t, naming what ran, if any host differs from snap (a
// CheckSnapshot taken before it ran).
func (e *Env) Unchanged(t testing.TB, snap HostSnapshots, what string) {
	t.Helper()
	if d := Diff(snap, e.CheckSnapshot(t)); len(d) > 0 {
		t.Errorf("%s changed hosts:\n%s", what, strings.Join(d, "\n"))
	}
}
