// Package snapdb inspects an etcd snapshot file on the controller without
// an etcd server: its integrity hash (the sha256 etcd appends to every
// snapshot it streams), the structure of the bbolt database inside, and the
// revision and key count of the keyspace it holds. etcd_snapshot verifies
// every backup with it, and etcd_restore refuses a snapshot it rejects
// before any member is touched.
package snapdb

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// ErrCorrupt is wrapped by every error that says the file is damaged (as
// opposed to unreadable).
var ErrCorrupt = errors.New("snapshot is corrupt")

// ErrNoHash is wrapped when the file carries no integrity hash: a db copied
// out of a data dir rather than streamed by etcd. Only skip_hash_check
// accepts such a file.
var ErrNoHash = errors.New("snapshot has no integrity hash (a db file copied out of a data dir? use skip_hash_check)")

// Info is what Inspect found.
type Info struct {
	Path string `json:"path"`
	// Size is the file's size, hash included.
	Size int64 `json:"size"`
	// SHA256 is the hex sha256 of the whole file: what a copy on a host
	// must hash to.
	SHA256 string `json:"sha256"`
	// HasHash says the file ends with etcd's integrity hash, and HashOK
	// that it matched (false with HasHash when skip was asked for).
	HasHash bool `json:"has_hash"`
	HashOK  bool `json:"hash_ok"`
	// Revision is the newest revision in the keyspace; Keys the number of
	// keys alive at it.
	Revision int64 `json:"revision"`
	Keys     int   `json:"keys"`
	// StorageVersion is the etcd storage version recorded in the db
	// (empty before 3.6).
	StorageVersion string `json:"storage_version,omitempty"`
}

// Options change what Inspect accepts.
type Options struct {
	// SkipHashCheck accepts a file without an integrity hash, as
	// `etcdutl snapshot restore --skip-hash-check` does. A hash that is
	// present is still checked: a present but wrong hash is damage.
	SkipHashCheck bool
}

// HasHash reports whether a snapshot of size n carries etcd's appended
// sha256: bbolt files are whole pages, so exactly 32 bytes over a multiple
// of 512 means a hash is there (the test etcdutl itself uses).
func HasHash(n int64) bool { return n%512 == sha256.Size }

// Inspect verifies the snapshot at path and reads its revision and key
// count. It never modifies the file.
func Inspect(path string, opt Options) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	info := &Info{Path: path, Size: st.Size()}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("snapshot %s: not a regular file", path)
	}
	if info.Size < 2*4096 {
		return nil, fmt.Errorf("snapshot %s: %w: only %d bytes (truncated?)", path, ErrCorrupt, info.Size)
	}
	info.HasHash = HasHash(info.Size)
	dbSize := info.Size
	if info.HasHash {
		dbSize -= sha256.Size
	}

	// One pass hashes the whole file and, separately, the db part that
	// the appended hash covers.
	whole, db := sha256.New(), sha256.New()
	if _, err := io.Copy(io.MultiWriter(whole, db), io.LimitReader(f, dbSize)); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	tail := make([]byte, info.Size-dbSize)
	if _, err := io.ReadFull(f, tail); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	whole.Write(tail)
	info.SHA256 = hex.EncodeToString(whole.Sum(nil))
	switch {
	case info.HasHash:
		if !bytes.Equal(db.Sum(nil), tail) {
			return nil, fmt.Errorf("snapshot %s: %w: integrity hash mismatch (the file was damaged after etcd wrote it)", path, ErrCorrupt)
		}
		info.HashOK = true
	case !opt.SkipHashCheck:
		return nil, fmt.Errorf("snapshot %s: %w", path, ErrNoHash)
	}

	if err := checkMeta(f, dbSize); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w: %v", path, ErrCorrupt, err)
	}
	if err := readKeyspace(path, info); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	return info, nil
}

// bbolt's on-disk meta page: a 16-byte page header, then magic, version,
// page size, flags, root bucket (pgid, sequence), freelist pgid, high-water
// pgid, txid and an fnv64a checksum of the preceding 56 bytes.
const (
	pageHeaderSize = 16
	boltMagic      = 0xED0CDAED
	metaSumOffset  = 56
)

type meta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

