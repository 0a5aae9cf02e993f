package integration

import (
	"fmt"
	"os"
	"testing"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// BenchmarkBackupRestore: a ~100 MB keyspace on 3 lab hosts, backed up to
// the controller with backup.yml and restored onto the 3 hosts with
// restore.yml. Prints both wall times and the backup throughput.
func BenchmarkBackupRestore(b *testing.B) {
	url := harness.Mirror(b, bkVersion)
	l := lab.ForTest(b, lab.Options{Name: "bench-backup", Block: 33, Hosts: 3})
	e := harness.New(b, l)
	e.Vars["etcd_release_url"] = url
	e.MustApply(b, harness.Playbook("site.yml"))
	const keys, pad = 10000, 10 << 10 // 10,000 keys of ~10 KiB: ~100 MiB of values
	putKeys(b, e.Client(b), keys, "bench", pad)

	backup := e.MustApply(b, harness.Playbook("backup.yml"))
	files := backups(b, e)
	if len(files) != 1 {
		b.Fatalf("backups: %v", files)
	}
	st, err := os.Stat(files[0])
	if err != nil {
		b.Fatal(err)
	}
	mb := float64(st.Size()) / 1e6
	ev, _ := taskEvent(backup, "etcd_snapshot")
	fmt.Printf("BENCH backup.yml, %.0f MB snapshot of %d keys to the controller: %.3fs wall, snapshot task %.3fs => %.1f MB/s\n",
		mb, keys, backup.Elapsed.Seconds(), ev.Elapsed, mb/ev.Elapsed)

	restore := e.MustApply(b, harness.Playbook("restore.yml"), "-e", "snapshot="+files[0])
	rev, _ := taskEvent(restore, "etcd_restore")
	fmt.Printf("BENCH restore.yml of the %.0f MB snapshot onto 3 hosts: %.3fs wall, restore task %.3fs (push, etcdutl restore, stop, swap, start, healthy, verified)\n",
		mb, restore.Elapsed.Seconds(), rev.Elapsed)
	checkKeys(b, e.Client(b), keys, "bench", pad)

	b.ReportMetric(backup.Elapsed.Seconds(), "s/backup")
	b.ReportMetric(restore.Elapsed.Seconds(), "s/restore")
	b.ReportMetric(mb/ev.Elapsed, "MB/s-backup")
}
