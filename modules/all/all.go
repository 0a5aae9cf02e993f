// Package all links every module into the binary: importing it runs each
// module's init, which registers it. The controller and the agent both
// import it, so they agree on the module set.
package all

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

	// etcd modules.
	_ "github.com/etcdplay/etcdplay/modules/etcd_binary"
	_ "github.com/etcdplay/etcdplay/modules/etcd_config"
	_ "github.com/etcdplay/etcdplay/modules/etcd_health"
	_ "github.com/etcdplay/etcdplay/modules/etcd_install"
	_ "github.com/etcdplay/etcdplay/modules/etcd_pki"
	_ "github.com/etcdplay/etcdplay/modules/etcd_proxy"
	_ "github.com/etcdplay/etcdplay/modules/etcd_restart"
	_ "github.com/etcdplay/etcdplay/modules/etcd_service"
	_ "github.com/etcdplay/etcdplay/modules/etcd_tune"

	// Runbook modules: membership, backup and restore, upgrade, maintenance.
	_ "github.com/etcdplay/etcdplay/modules/etcd_backup_timer"
	_ "github.com/etcdplay/etcdplay/modules/etcd_defrag_timer"
	_ "github.com/etcdplay/etcdplay/modules/etcd_maintenance"
	_ "github.com/etcdplay/etcdplay/modules/etcd_member"
	_ "github.com/etcdplay/etcdplay/modules/etcd_restore"
	_ "github.com/etcdplay/etcdplay/modules/etcd_snapshot"
	_ "github.com/etcdplay/etcdplay/modules/etcd_tls"
	_ "github.com/etcdplay/etcdplay/modules/etcd_upgrade"
	_ "github.com/etcdplay/etcdplay/modules/etcd_verify_backup"
)
