package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/integration/harness"
)

// BenchmarkRollingDefrag: about 120 MB of values on 3 lab hosts, 100 MB of
// it deleted and compacted away, then maintenance.yml defragments every
// member (followers first, the leader last). Prints the time per member,
// the bytes reclaimed (from etcd's own status) and the wall time.
func BenchmarkRollingDefrag(b *testing.B) {
	e := labEnv(b, "bench-defrag", 68, bootVersion)
	e.MustApply(b, harness.Playbook("site.yml"))
	cli := e.Client(b)
	const keys, pad = 12000, 10 << 10 // ~120 MiB of values
	putKeys(b, cli, keys, "bench", pad)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	del, err := cli.Delete(ctx, "key/", clientv3.WithRange("key/010000"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		b.Fatal(err)
	}
	sizes := func() (total int64, per map[string]int64) {
		per = map[string]int64{}
		for _, h := range e.Lab.Hosts() {
			st, err := cli.Status(ctx, e.Endpoints(h.Name)[0])
			if err != nil {
				b.Fatal(err)
			}
			per[h.Name] = st.DbSize
			total += st.DbSize
		}
		return total, per
	}
	awaitCompacted(b, e, cli, 40<<20)
	before, perBefore := sizes()

	o := e.MustApply(b, harness.Playbook("maintenance.yml"), "-e", "etcd_defrag_free_above=1MiB")
	ev, _ := taskEvent(o, "etcd_defrag")
	after, perAfter := sizes()
	n := len(e.Lab.Hosts())
	fmt.Printf("BENCH rolling defrag of %d members (db %.0f MB each before, %.0f MB after; %d of %d keys deleted): "+
		"%.3fs wall, defrag task %.3fs (%.3fs per member, health and catch-up included), %.0f MB reclaimed\n",
		n, float64(perBefore[e.Lab.Hosts()[0].Name])/1e6, float64(perAfter[e.Lab.Hosts()[0].Name])/1e6, int(del.Deleted), keys,
		o.Elapsed.Seconds(), ev.Elapsed, ev.Elapsed/float64(n), float64(before-after)/1e6)
	b.ReportMetric(ev.Elapsed/float64(n), "s/member")
	b.ReportMetric(float64(before-after)/1e6, "MB-reclaimed")
}
