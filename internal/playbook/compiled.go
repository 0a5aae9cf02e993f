package playbook

import (
	"github.com/etcdplay/etcdplay/internal/dag"
	"github.com/etcdplay/etcdplay/internal/yamlpos"
	"github.com/etcdplay/etcdplay/modules"
)

// This file is the contract between the compiler (this package) and the
// runner (internal/runner): a compiled playbook is a DAG of Nodes, one per
// (task, host), with every template already rendered.

// Compiled is a playbook ready to run: validated, rendered, and laid out as
// a graph. Nothing in it needs the playbook file any more.
type Compiled struct {
	File  string
	Plays []*Play
	// Graph holds every node; edges run from a dependency to its dependent.
	Graph *dag.Graph[*Node]
	// Warnings are what the operator should hear of without being stopped:
	// variables in a module namespace that nothing reads (a typo?).
	Warnings Errors
}

// Node is one task on one host (or, for a run_once task, one node for the
// whole play, bound to the first host of the batch).
type Node struct {
	// ID is stable and readable: "p1.t3.etcd1" (play 1, task 3, host);
	// "p1.h2.etcd1" for handler 2; "p1.t3.once" for a run_once task
	// ("p1.t3.once.b2" in the second serial batch, "p1.t3.once.c2" in the
	// second partition).
	ID   string
	Play *Play
	Task *Task
	// Host is the inventory hostname the node runs on.
	Host string
	// Part indexes Play.Parts: the partition of the play the node belongs
	// to (0 when the play is not partitioned).
	Part int
	// Hosts is, for a run_once node, every host of the play it acts for.
	Hosts []string
	// Args are the module arguments rendered for Host. Read-only: nodes of
	// a task whose arguments hold no template share one map.
	Args modules.Args
	// Vars are Host's merged variables (inventory, group_vars, host_vars,
	// play vars, vars_files, extra vars) plus facts; modules get them in
	// Env.Vars.
	Vars map[string]any
	// Skip is set when the task's `when` rendered false at compile time,
	// or the task is filtered out by --tags: the runner reports it skipped.
	Skip       bool
	SkipReason string
	// Handler marks a handler node: it runs only if a task on the same host
	// (or, run_once, on any host of the play) that lists it in notify
	// reported changed; otherwise it is skipped silently.
	Handler bool
}

// PlayHosts are the hosts of n's play, or of its partition: a partition
// is a play of its own to the modules (env.Hosts), its handlers and the
// failure policy.
func (n *Node) PlayHosts() []string {
	if n.Play.Parts != nil {
		return n.Play.Parts[n.Part].Hosts
	}
	return n.Play.Hosts
}

// Play is a play after validation.
type Play struct {
	Index int // 1-based
	Name  string
	Hosts []string // resolved, limited, in inventory order
	// Parts are the play's partitions (see partition_by), each run as an
	// independent copy of the play; nil when it has one.
	Parts             []Partition
	Serial            []int // batch sizes resolved to host counts; nil = all at once or partitioned
	MaxFailPercentage int   // -1 when unset
	AnyErrorsFatal    bool
	Tasks             []*Task
	Handlers          []*Task
}

// Partition is one copy of a partitioned play: the hosts whose
// partition_by rendered to Key.
type Partition struct {
	Key    string
	Hosts  []string
	Serial []int // as Play.Serial, for this partition's hosts
}

// Task is a task after validation (templates in Args still unrendered).
type Task struct {
	Index   int // 1-based within the play
	ID      string
	Name    string
	Module  string
	Args    map[string]any // raw, before rendering
	Needs   []string
	When    string
	Tags    []string
	Notify  []string
	RunOnce bool
	Retries int     // 3 when until is set without retries, as in Ansible
	Delay   float64 // seconds; 5 when until is set without delay
	// Until is a template rendered against the task's result after each
	// try (".result.status", ".result.data.rc", ...); retries stop when it
	// renders "true".
	Until    string
	Become   *bool
	Register string
	// IgnoreErrors keeps a failure from skipping dependents.
	IgnoreErrors bool
	// NoLog (no_log: true) keeps the task's messages, plan details, diffs,
	// data and module logs out of every output, as Ansible does; what it
	// registers keeps them.
	NoLog bool
	// ChangedWhen, when set, is a template condition rendered against the
	// task's result (like Until) that decides whether it reports changed.
	ChangedWhen string
	// WhenAtRuntime is set when When reads a variable registered by an
	// earlier task: the compiler cannot decide it, the runner must render
	// When (against the vars plus registered results) before running.
	WhenAtRuntime bool
	// WhenList and ChangedWhenList are When and ChangedWhen as written: a
	// list of conditions that must all hold.
	WhenList        []string
	ChangedWhenList []string
	Pos             Pos
}

// Pos is where something was written: file, 1-based line and column.
type Pos = yamlpos.Pos
