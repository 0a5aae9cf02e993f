package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/etcdplay/etcdplay/internal/hostfile"
)

// Location is one place backups are kept.
type Location interface {
	// String names the location for operators: a directory path, or
	// s3://bucket/prefix.
	String() string
	// List returns the backups, oldest first, with their metadata.
	List(ctx context.Context) ([]Entry, error)
	// Open reads a snapshot as stored (ciphertext when encrypted).
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Put stores a snapshot as given (already encrypted when meta says so)
	// and then its metadata: a listing never shows metadata without its
	// snapshot.
	Put(ctx context.Context, meta Meta, src io.Reader, size int64) error
	// Remove deletes a snapshot and its metadata.
	Remove(ctx context.Context, e Entry) error
}

// Dir is a directory of backups on this machine (the controller's state
// dir, or a member's etcd_backup_dir when the agent runs the timer).
type Dir string

func (d Dir) String() string { return string(d) }

// List reads the directory; a missing one holds no backups.
func (d Dir) List(ctx context.Context) ([]Entry, error) {
	ents, err := os.ReadDir(string(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range ents {
		p, ok := parseName(de.Name())
		if !ok || !de.Type().IsRegular() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		e := Entry{Name: de.Name(), Size: info.Size(), Location: d.String()}
		e.Meta, e.HasMeta = readMeta(filepath.Join(string(d), p.Base+".json"), p)
		out = append(out, e)
	}
	sortOldestFirst(out)
	return out, nil
}

// readMeta reads the metadata file beside a snapshot, or makes what the
// name says when it is missing or unreadable.
func readMeta(path string, p parsed) (Meta, bool) {
	if b, err := os.ReadFile(path); err == nil {
		if m, err := ParseMeta(b); err == nil {
			return m, true
		}
	}
	return fromName(p), false
}

func fromName(p parsed) Meta {
	var rev int64
	if i := strings.LastIndex(p.Base, "-rev"); i >= 0 {
		fmt.Sscanf(p.Base[i+4:], "%d", &rev)
	}
	return Meta{Member: p.Member, Time: p.Time, Revision: rev, Encrypted: p.Encrypted}
}

func sortOldestFirst(es []Entry) {
	sort.SliceStable(es, func(i, k int) bool {
		ti, tk := es[i].Time(), es[k].Time()
		if !ti.Equal(tk) {
			return ti.Before(tk)
		}
		return es[i].Meta.Revision < es[k].Meta.Revision
	})
}

// Open opens a snapshot in the directory.
func (d Dir) Open(_ context.Context, name string) (io.ReadCloser, error) {
	if _, ok := parseName(name); !ok {
		return nil, fmt.Errorf("%s is not a backup name", name)
	}
	return os.Open(filepath.Join(string(d), name))
}

// Put writes the snapshot and then its metadata, each complete and synced
// before it appears under its name.
func (d Dir) Put(_ context.Context, meta Meta, src io.Reader, _ int64) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	if err := WriteFile(filepath.Join(string(d), meta.SnapshotName()), src); err != nil {
		return err
	}
	return d.PutMeta(meta)
}

// PutMeta writes the metadata file of a snapshot already in the directory.
func (d Dir) PutMeta(meta Meta) error {
	return WriteFile(filepath.Join(string(d), meta.MetaName()), strings.NewReader(string(meta.Marshal())))
}

// Remove deletes the snapshot, then its metadata.
func (d Dir) Remove(_ context.Context, e Entry) error {
	p, ok := parseName(e.Name)
	if !ok {
		return fmt.Errorf("%s is not a backup name", e.Name)
	}
	if err := os.Remove(filepath.Join(string(d), e.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(filepath.Join(string(d), p.Base+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// WriteFile writes path atomically (hostfile.WriteAtomicFrom), mode
// 0600: backups and their metadata are for their owner only.
func WriteFile(path string, src io.Reader) error {
	return hostfile.WriteAtomicFrom(path, src, 0o600, -1, -1)
}

// SyncDir makes a rename in dir durable; a failure only loses durability
// of a name, which the next run repairs.
func SyncDir(dir string) { _ = hostfile.SyncDir(dir) }

// Prune applies the policy to the backups of one origin in a location and
// returns what it removed. Backups of other origins, and files that are
// not backups, are never touched, nor are those named in spare (as
// Entry.URL gives them): they outlive this pruning.
func Prune(ctx context.Context, loc Location, origin string, p Policy, spare ...string) ([]Entry, error) {
	all, err := loc.List(ctx)
	if err != nil {
		return nil, err
	}
	_, drop := p.Select(OfOrigin(all, origin))
	var removed []Entry
	for _, e := range drop {
		if slices.ContainsFunc(spare, func(n string) bool { return sameBackup(n, e.URL()) }) {
			continue
		}
		if err := loc.Remove(ctx, e); err != nil {
			return removed, fmt.Errorf("retention in %s: remove %s: %w", loc, e.Name, err)
		}
		removed = append(removed, e)
	}
	return removed, nil
}

// sameBackup says whether two names (paths, relative or not, or URLs)
// name the same backup.
func sameBackup(a, b string) bool {
	if a == b {
		return true
	}
	if strings.Contains(a, "://") || strings.Contains(b, "://") {
		return false
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	return errA == nil && errB == nil && absA == absB
}

// OfOrigin keeps the entries one origin took. Entries without metadata
// belong to nobody's retention.
func OfOrigin(es []Entry, origin string) []Entry {
	var out []Entry
	for _, e := range es {
		if e.HasMeta && e.Meta.Origin == origin {
			out = append(out, e)
		}
	}
	return out
}
