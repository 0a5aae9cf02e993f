package etcd_snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/snapdb"
)

// Backup is one verified snapshot on the controller.
type Backup struct {
	snapdb.Info
	Member string
	Took   time.Duration
}

// Save streams a snapshot of member m into dir, verifies it and gives it
// its final name <UTC time>-<member>-rev<revision>.db. The file only ever
// appears under that name complete, synced and verified; a failed or
// interrupted transfer leaves nothing behind.
func Save(ctx context.Context, c *etcd.Cluster, m etcd.Member, stateDir string, dial etcd.DialFunc, dir string) (*Backup, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	start := time.Now()
	stamp := start.UTC().Format(TimeLayout)
	f, err := os.CreateTemp(dir, ".partial-"+stamp+"-"+m.Name+"-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := stream(ctx, c, m, stateDir, dial, f); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	info, err := snapdb.Inspect(tmp, snapdb.Options{})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	final := filepath.Join(dir, fmt.Sprintf("%s-%s-rev%d.db", stamp, m.Name, info.Revision))
	// A hard link does not replace an existing file, unlike rename: two
	// backups in the same second never overwrite each other.
	if err := os.Link(tmp, final); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("name the snapshot: %w", err)
		}
		// A snapshot of the same member at the same revision in the same
		// second (two runs back to back) holds the same keyspace, though
		// not the same bytes (raft metadata moves on): the newer one
		// replaces it. Anything else under that name is not ours to touch.
		prev, perr := snapdb.Inspect(final, snapdb.Options{})
		if perr != nil || prev.Revision != info.Revision || prev.Keys != info.Keys {
			return nil, fmt.Errorf("name the snapshot: %s already exists and is not the same keyspace; run again", final)
		}
		if err := os.Rename(tmp, final); err != nil {
			return nil, fmt.Errorf("name the snapshot: %w", err)
		}
	}
	syncDir(dir)
	info.Path = final
	return &Backup{Info: *info, Member: m.Name, Took: time.Since(start)}, nil
}

// stream copies the member's snapshot stream (the db, then etcd's sha256
// of it) into w.
func stream(ctx context.Context, c *etcd.Cluster, m etcd.Member, stateDir string, dial etcd.DialFunc, w io.Writer) error {
	cli, err := etcd.NewMemberClient(ctx, c, m, stateDir, dial)
	if err != nil {
		return err
	}
	defer cli.Close()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("snapshot request: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("snapshot stream: %w", err)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// nameRE matches the names Save gives, and only those: retention never
// touches a file it did not make.
var nameRE = regexp.MustCompile(`^\d{8}T\d{6}Z-[A-Za-z0-9][A-Za-z0-9._-]*-rev\d+\.db$`)

// listBackups returns the backups in dir, oldest first. A missing dir has
// none.
func listBackups(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && nameRE.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	// By time, then revision: two backups in one second (a test, a
	// retry) still sort in the order they were taken.
	sort.Slice(out, func(i, k int) bool {
		ti, tk := out[i][:len(TimeLayout)], out[k][:len(TimeLayout)]
		if ti != tk {
			return ti < tk
		}
		return revOf(out[i]) < revOf(out[k])
	})
	return out, nil
}

func revOf(name string) int64 {
	m := revRE.FindStringSubmatch(name)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

var revRE = regexp.MustCompile(`-rev(\d+)\.db$`)

// prunable returns the names beyond the newest keep, oldest first.
func prunable(names []string, keep int) []string {
	if keep < 0 {
		keep = 0
	}
	if len(names) <= keep {
		return nil
	}
	return names[:len(names)-keep]
}

// Prune removes all but the newest keep backups in dir and returns the
// paths it removed.
func Prune(dir string, keep int) ([]string, error) {
	names, err := listBackups(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, n := range prunable(names, keep) {
		p := filepath.Join(dir, n)
		if err := os.Remove(p); err != nil {
			return removed, err
		}
		removed = append(removed, p)
	}
	if len(removed) > 0 {
		syncDir(dir)
	}
	return removed, nil
}

// Latest returns the newest backup in dir, or "" when there is none.
func Latest(dir string) (string, error) {
	names, err := listBackups(dir)
	if err != nil || len(names) == 0 {
		return "", err
	}
	return filepath.Join(dir, names[len(names)-1]), nil
}
