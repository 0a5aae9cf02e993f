package etcd_backup_timer

import (
	"context"
	"fmt"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

// ListProbe is the read-only probe that lists a member's local backups
// (etcdplay backups): the snapshots in etcd_backup_dir with their
// metadata.
const ListProbe = "etcd_backup_list"

func init() { modules.RegisterProbe(ListProbe, lister{}) }

type lister struct{}

func (lister) Probe(ctx context.Context, args modules.Args) (any, error) {
	dir := args.Str("dir", DefaultDir)
	es, err := store.Dir(dir).List(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if es == nil {
		es = []store.Entry{}
	}
	return es, nil
}

// List asks a member for its local backups in dir.
func List(ctx context.Context, h modules.Host, dir string) ([]store.Entry, error) {
	var es []store.Entry
	err := h.Probe(ctx, ListProbe, modules.Args{"dir": dir}, &es)
	return es, err
}
