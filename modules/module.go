// Package modules defines the contract every etcdplay module implements and
// the registry the compiler and the agent look modules up in.
//
// A module is "plan, then apply": Plan is read-only and returns a Change that
// says exactly what Apply would do; --check stops after Plan, apply hands the
// same Change to Apply. There is one code path for both, so a dry run can
// never drift from a real run.
package modules

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Module is the small interface at the seam between the engine and a module.
type Module interface {
	// Validate checks the arguments at compile time, before any connection
	// is made. It must not touch the network or the filesystem. Arguments
	// that still hold template expressions have been rendered already.
	Validate(args Args) error
	// Plan computes what would change on env's host. It must not change
	// anything. An empty Change (no Actions) means "ok, nothing to do".
	Plan(ctx context.Context, env *Env, args Args) (*Change, error)
	// Apply does exactly what c says (c came from Plan on the same host in
	// the same run). It is only called when c has actions and not in check
	// mode.
	Apply(ctx context.Context, env *Env, c *Change) (*Result, error)
}

// ControllerSide is implemented by modules whose Plan and Apply run on the
// controller (they talk to etcd's API, hold the CA key, or fetch tarballs),
// using env.Remote to act on the host. All other modules run inside the
// agent on the host itself, where env.Remote is nil.
type ControllerSide interface {
	RunsOnController()
}

// Preparer is a ControllerSide module with slow controller-only work that
// depends on nothing but its arguments and variables (a release download
// and its verification). The runner starts Prepare for each of the
// module's tasks while it is still connecting to the hosts, so that work
// overlaps the handshakes instead of following them. Prepare gets no host
// handle (env.Remote and env.Hosts are nil), must be safe to run
// concurrently with itself and with Plan, ends when its context does, and
// leaves only what Plan would have made; Plan finds it done, and reports
// any error itself, so Prepare's errors are dropped.
type Preparer interface {
	Prepare(ctx context.Context, env *Env, args Args)
}

// Env is what a module sees of the run it is part of.
type Env struct {
	// Host is the inventory hostname the task runs for.
	Host string
	// Vars are the host's merged variables (inventory, play, extra vars),
	// plus the facts inventory_hostname, groups and hostvars.
	Vars map[string]any
	// Check is true under --check: Plan runs, Apply never does.
	Check bool
	// Remote is the controller's read-only handle on the host. Set only
	// for ControllerSide modules.
	Remote Host
	// Hosts gives ControllerSide modules read-only handles on every host
	// of the play (for cluster-wide work such as a rolling restart). Nil
	// inside the agent.
	Hosts map[string]Host
	// Notified lists, for a handler, the hosts whose tasks notified it in
	// this run (a run_once handler acts for all of them).
	Notified []string
	// StateDir is the controller-side state directory (PKI, caches,
	// backups). Set only for ControllerSide modules.
	StateDir string
	// Log receives progress lines worth showing live (may be nil).
	Log func(format string, args ...any)
	// Confirm, when set, is asked before a disruptive plan is applied
	// (Change.Disruptive): an error refuses it, and nothing of it is done.
	Confirm func(ctx context.Context, c *Change) error

	// writers are the writing handles, present only while Apply runs (see
	// Run): Plan, and so every --check, can reach hosts only through the
	// read-only handles above.
	writers map[string]HostWriter
}

// Remotes is every host of the play a controller-side module can reach
// (read-only): Hosts, with the task's own Remote (which is all there is
// when the runner gave no play-wide view).
func (e *Env) Remotes() map[string]Host {
	out := make(map[string]Host, len(e.Hosts)+1)
	for h, r := range e.Hosts {
		out[h] = r
	}
	if _, ok := out[e.Host]; !ok && e.Remote != nil {
		out[e.Host] = e.Remote
	}
	return out
}

// Writer is the writing handle on host. It exists only inside Apply; in
// Plan it is an error (a Plan that asks for one is a bug).
func (e *Env) Writer(host string) (HostWriter, error) {
	if e.writers == nil {
		return nil, fmt.Errorf("no writing handle on %s: hosts can only be changed in Apply, never in Plan or under --check", host)
	}
	w, ok := e.writers[host]
	if !ok {
		return nil, fmt.Errorf("host %s is not reachable in this play", host)
	}
	return w, nil
}

