package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// BenchmarkSiteOverSlowLink applies site.yml to 3 lab hosts behind a
// 50 ms round trip (harness.SlowLink: a bastion, another region), cold
// and then warm. It shows what the loopback lab hides: the round trips on
// each host's path, and transfers that do not keep the link full (a cold
// run took 48.6 s while SFTP sent one write per round trip).
func BenchmarkSiteOverSlowLink(b *testing.B) {
	const rtt = 50 * time.Millisecond
	url := harness.Mirror(b, "v3.6.16")
	l := lab.ForTest(b, lab.Options{Name: "bench-slowlink", Block: 73, Hosts: 3})
	e := harness.New(b, l)
	e.Vars["etcd_release_url"] = url
	e.SlowLink(b, rtt)
	pb := harness.Playbook("site.yml")
	cold := e.MustApply(b, pb)
	printColdBreakdown(cold)
	warm := medianWarm(b, e, pb)
	fmt.Printf("BENCH site.yml over a %s round trip, 3 hosts: cold %.2fs (%.0f round trips' time), warm no-op %.2fs (%.0f; median of 3)\n",
		rtt, cold.Elapsed.Seconds(), cold.Elapsed.Seconds()/rtt.Seconds(), warm.Elapsed.Seconds(), warm.Elapsed.Seconds()/rtt.Seconds())
	b.ReportMetric(cold.Elapsed.Seconds(), "s/cold")
	b.ReportMetric(warm.Elapsed.Seconds(), "s/warm")
}