// checkMeta reads both meta pages and checks that the newest valid one does
// not reference pages beyond the end of the file. bbolt maps the file and
// would fault on such a page; a truncated snapshot is the common case.
func checkMeta(f *os.File, dbSize int64) error {
	m0, err0 := readMeta(f, 0)
	if err0 != nil {
		return fmt.Errorf("meta page 0: %v", err0)
	}
	best := m0
	if m1, err1 := readMeta(f, int64(m0.pageSize)); err1 == nil && m1.txid > m0.txid {
		best = m1
	}
	need := int64(best.pgid) * int64(best.pageSize)
	if need > dbSize {
		return fmt.Errorf("the database needs %d bytes but the file has %d (truncated)", need, dbSize)
	}
	return nil
}

func readMeta(f *os.File, off int64) (meta, error) {
	buf := make([]byte, pageHeaderSize+64)
	if _, err := f.ReadAt(buf, off); err != nil {
		return meta{}, err
	}
	b := buf[pageHeaderSize:]
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != boltMagic {
		return meta{}, errors.New("not a bbolt database (bad magic)")
	}
	h := fnv.New64a()
	h.Write(b[:metaSumOffset])
	if h.Sum64() != le.Uint64(b[metaSumOffset:]) {
		return meta{}, errors.New("checksum mismatch")
	}
	m := meta{pageSize: le.Uint32(b[8:]), pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	if m.pageSize < 512 || m.pageSize&(m.pageSize-1) != 0 {
		return meta{}, fmt.Errorf("implausible page size %d", m.pageSize)
	}
	return m, nil
}

var (
	keyBucket  = []byte("key")
	metaBucket = []byte("meta")
	storageVer = []byte("storageVersion")
	compactRev = []byte("finishedCompactRev")
)

// revBytesLen is a revision key: 8-byte main, '_', 8-byte sub; a 't'
// follows for a tombstone (a delete).
const revBytesLen = 17

// readKeyspace walks the key bucket in revision order, as etcdutl's
// snapshot status does: the last revision is the store's revision, and a
// key is alive when its last event is not a tombstone.
func readKeyspace(path string, info *Info) (err error) {
	// A page bbolt cannot read is a fault on mapped memory: turn it into
	// an error rather than a crash of the whole run.
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading the database failed: %v", ErrCorrupt, r)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var problems []string
		for e := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, e.Error())
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("%w: database check: %v", ErrCorrupt, problems)
		}
		var compacted int64
		if mb := tx.Bucket(metaBucket); mb != nil {
			if v := mb.Get(storageVer); v != nil {
				info.StorageVersion = string(v)
			}
			if v := mb.Get(compactRev); len(v) >= 8 {
				compacted = int64(binary.BigEndian.Uint64(v[:8]))
			}
		}
		kb := tx.Bucket(keyBucket)
		if kb == nil {
			return fmt.Errorf("%w: no key bucket (not an etcd v3 database)", ErrCorrupt)
		}
		alive := map[string]bool{}
		err := kb.ForEach(func(k, v []byte) error {
			if len(k) < revBytesLen || k[8] != '_' {
				return fmt.Errorf("%w: bad revision key %x", ErrCorrupt, k)
			}
			info.Revision = int64(binary.BigEndian.Uint64(k[:8]))
			var kv mvccpb.KeyValue
			if err := kv.Unmarshal(v); err != nil {
				return fmt.Errorf("%w: value at revision %d: %v", ErrCorrupt, info.Revision, err)
			}
			switch {
			case len(kv.Key) == 0:
				// The revision marker `etcdutl snapshot restore
				// --bump-revision` leaves (an empty value at the bumped
				// revision): it moves the revision, and is no key; etcd
				// never stores an empty key.
			case len(k) > revBytesLen && k[revBytesLen] == 't':
				delete(alive, string(kv.Key))
			default:
				alive[string(kv.Key)] = true
			}
			return nil
		})
		info.Keys = len(alive)
		// As etcd's mvcc store computes it on start: a store begins at
		// revision 1, and compaction may have removed the newest keys'
		// history but never moves the revision back.
		info.Revision = max(info.Revision, compacted, 1)
		return err
	})
}
