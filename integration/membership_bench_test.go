package integration

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkReplaceNode measures replace-node.yml end to end on lab hosts
// with the release tarball cached on the controller (target < 15 s): a
// dead member replaced by a new host at a new address, then a wiped host
// replaced in place.
func BenchmarkReplaceNode(b *testing.B) {
	m := newMLab(b, "bench-replace", 26, 3)
	all, spare, moved, _ := m.etcd3DiedAndMoved()
	dead := m.mustApply(moved, "replace-node.yml", "-e", "node=etcd3")
	fmt.Printf("BENCH replace-node.yml, dead member -> new host at a new address, 3 members: %.3fs (target < 15s)\n", dead.Elapsed.Seconds())

	if err := m.Lab.Wipe(context.Background(), "etcd1"); err != nil {
		b.Fatal(err)
	}
	wiped := m.mustApply(moved, "replace-node.yml", "-e", "node=etcd1")
	fmt.Printf("BENCH replace-node.yml, wiped host replaced in place, 3 members: %.3fs (target < 15s)\n", wiped.Elapsed.Seconds())

	noop := m.mustApply(moved, "replace-node.yml", "-e", "node=etcd1")
	if c := noop.Changed(); c != 0 {
		b.Fatalf("replace-node again changed %d", c)
	}
	fmt.Printf("BENCH replace-node.yml again (no-op): %.3fs\n", noop.Elapsed.Seconds())
	m.mustRead(map[string]string{"k": "v"}, all[1].Addr, spare.Addr, all[0].Addr)
	b.ReportMetric(dead.Elapsed.Seconds(), "s/dead")
	b.ReportMetric(wiped.Elapsed.Seconds(), "s/wiped")
}
