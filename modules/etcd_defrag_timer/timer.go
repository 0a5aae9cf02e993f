// Package etcd_defrag_timer installs scheduled defragmentation on a member,
// as the backup timer does snapshots: a systemd timer
// (etcd_defrag_schedule, an OnCalendar expression) runs a oneshot service
// that defragments this member only, only when the rule of the rolling
// defrag says so (free space inside the db, or the db near the quota), and
// only under etcdplay's operation lock, so two members never defragment at
// once (the lock is the same key every rolling step of etcdplay takes).
//
// Members without etcd_defrag_schedule get state absent: a timer installed
// earlier is stopped and removed.
//
// It runs in the agent on the host (modules/jobtimer), after Resolve
// rendered the units on the controller.
package etcd_defrag_timer

import (
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/jobtimer"
)

func init() { modules.Register("etcd_defrag_timer", module) }

var module = Module{jobtimer.Module{Job: job, Spec: spec, Required: []string{"service", "timer", "schedule"}}}

// Module is the etcd_defrag_timer module: a job timer with its own Resolve.
type Module struct{ jobtimer.Module }

var spec = jobtimer.Spec(modules.Spec{
	// Playbook-facing (schedule defaults to etcd_defrag_schedule).
	"free_above":     {Kind: modules.String},
	"quota_fraction": {Kind: modules.String},
	"spread":         {Kind: modules.String},
})

// job is the script and units.
var job = jobtimer.Job{
	Name: "etcd-defrag", Module: "etcd_defrag_timer", ScheduleVar: "etcd_defrag_schedule",
	ScriptPath: ScriptPath, Script: Script, RemoveNote: "nothing else to keep",
}
