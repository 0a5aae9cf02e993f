// Package hostside links in every module and probe the lean agent serves:
// what runs inside the agent on a host, and nothing that needs etcd's
// client, gRPC, S3 or age. cmd/etcdplay-agent is built from it (a fifth
// of etcdplay's size, so a cold host gets 3 MB, not 11); modules/all
// links it into etcdplay itself.
//
// A host-side module that cannot be lean (etcd_backup_timer installs
// etcdplay itself as its job's program) is marked
// modules.FullAgentOnly and stays out of this list: the runner sends the
// full binary to the hosts that run it. TestLeanAgentServesHostSide, in
// modules/all, keeps the two lists in step.
package hostside

import (
	// Generic modules.
	_ "github.com/etcdplay/etcdplay/modules/command"
	_ "github.com/etcdplay/etcdplay/modules/copy"
	_ "github.com/etcdplay/etcdplay/modules/file"
	_ "github.com/etcdplay/etcdplay/modules/systemd"
	_ "github.com/etcdplay/etcdplay/modules/template"
	_ "github.com/etcdplay/etcdplay/modules/user"

	// Read-only host probes (for controller-side modules' Plan).
	_ "github.com/etcdplay/etcdplay/modules/hostprobe"

	// etcd's host side: release, files, data dir, service, config,
	// tuning probes, the defrag timer.
	_ "github.com/etcdplay/etcdplay/modules/etcd_config"
	_ "github.com/etcdplay/etcdplay/modules/etcd_defrag_timer"
	_ "github.com/etcdplay/etcdplay/modules/etcd_install"
	_ "github.com/etcdplay/etcdplay/modules/etcd_service"
	_ "github.com/etcdplay/etcdplay/modules/etcd_tune"
)
