package snapdb_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/snapdb"
)

// snapshot streams a real snapshot of an in-process cluster holding n keys
// (plus one deleted) to a file, and returns it with the cluster's own
// revision and key count.
func snapshot(t *testing.T, n int) (path string, rev int64, keys int64, tc *etcdtest.Cluster) {
	t.Helper()
	tc = etcdtest.Start(t, 1)
	ctx := context.Background()
	cli := tc.Client()
	for i := range n {
		if _, err := cli.Put(ctx, fmt.Sprintf("key/%04d", i), fmt.Sprintf("value %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "key/0000"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	path = filepath.Join(t.TempDir(), "snap.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path, resp.Header.Revision, resp.Count, tc
}

func TestInspect(t *testing.T) {
	path, rev, keys, _ := snapshot(t, 300)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	good, err := snapdb.Inspect(path, snapdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !good.HasHash || !good.HashOK || good.Revision != rev || int64(good.Keys) != keys || good.Size != int64(len(data)) || len(good.SHA256) != 64 {
		t.Errorf("inspect = %+v; cluster at revision %d with %d keys", good, rev, keys)
	}
	// The storage version is written by the server some time after its
	// start, so an early snapshot may lack it; when present it is 3.6's.
	if good.StorageVersion != "" && !strings.HasPrefix(good.StorageVersion, "3.6") {
		t.Errorf("storage version %q in a 3.6 snapshot", good.StorageVersion)
	}

	write := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0xff
	noHash := data[:len(data)-32] // what a db copied out of a data dir looks like

	for _, tt := range []struct {
		name    string
		b       []byte
		opt     snapdb.Options
		wantErr error // nil: accepted
	}{
		{"truncated", data[:len(data)/2], snapdb.Options{}, snapdb.ErrNoHash},
		{"truncated, hash check skipped", data[:len(data)/2], snapdb.Options{SkipHashCheck: true}, snapdb.ErrCorrupt},
		{"truncated to a page boundary plus 32", data[:4096*2+32], snapdb.Options{}, snapdb.ErrCorrupt},
		{"one byte flipped", flipped, snapdb.Options{}, snapdb.ErrCorrupt},
		{"one byte flipped, hash check skipped", flipped, snapdb.Options{SkipHashCheck: true}, snapdb.ErrCorrupt},
		{"no hash", noHash, snapdb.Options{}, snapdb.ErrNoHash},
		{"no hash, skipped", noHash, snapdb.Options{SkipHashCheck: true}, nil},
		{"empty", nil, snapdb.Options{SkipHashCheck: true}, snapdb.ErrCorrupt},
		{"not a database", make([]byte, 8192), snapdb.Options{SkipHashCheck: true}, snapdb.ErrCorrupt},
	} {
		t.Run(tt.name, func(t *testing.T) {
			info, err := snapdb.Inspect(write("s.db", tt.b), tt.opt)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if info.Revision != rev || int64(info.Keys) != keys || info.HasHash {
					t.Errorf("info %+v", info)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestDataDirCopy reads a db file taken from a stopped member's data dir,
// the --skip-hash-check case of the runbook.
func TestDataDirCopy(t *testing.T) {
	_, rev, keys, tc := snapshot(t, 50)
	tc.Stop(0)
	db := filepath.Join(tc.StateDir, "data", "etcd1", "member", "snap", "db")
	if _, err := snapdb.Inspect(db, snapdb.Options{}); !errors.Is(err, snapdb.ErrNoHash) {
		t.Fatalf("without skip: %v", err)
	}
	info, err := snapdb.Inspect(db, snapdb.Options{SkipHashCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != rev || int64(info.Keys) != keys {
		t.Errorf("data dir db: %+v, want revision %d keys %d", info, rev, keys)
	}
}

// TestRevisionWithoutKeys: an empty store is at revision 1, and a store
// whose every key was deleted and compacted away keeps its revision; the
// snapshot must say what the cluster said.
func TestRevisionWithoutKeys(t *testing.T) {
	tc := etcdtest.Start(t, 1)
	ctx := context.Background()
	cli := tc.Client()
	save := func() *snapdb.Info {
		rc, err := cli.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		p := filepath.Join(t.TempDir(), "s.db")
		f, _ := os.Create(p)
		io.Copy(f, rc)
		f.Close()
		info, err := snapdb.Inspect(p, snapdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	rev := func() int64 {
		r, err := cli.Get(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Revision
	}
	if info, want := save(), rev(); info.Revision != want || info.Keys != 0 {
		t.Errorf("empty: revision %d keys %d, cluster at %d", info.Revision, info.Keys, want)
	}
	for i := range 5 {
		cli.Put(ctx, fmt.Sprint(i), "v")
	}
	cli.Delete(ctx, "", clientv3.WithPrefix())
	want := rev()
	if _, err := cli.Compact(ctx, want, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if info := save(); info.Revision != want || info.Keys != 0 {
		t.Errorf("all deleted and compacted: revision %d keys %d, cluster at %d", info.Revision, info.Keys, want)
	}
}

// TestBumpedRevisionMarker: a snapshot of a cluster restored with
// `etcdutl snapshot restore --bump-revision` holds the marker etcdutl
// writes at the bumped revision (an empty value in the key bucket, as its
// unsafeBumpBucketsRevision does). It moves the revision and is no key:
// counting it made every later restore of such a cluster fail its check.
func TestBumpedRevisionMarker(t *testing.T) {
	path, rev, keys, _ := snapshot(t, 20)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The db without etcd's trailing hash, as a data dir holds it.
	db := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(db, b[:len(b)-32], 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(db, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	bumped := rev + 1_000_000_000
	err = bdb.Update(func(tx *bolt.Tx) error {
		k := make([]byte, 17)
		binary.BigEndian.PutUint64(k, uint64(bumped))
		k[8] = '_'
		return tx.Bucket([]byte("key")).Put(k, []byte{})
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	info, err := snapdb.Inspect(db, snapdb.Options{SkipHashCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != bumped || int64(info.Keys) != keys {
		t.Errorf("bumped snapshot: revision %d, %d keys; want %d and %d", info.Revision, info.Keys, bumped, keys)
	}
}