// Writers is every writing handle of the play, nil outside Apply.
func (e *Env) Writers() map[string]HostWriter {
	if e.writers == nil {
		return nil
	}
	out := make(map[string]HostWriter, len(e.writers))
	for h, w := range e.writers {
		out[h] = w
	}
	return out
}

// Logf writes a progress line when the run has a log sink.
func (e *Env) Logf(format string, args ...any) {
	if e != nil && e.Log != nil {
		e.Log(format, args...)
	}
}

// Host is the controller's read-only handle on one host: the single SSH
// connection and the agent session behind it, limited to what cannot
// change the host. Plan gets only these.
type Host interface {
	// Name is the inventory hostname.
	Name() string
	// Address is the address SSH connects to (ansible_host).
	Address() string
	// Reachable reports whether the host answered SSH in this run.
	Reachable() bool
	// Plan runs a host-side module's Plan in the agent, never its Apply:
	// the Result says what it would change.
	Plan(ctx context.Context, module string, args Args) (*Result, error)
	// Probe runs a read-only host probe (see RegisterProbe) in the agent
	// and decodes its answer into out (a pointer to the probe's answer
	// type: the answer crosses the wire as JSON, so types survive).
	Probe(ctx context.Context, probe string, args Args, out any) error
	// Dial opens a TCP connection from the host's side of the SSH
	// connection, so the controller can reach ports only the host can.
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
	// Download streams the file at path on the host to w.
	Download(ctx context.Context, path string, w io.Writer) error
}

// HostWriter is the handle Apply gets: a Host that can also change it.
type HostWriter interface {
	Host
	// Apply runs a host-side module in the agent: plan, then apply.
	Apply(ctx context.Context, module string, args Args) (*Result, error)
	// Upload streams r to path on the host atomically (temp file, fsync,
	// rename) with the given mode.
	Upload(ctx context.Context, r io.Reader, path string, mode uint32) error
}

// ReadOnly is h with only its Host methods: a type assertion on the
// result cannot recover a HostWriter.
func ReadOnly(h Host) Host {
	if h == nil {
		return nil
	}
	if ro, ok := h.(readOnly); ok {
		return ro
	}
	return readOnly{h: h}
}

type readOnly struct{ h Host }

func (r readOnly) Name() string    { return r.h.Name() }
func (r readOnly) Address() string { return r.h.Address() }
func (r readOnly) Reachable() bool { return r.h.Reachable() }
func (r readOnly) Plan(ctx context.Context, module string, args Args) (*Result, error) {
	return r.h.Plan(ctx, module, args)
}
func (r readOnly) Probe(ctx context.Context, probe string, args Args, out any) error {
	return r.h.Probe(ctx, probe, args, out)
}
func (r readOnly) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return r.h.Dial(ctx, network, addr)
}
func (r readOnly) Download(ctx context.Context, path string, w io.Writer) error {
	return r.h.Download(ctx, path, w)
}

// Status is the outcome of one task on one host.
type Status string

const (
	StatusOK          Status = "ok"
	StatusChanged     Status = "changed"
	StatusFailed      Status = "failed"
	StatusSkipped     Status = "skipped"
	StatusUnreachable Status = "unreachable"
)

// Action is one line of a plan: a non-file change (a package install, a
// service restart, a membership change) or a file write.
type Action struct {
	// Op is '+' create, '~' update, '-' delete, '!' run/restart.
	Op string `json:"op"`
	// Target names what changes: a path, a unit, a member.
	Target string `json:"target"`
	// Detail says how, in operator terms ("restart (config changed)").
	Detail string `json:"detail,omitempty"`
}

func (a Action) String() string {
	if a.Detail == "" {
		return a.Op + " " + a.Target
	}
	return a.Op + " " + a.Target + ": " + a.Detail
}

// FileDiff is the before and after content of one file. Secret files carry
// only a hash of each side, never the content.
type FileDiff struct {
	Path   string `json:"path"`
	Before string `json:"before"`
	After  string `json:"after"`
	Secret bool   `json:"secret,omitempty"`
}

// MaxMessage bounds one message between the controller and an agent
// (a request with its arguments, a result with its data). Each side
// refuses a larger one instead of buffering it, so a host that sends
// without end cannot exhaust the controller's memory, nor the controller
// the host's. Bulk data (releases, snapshots, the agent) goes over SFTP.
const MaxMessage = 256 << 20

