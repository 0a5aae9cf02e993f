// Package all links every module into etcdplay: importing it runs each
// module's init, which registers it. The host-side modules come through
// modules/hostside, which the lean agent (cmd/etcdplay-agent) is built
// from; the controller-side ones, and the host-side modules only the full
// binary can serve, are added here.
package all

import (
	_ "github.com/etcdplay/etcdplay/modules/hostside"

	// Controller-side etcd modules.
	_ "github.com/etcdplay/etcdplay/modules/etcd_binary"
	_ "github.com/etcdplay/etcdplay/modules/etcd_health"
	_ "github.com/etcdplay/etcdplay/modules/etcd_pki"
	_ "github.com/etcdplay/etcdplay/modules/etcd_proxy"
	_ "github.com/etcdplay/etcdplay/modules/etcd_restart"

	// Runbook modules: membership, backup and restore, upgrade, maintenance.
	_ "github.com/etcdplay/etcdplay/modules/etcd_backup_timer"
	_ "github.com/etcdplay/etcdplay/modules/etcd_maintenance"
	_ "github.com/etcdplay/etcdplay/modules/etcd_member"
	_ "github.com/etcdplay/etcdplay/modules/etcd_restore"
	_ "github.com/etcdplay/etcdplay/modules/etcd_snapshot"
	_ "github.com/etcdplay/etcdplay/modules/etcd_tls"
	_ "github.com/etcdplay/etcdplay/modules/etcd_upgrade"
	_ "github.com/etcdplay/etcdplay/modules/etcd_verify_backup"
)
