// Package etcd_backup_timer installs scheduled snapshots on a member: a
// systemd timer (etcd_backup_schedule, an OnCalendar expression) that runs
// a oneshot service, `etcdplay backup-host`, which snapshots the member
// over TLS with its own certificate into etcd_backup_dir, verifies it,
// writes its metadata, uploads it to the store of etcd_backup_s3 (age-
// encrypted with etcd_backup_age_recipients) and applies retention
// (etcd_backup_retention, else the newest etcd_backup_local_keep) to this
// member's backups in both places. It is the operators' cron script done
// right: TLS, atomic files, no shell, retention that only touches its own
// files.
//
// Members without etcd_backup_schedule get state absent: a timer installed
// earlier is stopped and removed; the snapshots stay.
//
// It runs in the agent on the host (modules/jobtimer), after Resolve
// rendered the units on the controller.
package etcd_backup_timer

import (
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/jobtimer"
)

func init() { modules.Register("etcd_backup_timer", module) }

var module = Module{jobtimer.Module{Job: job, Spec: spec, Required: []string{"service", "timer", "schedule", "dir"}}}

// Module is the etcd_backup_timer module: a job timer with its own Resolve.
type Module struct{ jobtimer.Module }

// NeedsFullAgent: the job's program is the agent's own executable, and
// `backup-host` (etcd's client, S3, age) is only in etcdplay whole, not
// in the lean agent; so is the backup list probe (CLI `backups`).
func (Module) NeedsFullAgent() {}

var spec = jobtimer.Spec(modules.Spec{
	// Playbook-facing (each defaults to its variable).
	"dir":  {Kind: modules.String},
	"keep": {Kind: modules.Int},
	// Filled in by Resolve.
	"files": {Kind: modules.Map},
})

// job is the script and units.
var job = jobtimer.Job{
	Name: "etcd-backup", Module: "etcd_backup_timer", ScheduleVar: "etcd_backup_schedule",
	ScriptPath: ScriptPath, SelfBinary: true, Extra: []string{ConfigPath, CredentialsPath, StoreCAPath},
	RemoveNote: "snapshots already taken are kept",
}