// Change is what Plan found: empty means nothing to do.
type Change struct {
	Actions []Action   `json:"actions,omitempty"`
	Diffs   []FileDiff `json:"diffs,omitempty"`
	// Payload is module-private data Plan hands to Apply (desired content,
	// resolved ids). It never crosses the wire.
	Payload any `json:"-"`
	// Disruptive says, when set, why applying this plan disrupts the
	// cluster (members restarted or stopped, membership changed, data
	// moved aside). The driver asks env.Confirm before such an Apply.
	Disruptive string `json:"disruptive,omitempty"`
}

// Empty reports whether the change does nothing.
func (c *Change) Empty() bool { return c == nil || len(c.Actions) == 0 }

// Add appends an action.
func (c *Change) Add(op, target, detail string) {
	c.Actions = append(c.Actions, Action{Op: op, Target: target, Detail: detail})
}

// Result is what a task did (or, under --check, would do) on one host.
type Result struct {
	Status Status  `json:"status"`
	Msg    string  `json:"msg,omitempty"`
	Change *Change `json:"change,omitempty"`
	// Data is the module's output, available to later tasks through
	// register (stdout, rc, member id, snapshot path, ...).
	Data map[string]any `json:"data,omitempty"`
}

var (
	mu       sync.RWMutex
	registry = map[string]Module{}
	internal = map[string]Module{}
	groups   = map[string]bool{}
	probes   = map[string]Prober{}
	// namespaces maps a variable prefix a module package owns to every
	// variable under it that the package reads.
	namespaces = map[string]map[string]bool{}
)

// Register makes a module available to playbooks under name. Module
// packages call it from init; the binary imports them all through
// modules/all.
func Register(name string, m Module) { register(registry, name, m) }

// RegisterGroup names an inventory group a module gives a meaning to
// (etcd_clients): a play for it is fine when an inventory lacks it (the
// play has nothing to do), where any other unknown group is a typo.
func RegisterGroup(name string) {
	mu.Lock()
	defer mu.Unlock()
	groups[name] = true
}

// KnownGroup reports whether a module registered the group name.
func KnownGroup(name string) bool {
	mu.Lock()
	defer mu.Unlock()
	return groups[name]
}

// RegisterVariables declares that the variables starting with prefix
// are a module package's contract (etcd_ for the etcd modules) and names
// every one of them it reads. Any other variable under prefix is read by
// nothing: UnreadVariable says so, so that a misspelt name does not leave
// a setting at its default without a word.
func RegisterVariables(prefix string, names ...string) {
	mu.Lock()
	defer mu.Unlock()
	if namespaces[prefix] == nil {
		namespaces[prefix] = map[string]bool{}
	}
	for _, n := range names {
		if !strings.HasPrefix(n, prefix) {
			panic(fmt.Sprintf("modules: variable %q is outside its namespace %q", n, prefix))
		}
		namespaces[prefix][n] = true
	}
}

// UnreadVariable reports whether name lies in a registered namespace
// without being one of its variables, and the closest variable that is
// (for a "did you mean" hint; "" when none is near).
func UnreadVariable(name string) (unread bool, hint string) {
	mu.RLock()
	defer mu.RUnlock()
	for prefix, known := range namespaces {
		if !strings.HasPrefix(name, prefix) || known[name] {
			continue
		}
		// Compared without the prefix they all share, and closer than
		// Closest allows: a hint from another tool's variable that only
		// shares a word (kubespray's etcd_events_data_dir) misleads.
		rest := strings.TrimPrefix(name, prefix)
		best, bestD := "", len(rest)/3+2
		for _, k := range slices.Sorted(maps.Keys(known)) {
			if d := EditDistance(rest, strings.TrimPrefix(k, prefix)); d < bestD {
				best, bestD = k, d
			}
		}
		return true, best
	}
	return false, ""
}

// RegisterInternal makes a host-side module available to controller-side
// modules (through HostWriter.Apply and Host.Plan) but not to playbooks:
// it is a building block (etcd_files, etcd_install, ...), not a task.
func RegisterInternal(name string, m Module) { register(internal, name, m) }

func register(into map[string]Module, name string, m Module) {
	mu.Lock()
	defer mu.Unlock()
	_, dup1 := registry[name]
	_, dup2 := internal[name]
	if dup1 || dup2 {
		panic(fmt.Sprintf("modules: %q registered twice", name))
	}
	into[name] = m
}

