package integration

import (
	"testing"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// labEnv boots a 3-host lab and a controller for it, with the mirror
// serving versions (the first is etcd_version). The fsync preflight allows
// 2s: the lab's disk is shared by every test running at once, so it
// measures the machine, not etcdplay.
func labEnv(t testing.TB, name string, block int, versions ...string) *harness.Env {
	t.Helper()
	l := lab.ForTest(t, lab.Options{Name: name, Block: block, Hosts: 3})
	e := harness.New(t, l)
	e.Vars["etcd_release_url"] = harness.Mirror(t, versions...)
	e.Vars["etcd_max_fsync_latency"] = "2s"
	e.Vars["etcd_version"] = versions[0]
	return e
}
