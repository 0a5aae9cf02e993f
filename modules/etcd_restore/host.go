package etcd_restore

import (
	"context"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/hostprobe"
)

// hostProbe is what one member's host told us.
type hostProbe struct {
	Active    string // systemd ActiveState of etcd.service
	Etcdutl   bool
	User      bool
	UpAvailKB int64 // free space where the snapshot is uploaded
}

func probe(ctx context.Context, h modules.Host, etcdutl, uploadDir string) (hostProbe, error) {
	f, err := hostprobe.Ask(ctx, h, hostprobe.Query{Units: []string{"etcd.service"}, Paths: []string{etcdutl},
		Users: []string{"etcd"}, Free: []string{uploadDir}})
	if err != nil {
		return hostProbe{}, err
	}
	return hostProbe{
		Active:    f.Units["etcd.service"].Active,
		Etcdutl:   f.Paths[etcdutl].Executable,
		User:      f.Users["etcd"],
		UpAvailKB: int64(f.Free[uploadDir] >> 10),
	}, nil
}