// Prober is a read-only question a controller-side module asks a host
// (what a dir holds, a unit's state, how fast its disk syncs). It runs in
// the agent and has no Apply: there is nothing it could be told to change.
type Prober interface {
	// Probe answers with a JSON-encodable value.
	Probe(ctx context.Context, args Args) (any, error)
}

// RegisterProbe makes a probe available to Host.Probe.
func RegisterProbe(name string, p Prober) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := probes[name]; dup {
		panic(fmt.Sprintf("modules: probe %q registered twice", name))
	}
	probes[name] = p
}

// LookupProbe returns the probe registered under name.
func LookupProbe(name string) (Prober, bool) {
	mu.RLock()
	defer mu.RUnlock()
	p, ok := probes[name]
	return p, ok
}

// Lookup returns the module a playbook may call under name.
func Lookup(name string) (Module, bool) {
	mu.RLock()
	defer mu.RUnlock()
	m, ok := registry[name]
	return m, ok
}

// LookupHostSide returns the host-side module under name, internal ones
// included: what an agent may run.
func LookupHostSide(name string) (Module, bool) {
	mu.RLock()
	defer mu.RUnlock()
	m, ok := registry[name]
	if !ok {
		m, ok = internal[name]
	}
	if !ok || OnController(m) {
		return nil, false
	}
	return m, true
}

// Names lists the modules playbooks may call, sorted (for "did you mean"
// hints).
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// OnController reports whether m runs on the controller.
func OnController(m Module) bool {
	_, ok := m.(ControllerSide)
	return ok
}

// FullAgentOnly is a host-side module the lean agent (cmd/etcdplay-agent,
// built from modules/hostside) cannot serve, because it needs what that
// build leaves out: etcd_backup_timer installs the agent's own executable
// as its job's program, which must be etcdplay whole. The runner sends
// the full binary as the agent of any host that runs one.
type FullAgentOnly interface {
	NeedsFullAgent()
}

// NeedsFullAgent reports whether m can only run in the full agent.
func NeedsFullAgent(m Module) bool {
	_, ok := m.(FullAgentOnly)
	return ok
}

// HostSideNames lists what an agent built with the linked-in modules
// serves, sorted: its host-side modules (internal ones included) and, as
// "probe:NAME", its probes.
func HostSideNames() []string {
	mu.RLock()
	defer mu.RUnlock()
	var names []string
	for _, tab := range []map[string]Module{registry, internal} {
		for n, m := range tab {
			if !OnController(m) {
				names = append(names, n)
			}
		}
	}
	for n := range probes {
		names = append(names, "probe:"+n)
	}
	sort.Strings(names)
	return names
}

// VariableError is implemented by errors about a variable's value rather
// than about the task that read it (a duplicate etcd_name, say). The
// compiler reports each once per run, however many tasks and hosts read
// the variable.
type VariableError interface {
	error
	Variable() string
}

// Resolver is implemented by modules that need controller-side inputs (a
// template, a local file, cluster-wide variables) turned into plain
// arguments before the task goes to the host. The compiler calls Resolve
// once per host after rendering the task's templates and before Validate;
// an error from it is a compile error and stops the run before any
// connection is made.
type Resolver interface {
	Resolve(args Args, rc *ResolveContext) (Args, error)
}

// ResolvesAlike marks a Resolver whose result depends on its arguments and
// the playbook's files only, never on the host or its variables (copy
// reading src): for a task whose arguments hold no template, the compiler
// resolves and validates it once and gives every host the same arguments.
type ResolvesAlike interface {
	Resolver
	ResolvesAlike()
}

// ResolveContext is what Resolve may use: files beside the playbook and the
// host's variables. It never reaches a host.
type ResolveContext struct {
	// BaseDir is the playbook's directory; templates/ and files/ beside it
	// are looked up first, then the templates embedded in the binary.
	BaseDir string
	// Host is the inventory hostname the task is being compiled for.
	Host string
	// StateDir is the controller-side state directory (read-only here:
	// e.g. the peer round trips etcd_tune measured in an earlier run).
	StateDir string
	// Vars are the host's merged variables and facts (hostvars, groups).
	Vars map[string]any
	// Render renders text as a Go template over Vars with the playbook's
	// template functions.
	Render func(name, text string) (string, error)
}
