package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Retention in a directory removes only its own origin's backups (a
// snapshot and its metadata together), by the metadata's time, and never
// a file it did not make, nor one it is told to spare (the snapshot a
// restore is pushing).
func TestDirPruneOnlyOwnBackups(t *testing.T) {
	ctx := context.Background()
	d := Dir(t.TempDir())
	day := func(n int) time.Time { return time.Date(2026, 1, n, 12, 0, 0, 0, time.UTC) }
	put := func(m Meta) {
		t.Helper()
		if err := d.Put(ctx, m, strings.NewReader("snapshot "+m.Base()), 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 5; i++ {
		put(Meta{Member: "etcd1", Revision: int64(i), Time: day(i), Origin: "controller", Verified: true})
	}
	// A timer's backup in the same dir belongs to the timer.
	put(Meta{Member: "etcd2", Revision: 1, Time: day(1), Origin: "host:etcd2", Verified: true})
	foreign := []string{"20260101T000000Z-etcd3-rev100.db", "my-precious.db", ".partial-20260103T000000Z-etcd1-123"}
	for _, n := range foreign {
		if err := os.WriteFile(filepath.Join(string(d), n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Named as an operator might: relative to the working directory.
	spared, err := filepath.Rel(must(os.Getwd()), filepath.Join(string(d), "20260102T120000Z-etcd1-rev2.db"))
	if err != nil {
		t.Fatal(err)
	}
	removed, err := Prune(ctx, d, "controller", Policy{Last: 2}, "s3://bucket/20260103T120000Z-etcd1-rev3.db", spared)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(removed), ","); got != "20260103T120000Z-etcd1-rev3.db,20260101T120000Z-etcd1-rev1.db" {
		t.Errorf("removed %s", got)
	}
	left, _ := os.ReadDir(string(d))
	var got []string
	for _, e := range left {
		got = append(got, e.Name())
	}
	want := []string{".partial-20260103T000000Z-etcd1-123", "20260101T000000Z-etcd3-rev100.db",
		"20260101T120000Z-etcd2-rev1.db", "20260101T120000Z-etcd2-rev1.json",
		"20260102T120000Z-etcd1-rev2.db", "20260102T120000Z-etcd1-rev2.json",
		"20260104T120000Z-etcd1-rev4.db", "20260104T120000Z-etcd1-rev4.json",
		"20260105T120000Z-etcd1-rev5.db", "20260105T120000Z-etcd1-rev5.json", "my-precious.db"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("left\n%v\nwant\n%v", got, want)
	}
	es, _ := d.List(ctx)
	if len(es) != 5 || es[0].HasMeta || es[4].Meta.Revision != 5 {
		t.Errorf("list: %+v", es)
	}
	if st, _ := os.Stat(filepath.Join(string(d), "20260105T120000Z-etcd1-rev5.db")); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v: a snapshot holds every secret in the cluster", st.Mode())
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
