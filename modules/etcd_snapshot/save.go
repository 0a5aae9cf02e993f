package etcd_snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/snapdb"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

// Backup is one verified snapshot on the controller.
type Backup struct {
	snapdb.Info
	Member string
	Meta   store.Meta
	Took   time.Duration
}

// Save streams a snapshot of member m into dir, verifies it, gives it its
// final name <UTC time>-<member>-rev<revision>.db and writes its metadata
// beside it. The file only ever appears under that name complete, synced
// and verified; a failed or interrupted transfer leaves nothing behind.
func Save(ctx context.Context, c *etcd.Cluster, m etcd.Member, stateDir string, dial etcdclient.DialFunc, dir string) (*Backup, error) {
	cli, err := etcdclient.NewMemberClient(ctx, c, m, stateDir, dial)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	return SaveFrom(ctx, cli, Source{Cluster: c.Name, Member: m.Name, Endpoint: m.ClientURL, Origin: OriginController}, dir)
}

// Source says whose snapshot SaveFrom takes and who takes it.
type Source struct {
	Cluster, Member string
	// Endpoint is the member's client URL; the client must reach it.
	Endpoint string
	// Origin goes into the metadata (OriginController, or HostOrigin).
	Origin string
}

// HostOrigin is the origin of a member's timer's backups.
func HostOrigin(host string) string { return "host:" + host }

// SaveFrom is Save with a client already connected to the member: the
// controller's (with etcdplay's client certificate) or a member timer's
// (with the member's own).
func SaveFrom(ctx context.Context, cli *clientv3.Client, src Source, dir string) (*Backup, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	start := time.Now()
	stamp := start.UTC().Format(store.TimeLayout)
	f, err := os.CreateTemp(dir, ".partial-"+stamp+"-"+src.Member+"-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	st, err := stream(ctx, cli, src.Endpoint, f)
	if err != nil {
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
	meta := store.Meta{
		Cluster: src.Cluster, Member: src.Member,
		Revision: info.Revision, Keys: info.Keys,
		SHA256: info.SHA256, Size: info.Size,
		// The name's second is the time: metadata and name agree.
		Time:     start.UTC().Truncate(time.Second),
		Origin:   src.Origin,
		Verified: true,
	}
	if st != nil {
		meta.ClusterID = fmt.Sprintf("%x", st.Header.ClusterId)
		meta.EtcdVersion = st.Version
	}
	final := filepath.Join(dir, meta.SnapshotName())
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
	store.SyncDir(dir)
	if err := store.Dir(dir).PutMeta(meta); err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", final, err)
	}
	info.Path = final
	return &Backup{Info: *info, Member: src.Member, Meta: meta, Took: time.Since(start)}, nil
}

// OriginController marks the backups the controller takes (backup.yml and
// the snapshots before disruptive steps); retention on the controller and
// in the store applies to these only.
const OriginController = "controller"

// stream copies the member's snapshot stream (the db, then etcd's sha256
// of it) into w, and says the member's status (cluster ID, version) as
// it was when the snapshot began.
func stream(ctx context.Context, cli *clientv3.Client, endpoint string, w io.Writer) (*clientv3.StatusResponse, error) {
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot request: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return nil, fmt.Errorf("snapshot stream: %w", err)
	}
	return st, nil
}
