package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// BenchmarkUpgrade measures upgrade.yml 3.6.16 -> 3.7.3 of a 3-member TLS
// cluster on lab hosts, with a client writing throughout: the time, and
// the longest time without a successful write (below the 1s election
// timeout, since each member's turn is a planned leader hand-over at most).
func BenchmarkUpgrade(b *testing.B) {
	l := lab.ForTest(b, lab.Options{Name: "bench-upgrade", Block: 52, Hosts: 3})
	e := harness.New(b, l)
	e.Vars["etcd_release_url"] = harness.Mirror(b, "v3.6.16", "v3.7.3")
	e.Vars["etcd_max_fsync_latency"] = "2s"
	e.Vars["etcd_version"] = "v3.6.16"
	e.MustApply(b, harness.Playbook("site.yml"))
	putKeys(b, e.Client(b), 10000, "bench", 0)
	w := harness.StartWriteLoop(e.Client(b), "/bench/upgrade", 20*time.Millisecond, 900*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	e.Vars["etcd_version"] = "v3.7.3"
	o := e.MustApply(b, harness.Playbook("upgrade.yml"))
	time.Sleep(300 * time.Millisecond)
	stats := w.Stop()
	fmt.Printf("BENCH upgrade.yml v3.6.16 -> v3.7.3, 3 members, 10000 keys, snapshot first: %.3fs; writer: %d ok, %d failed, longest write gap %s (election timeout 1s)\n",
		o.Elapsed.Seconds(), stats.OK, stats.Failed, stats.MaxGap.Round(time.Millisecond))
	noop := e.MustApply(b, harness.Playbook("upgrade.yml"))
	fmt.Printf("BENCH upgrade.yml again (no-op): %.3fs\n", noop.Elapsed.Seconds())
	b.ReportMetric(o.Elapsed.Seconds(), "s/upgrade")
	b.ReportMetric(stats.MaxGap.Seconds()*1000, "ms/maxgap")
}
