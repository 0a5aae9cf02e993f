package playbook

import (
	"os"
	"testing"

	"github.com/etcdplay/etcdplay/internal/inventory"
)

// BenchmarkLoad compiles the playbook in $ETCDPLAY_BENCH_PLAYBOOK against
// $ETCDPLAY_BENCH_INVENTORY (make bench's BenchmarkValidate times the
// whole CLI; this is for profiling the compiler alone).
func BenchmarkLoad(b *testing.B) {
	pb, invPath := os.Getenv("ETCDPLAY_BENCH_PLAYBOOK"), os.Getenv("ETCDPLAY_BENCH_INVENTORY")
	if pb == "" || invPath == "" {
		b.Skip("set ETCDPLAY_BENCH_PLAYBOOK and ETCDPLAY_BENCH_INVENTORY")
	}
	inv, err := inventory.Load(invPath)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(pb, inv, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
