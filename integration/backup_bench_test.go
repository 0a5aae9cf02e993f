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

// BenchmarkBackupRestoreS3: the same ~100 MB keyspace backed up by
// backup.yml to the lab's S3 store (versitygw over https), age-encrypted
// on the way, and restored by restore.yml from the s3:// URL (download,
// decrypt, verify, then the restore itself). Prints MB/s both ways.
func BenchmarkBackupRestoreS3(b *testing.B) {
	s3 := startS3(b, true)
	url := harness.Mirror(b, bkVersion)
	l := lab.ForTest(b, lab.Options{Name: "bench-backup-s3", Block: 37, Hosts: 3})
	e := harness.New(b, l)
	e.Vars["etcd_release_url"] = url
	idFile, recipient := ageIdentity(b)
	e.Inventory = inventoryWithVars(b, e.Inventory, map[string]any{
		"etcd_backup_s3":             s3.vars("bench"),
		"etcd_backup_age_recipients": []any{recipient},
		"etcd_backup_age_identity":   idFile,
	})
	e.MustApply(b, harness.Playbook("site.yml"))
	const keys, pad = 10000, 10 << 10
	putKeys(b, e.Client(b), keys, "bench", pad)

	backup := e.MustApply(b, harness.Playbook("backup.yml"))
	objs := s3.objects(b)
	if len(objs) != 2 {
		b.Fatalf("objects: %v", objs)
	}
	st, err := os.Stat(s3.objectPath(objs[0]))
	if err != nil {
		b.Fatal(err)
	}
	mb := float64(st.Size()) / 1e6
	ev, _ := taskEvent(backup, "etcd_snapshot")
	fmt.Printf("BENCH backup.yml to S3, %.0f MB encrypted object of %d keys: %.3fs wall, snapshot+encrypt+upload task %.3fs => %.1f MB/s\n",
		mb, keys, backup.Elapsed.Seconds(), ev.Elapsed, mb/ev.Elapsed)

	ref := "s3://" + s3.Bucket + "/" + objs[0]
	// --check downloads, decrypts and verifies the object and plans the
	// restore: the fetch on its own.
	check := e.MustApply(b, harness.Playbook("restore.yml"), "--check", "-e", "snapshot="+ref)
	restore := e.MustApply(b, harness.Playbook("restore.yml"), "-e", "snapshot="+ref)
	rev, _ := taskEvent(restore, "etcd_restore")
	fmt.Printf("BENCH restore.yml from S3: plan (download %.0f MB, decrypt, verify) %.3fs => %.1f MB/s; whole restore %.3fs wall, task %.3fs (a snapshot of the running cluster first, then download, push, etcdutl restore, swap, start, verify)\n",
		mb, check.Elapsed.Seconds(), mb/check.Elapsed.Seconds(), restore.Elapsed.Seconds(), rev.Elapsed)
	checkKeys(b, e.Client(b), keys, "bench", pad)

	b.ReportMetric(mb/ev.Elapsed, "MB/s-upload")
	b.ReportMetric(mb/check.Elapsed.Seconds(), "MB/s-download")
	b.ReportMetric(restore.Elapsed.Seconds(), "s/restore")
}
