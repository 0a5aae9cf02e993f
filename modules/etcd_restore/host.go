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

// probe asks about the member's host, and which of the paths this restore
// would create (the empty ones are skipped) exists already.
func probe(ctx context.Context, h modules.Host, etcdutl, uploadDir string, named []string) (hostProbe, string, error) {
	paths := []string{etcdutl}
	for _, p := range named {
		if p != "" {
			paths = append(paths, p)
		}
	}
	f, err := hostprobe.Ask(ctx, h, hostprobe.Query{Units: []string{"etcd.service"}, Paths: paths,
		Users: []string{"etcd"}, Free: []string{uploadDir}})
	if err != nil {
		return hostProbe{}, "", err
	}
	taken := ""
	for _, p := range paths[1:] {
		if f.Paths[p].Exists {
			taken = p
			break
		}
	}
	return hostProbe{
		Active:    f.Units["etcd.service"].Active,
		Etcdutl:   f.Paths[etcdutl].Executable,
		User:      f.Users["etcd"],
		UpAvailKB: int64(f.Free[uploadDir] >> 10),
	}, taken, nil
}
