package playbook

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/internal/coerce"
	"github.com/etcdplay/etcdplay/internal/dag"
	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/internal/tmpl"
	"github.com/etcdplay/etcdplay/internal/yamlpos"
	"github.com/etcdplay/etcdplay/modules"
)

// Playbook is a playbook as written, decoded and checked as far as it can
// be without an inventory: keys, types, modules and their arguments'
// names, ids, needs, cycles, handlers, serial, template syntax.
type Playbook struct {
	// File is the path Parse was given; Dir is its directory, where
	// vars_files, templates/ and files/ are looked up.
	File  string
	Dir   string
	Plays []*PlaySpec
}

// PlaySpec is a play as written.
type PlaySpec struct {
	Index     int // 1-based
	Name      string
	Hosts     string // the host pattern (a list is joined with ",")
	Vars      map[string]any
	VarsFiles []string
	// PartitionBy is a template rendered per host: hosts with the same
	// value form an independent copy of the play (its own run_once nodes,
	// serial batches, handlers and failure policy), and the copies run
	// side by side. Empty means one copy.
	PartitionBy string
	// Serial are the batch sizes as written; nil means all hosts at once.
	Serial            []SerialStep
	MaxFailPercentage int // -1 when unset
	AnyErrorsFatal    bool
	Become            *bool
	Tasks             []*Task
	Handlers          []*Task
	Pos               Pos

	// pos holds where values were written: "hosts", "serial",
	// "vars.NAME", "vars_files[i]".
	pos  map[string]Pos
	meta map[*Task]*taskMeta
}

// SerialStep is one entry of serial: a host count or a percentage.
type SerialStep struct {
	N       int
	Percent bool
}

func (s SerialStep) String() string {
	if s.Percent {
		return strconv.Itoa(s.N) + "%"
	}
	return strconv.Itoa(s.N)
}

// taskMeta is what the compiler needs to point errors at a task's parts.
type taskMeta struct {
	field string    // "p1.t3" or "p1.h2"
	key   positions // position of each task key's value, and of the module key under "module"
	args  positions // "args", "args.dest", "args.env.X", "args.list[0]"
	// freeForm is set when the arguments were written as one string.
	freeForm bool
	listen   []string
	whenList []string // when as written (a list means all must hold)
}

// positions records where the parts of one task were written, in the
// order parsed; the first record of a name is the one that counts. A task
// has a handful, read only to point an error at them, so a slice serves
// better than a map (the maps were a third of what a 20,000-task playbook
// allocated).
type positions []namedPos

type namedPos struct {
	name string
	pos  Pos
}

// add records name at p; an earlier record of the same name still wins.
func (ps *positions) add(name string, p Pos) { *ps = append(*ps, namedPos{name, p}) }

func (ps positions) lookup(name string) (Pos, bool) {
	for _, np := range ps {
		if np.name == name {
			return np.pos, true
		}
	}
	return Pos{}, false
}

func (ps positions) get(name string) Pos {
	p, _ := ps.lookup(name)
	return p
}

var (
	playKeys = []string{"name", "hosts", "vars", "vars_files", "partition_by", "serial", "max_fail_percentage",
		"any_errors_fatal", "become", "tasks", "handlers", "gather_facts"}
	taskKeys = []string{"name", "id", "needs", "when", "tags", "notify", "run_once", "retries",
		"delay", "until", "become", "register", "ignore_errors", "changed_when", "args", "listen", "no_log"}
	// ansibleOnly are Ansible keywords people will write that etcdplay does
	// not implement: say so instead of suggesting a typo fix.
	ansibleOnly = map[string]bool{
		"loop": true, "with_items": true, "with_dict": true, "delegate_to": true, "become_user": true,
		"become_method": true, "failed_when": true, "vars": true, "environment": true,
		"async": true, "poll": true, "block": true, "rescue": true, "always": true,
		"include_tasks": true, "import_tasks": true, "include_role": true, "import_role": true,
		"roles": true, "pre_tasks": true, "post_tasks": true,
		"strategy": true, "connection": true, "check_mode": true, "local_action": true,
		"remote_user": true, "order": true, "delegate_facts": true, "loop_control": true,
	}
	idRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
	registerRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ModuleName maps the names Ansible playbooks use to etcdplay's:
// ansible.builtin.file -> file, systemd_service -> systemd.
func ModuleName(name string) string {
	for _, p := range []string{"ansible.builtin.", "ansible.legacy."} {
		name = strings.TrimPrefix(name, p)
	}
	if name == "systemd_service" {
		return "systemd"
	}
	return name
}

// Parse reads and checks a playbook file. All problems are reported at
// once, as Errors sorted by position.
func Parse(path string) (*Playbook, error) {
	pb, err := parse(path)
	if err != nil {
		return nil, err
	}
	return pb, nil
}

// parse is Parse, but also returns what it could read when it found
// problems (nil only when the file is not a playbook at all), so Load can
// go on to report compile problems in the same run.
func parse(path string) (*Playbook, error) {
	pb, cutWrong, err := parseFile(path, true)
	if cutWrong {
		pb, _, err = parseFile(path, false)
	}
	return pb, err
}

// parseFile reads the playbook at path, cutting long task lists when cut
// is set; cutWrong reports that a piece did not parse on its own, and
// the result is then to be thrown away (see split.go).
func parseFile(path string, cut bool) (pb *Playbook, cutWrong bool, err error) {
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return nil, false, Errors{{Pos: Pos{File: path}, Msg: readMsg(rerr)}}
	}
	pb = &Playbook{File: path, Dir: filepath.Dir(path)}
	p := &parser{pb: pb, file: path, cuts: &cuts{on: cut}}
	root, errs := p.readPlays(path, data)
	if errs != nil {
		return nil, false, errs
	}
	p.plays(root, []string{path})
	if p.cuts.wrong.Load() || p.cuts.read != len(p.cuts.pieces) {
		// A piece that did not parse alone, or a list that was cut but is
		// not a play's tasks or handlers (so its pieces went unread).
		return nil, true, nil
	}
	p.checkIDs()
	return pb, false, p.c.err()
}

// cuts are the pieces of the task lists cut in the files being read,
// keyed by each list's node, shared by the parsers reading tasks; read
// counts the lists whose pieces were read.
type cuts struct {
	on     bool
	pieces map[*yaml.Node][]*piece
	read   int
	wrong  atomic.Bool
}

// readPlays parses a playbook file's YAML down to its list of plays.
func (p *parser) readPlays(path string, data []byte) (*yaml.Node, Errors) {
	var doc *yaml.Node
	if p.cuts.on {
		if cf := cutYAML(data); cf != nil {
			doc = cf.root
			if p.cuts.pieces == nil {
				p.cuts.pieces = map[*yaml.Node][]*piece{}
			}
			maps.Copy(p.cuts.pieces, cf.pieces)
		}
	}
	if doc == nil {
		doc = &yaml.Node{}
		if err := yaml.Unmarshal(data, doc); err != nil {
			e := yamlpos.DecodeError(path, err)
			e.Msg = "YAML syntax: " + e.Msg
			return nil, Errors{e}
		}
	}
	if len(doc.Content) == 0 {
		return nil, Errors{{Pos: Pos{File: path}, Msg: "empty playbook: want a list of plays"}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.SequenceNode {
		return nil, Errors{{Pos: yamlpos.At(path, root), Msg: "a playbook is a list of plays, got " + yamlpos.KindName(root)}}
	}
	return root, nil
}

// plays reads a list of plays into the playbook. An entry that is only
// `import_playbook: FILE` (and perhaps a name) brings in that file's plays
// at that point, as Ansible does; the file is relative to the importing
// one, and its problems are reported at its own lines. stack is the chain
// of files being read, to refuse a cycle.
func (p *parser) plays(root *yaml.Node, stack []string) {
	for _, n := range root.Content {
		if file, keyNode, ok := p.importOf(n); ok {
			p.importPlaybook(file, keyNode, stack)
			continue
		}
		if play := p.play(len(p.pb.Plays)+1, n); play != nil {
			p.pb.Plays = append(p.pb.Plays, play)
		}
	}
}

// importOf recognises an import_playbook entry; one that also has play
// keys is reported (Ansible refuses it too).
func (p *parser) importOf(n *yaml.Node) (string, *yaml.Node, bool) {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		return "", nil, false
	}
	var at *yaml.Node
	var others []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i]; k.Value {
		case "import_playbook", "ansible.builtin.import_playbook":
			at = resolveAlias(n.Content[i+1])
		case "name":
		default:
			others = append(others, k)
		}
	}
	if at == nil {
		return "", nil, false
	}
	for _, k := range others {
		p.errf(k, "import_playbook", "", "an import_playbook entry takes no %q (only a name): put play keys in the imported playbook", k.Value)
	}
	return at.Value, at, true
}

func (p *parser) importPlaybook(file string, at *yaml.Node, stack []string) {
	if at.Kind != yaml.ScalarNode || file == "" {
		p.errf(at, "import_playbook", "", "import_playbook wants a playbook file name")
		return
	}
	if tmpl.Has(file) {
		p.errf(at, "import_playbook", "", "import_playbook is read before any variable exists: write the file name out")
		return
	}
	path := file
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(p.file), file)
	}
	for _, f := range stack {
		if filepath.Clean(f) == filepath.Clean(path) {
			p.errf(at, "import_playbook", "", "%s imports itself (through %s)", file, strings.Join(stack, " -> "))
			return
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		p.errf(at, "import_playbook", "", "%s: %s", path, readMsg(err))
		return
	}
	root, errs := p.readPlays(path, data)
	if errs != nil {
		p.c.errs = append(p.c.errs, errs...)
		return
	}
	outer := p.file
	p.file = path
	p.plays(root, append(stack, path))
	p.file = outer
}

func readMsg(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "no such file"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

type parser struct {
	pb *Playbook
	// file is the file being read: the playbook, or one it imports.
	file string
	c    collector
	cuts *cuts
}

func (p *parser) pos(n *yaml.Node) Pos { return yamlpos.At(p.file, n) }

func (p *parser) errf(n *yaml.Node, field, hint, format string, args ...any) {
	p.c.addf(p.pos(n), field, hint, format, args...)
}

// pairs returns a mapping's key/value nodes, reporting duplicate keys.
func (p *parser) pairs(n *yaml.Node, field string) [][2]*yaml.Node {
	out := make([][2]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if hasKey(out, k.Value) {
			p.errf(k, field, "", "key %q written twice", k.Value)
			continue
		}
		out = append(out, [2]*yaml.Node{k, resolveAlias(n.Content[i+1])})
	}
	return out
}

// hasKey is a linear search: a task or its arguments have a handful of
// keys, and a map per mapping costs more than it saves.
func hasKey(pairs [][2]*yaml.Node, key string) bool {
	for _, kv := range pairs {
		if kv[0].Value == key {
			return true
		}
	}
	return false
}

// nodeValue is what n.Decode into an any, then inventory.Normalize, gives,
// without a decoder per value for the common shapes (plain strings, and
// mappings and lists of them): a large playbook has a value per argument.
// Anything else (numbers, booleans, anchors, merge keys, tags, duplicate
// keys) is left to yaml.v3.
func nodeValue(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			return n.Value, nil
		}
	case yaml.MappingNode:
		if n.ShortTag() != "!!map" {
			break
		}
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if _, dup := out[k.Value]; dup || k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" || k.Value == "<<" {
				return decodeNode(n)
			}
			v, err := nodeValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out[k.Value] = v
		}
		return out, nil
	case yaml.SequenceNode:
		if n.ShortTag() != "!!seq" {
			break
		}
		out := make([]any, len(n.Content))
		for i, e := range n.Content {
			v, err := nodeValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	return decodeNode(n)
}

func decodeNode(n *yaml.Node) (any, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	return inventory.Normalize(v), nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func (p *parser) play(idx int, n *yaml.Node) *PlaySpec {
	field := fmt.Sprintf("p%d", idx)
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		p.errf(n, field, "", "a play is a mapping (hosts, tasks, ...), got %s", yamlpos.KindName(n))
		return nil
	}
	play := &PlaySpec{Index: idx, Pos: p.pos(n), MaxFailPercentage: -1, Vars: map[string]any{},
		pos: map[string]Pos{}, meta: map[*Task]*taskMeta{}}
	var tasksNode, handlersNode *yaml.Node
	hasHosts := false
	for _, kv := range p.pairs(n, field) {
		k, v := kv[0], kv[1]
		f := field + "." + k.Value
		play.pos[k.Value] = p.pos(v)
		switch k.Value {
		case "name":
			play.Name, _ = p.str(v, f)
		case "hosts":
			hasHosts = true
			if v.Kind == yaml.SequenceNode {
				list, _ := p.strList(v, f)
				play.Hosts = strings.Join(list, ",")
			} else if s, ok := p.str(v, f); ok {
				play.Hosts = s
			}
			p.checkTemplate(v, f, play.Hosts)
		case "vars":
			play.Vars = p.vars(v, f, "vars", play.pos)
		case "vars_files":
			list, _ := p.strList(v, f)
			play.VarsFiles = list
			for i := range list {
				node := v
				if v.Kind == yaml.SequenceNode {
					node = v.Content[i]
				}
				play.pos[fmt.Sprintf("vars_files[%d]", i)] = p.pos(node)
			}
		case "partition_by":
			if s, ok := p.str(v, f); ok {
				play.PartitionBy = s
				if !tmpl.Has(s) {
					p.errf(v, f, "", "%q is not a template: partition_by is rendered per host, such as \"{{ etcd_cluster_name | default('etcd') }}\"", s)
				}
				p.checkTemplate(v, f, s)
			}
		case "serial":
			play.Serial = p.serial(v, f)
		case "max_fail_percentage":
			if pct, ok := p.percent(v, f); ok {
				play.MaxFailPercentage = pct
			}
		case "any_errors_fatal":
			play.AnyErrorsFatal, _ = p.boolean(v, f)
		case "become":
			if b, ok := p.boolean(v, f); ok {
				play.Become = &b
			}
		case "tasks":
			tasksNode = v
		case "handlers":
			handlersNode = v
		case "gather_facts":
			// Accepted so Ansible playbooks load; etcdplay gathers no facts.
		default:
			p.unknownKey(k, f, "play", playKeys)
		}
	}
	if !hasHosts {
		p.errf(n, field, "", "play has no hosts")
	}
	// Handlers first, so notify can be checked while reading tasks.
	play.Handlers = p.tasks(play, handlersNode, field, "handlers", true)
	play.Tasks = p.tasks(play, tasksNode, field, "tasks", false)
	if play.Become != nil {
		for _, t := range append(append([]*Task(nil), play.Tasks...), play.Handlers...) {
			if t.Become == nil {
				b := *play.Become
				t.Become = &b
			}
		}
	}
	return play
}

func (p *parser) unknownKey(k *yaml.Node, field, what string, valid []string) {
	if ansibleOnly[k.Value] {
		p.errf(k, field, "", "%q is an Ansible keyword etcdplay does not support", k.Value)
		return
	}
	p.errf(k, field, modules.Closest(k.Value, valid), "unknown %s key %q", what, k.Value)
}

func (p *parser) tasks(play *PlaySpec, n *yaml.Node, playField, section string, handlers bool) []*Task {
	if n == nil || yamlpos.IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, playField+"."+section, "", "must be a list of tasks, got %s", yamlpos.KindName(n))
		return nil
	}
	letter := "t"
	if handlers {
		letter = "h"
	}
	// Tasks are read apart from each other, each run of them with a
	// parser of its own; their problems join in task order, as if read one
	// by one. A cut list's pieces are parsed here, each just before its
	// tasks are read.
	type run struct {
		tasks []*Task
		metas []*taskMeta
		p     *parser
	}
	read := func(first int, items []*yaml.Node) run {
		r := run{tasks: make([]*Task, len(items)), metas: make([]*taskMeta, len(items)),
			p: &parser{pb: p.pb, file: p.file, cuts: p.cuts}}
		for j, item := range items {
			i := first + j
			r.tasks[j], r.metas[j] = r.p.task(i+1, resolveAlias(item), fmt.Sprintf("%s.%s%d", playField, letter, i+1), handlers)
		}
		return r
	}
	var runs []run
	if pieces := p.cuts.pieces[n]; pieces != nil {
		p.cuts.read++
		runs = inOrder(len(pieces)+1, func(i int) run {
			if i == 0 {
				return read(0, n.Content)
			}
			if p.cuts.wrong.Load() {
				return run{} // the file is read whole anyway
			}
			items, ok := pieces[i-1].parse()
			if !ok {
				p.cuts.wrong.Store(true)
				return run{}
			}
			return read(pieces[i-1].first, items)
		})
	} else {
		runs = inChunks(len(n.Content), func(lo, hi int) run { return read(lo, n.Content[lo:hi]) })
	}
	var tasks []*Task
	var metas []*taskMeta
	for _, r := range runs {
		if r.p == nil {
			continue
		}
		for _, e := range r.p.c.errs {
			p.c.add(e)
		}
		tasks = append(tasks, r.tasks...)
		metas = append(metas, r.metas...)
	}
	var out []*Task
	for i, t := range tasks {
		if t != nil {
			play.meta[t] = metas[i]
			out = append(out, t)
		}
	}
	return out
}

// task reads one task and where its keys were written. It reads only n
// and writes only p's collector, so tasks can be read concurrently.
func (p *parser) task(idx int, n *yaml.Node, field string, handler bool) (*Task, *taskMeta) {
	if n.Kind != yaml.MappingNode {
		p.errf(n, field, "", "a task is a mapping (name, a module, ...), got %s", yamlpos.KindName(n))
		return nil, nil
	}
	t := &Task{Index: idx, Pos: p.pos(n)}
	m := &taskMeta{field: field, key: make(positions, 0, len(n.Content)/2+1)}
	type modKey struct{ k, v *yaml.Node }
	var mods []modKey
	var extraArgs *yaml.Node
	for _, kv := range p.pairs(n, field) {
		k, v := kv[0], kv[1]
		f := field + "." + k.Value
		m.key.add(k.Value, p.pos(v))
		switch k.Value {
		case "name":
			t.Name, _ = p.str(v, f)
		case "id":
			if s, ok := p.str(v, f); ok {
				if !idRE.MatchString(s) {
					p.errf(v, f, "", "invalid id %q: use letters, digits, _ . -", s)
				}
				t.ID = s
			}
		case "needs":
			t.Needs, _ = p.strList(v, f)
			if t.Needs == nil {
				t.Needs = []string{} // present but empty: no dependency at all
			}
			if handler {
				p.errf(k, f, "", "a handler cannot have needs: it runs after the tasks that notify it")
			}
		case "when":
			m.whenList = p.conditions(v, f)
			t.When = strings.Join(m.whenList, " and ")
			t.WhenList = m.whenList
		case "tags":
			t.Tags = p.tags(v, f)
		case "notify":
			t.Notify, _ = p.strList(v, f)
		case "listen":
			if !handler {
				p.errf(k, f, "", "listen is only for handlers")
			}
			m.listen, _ = p.strList(v, f)
		case "run_once":
			t.RunOnce, _ = p.boolean(v, f)
		case "retries":
			if r, ok := p.integer(v, f); ok {
				if r < 0 {
					p.errf(v, f, "", "must not be negative, got %d", r)
				}
				t.Retries = r
			}
		case "delay":
			t.Delay, _ = p.number(v, f)
		case "until":
			if s, ok := p.str(v, f); ok {
				t.Until = s
				p.checkTemplate(v, f, wrapCond(s))
			}
		case "become":
			if b, ok := p.boolean(v, f); ok {
				t.Become = &b
			}
		case "register":
			if s, ok := p.str(v, f); ok {
				if !registerRE.MatchString(s) {
					p.errf(v, f, "", "invalid variable name %q", s)
				}
				t.Register = s
			}
		case "ignore_errors":
			t.IgnoreErrors, _ = p.boolean(v, f)
		case "no_log":
			t.NoLog, _ = p.boolean(v, f)
		case "changed_when":
			conds := p.conditions(v, f)
			t.ChangedWhen = strings.Join(conds, " and ")
			t.ChangedWhenList = conds
		case "args":
			if v.Kind != yaml.MappingNode {
				p.errf(v, f, "", "must be a mapping, got %s", yamlpos.KindName(v))
				continue
			}
			extraArgs = v
		default:
			name := ModuleName(k.Value)
			if _, ok := modules.Lookup(name); ok {
				mods = append(mods, modKey{k, v})
				continue
			}
			if ansibleOnly[k.Value] {
				p.errf(k, f, "", "%q is an Ansible keyword etcdplay does not support", k.Value)
				continue
			}
			// A typo of a task key or of a module: suggest whichever is
			// nearer.
			keyHint := modules.Closest(k.Value, taskKeys)
			modHint := modules.Closest(name, modules.Names())
			switch {
			case name == "shell" || name == "raw" || name == "script":
				p.errf(k, f, "", "unknown module %q: etcdplay has no shell module, use command", k.Value)
			case keyHint != "" && modules.EditDistance(k.Value, keyHint) <= 2 && (modHint == "" || modules.EditDistance(k.Value, keyHint) <= modules.EditDistance(name, modHint)):
				p.errf(k, f, keyHint, "unknown task key %q", k.Value)
			default:
				p.errf(k, f, modHint, "unknown module %q", k.Value)
			}
			mods = append(mods, modKey{k, nil}) // counts as "a module was named"
		}
	}
	real := mods[:0:0]
	for _, mk := range mods {
		if mk.v != nil {
			real = append(real, mk)
		}
	}
	switch {
	case len(mods) == 0:
		p.errf(n, field, "", "task has no module (one of: %s)", strings.Join(modules.Names(), ", "))
	case len(real) > 1:
		var names []string
		for _, mk := range real {
			names = append(names, mk.k.Value)
		}
		p.errf(real[1].k, field, "", "task has more than one module: %s", strings.Join(names, ", "))
	case len(real) == 1:
		mk := real[0]
		t.Module = ModuleName(mk.k.Value)
		m.key.add("module", p.pos(mk.k))
		t.Args = p.moduleArgs(t.Module, mk.v, field+"."+t.Module, m)
		if extraArgs != nil && t.Args != nil {
			for _, kv := range p.pairs(extraArgs, field+".args") {
				if val, err := nodeValue(kv[1]); err == nil {
					t.Args[kv[0].Value] = val
					p.argPositions("args."+kv[0].Value, kv[1], &m.args)
					p.checkTemplates(kv[1], field+".args."+kv[0].Value)
				}
			}
		}
	}
	if t.Name == "" {
		t.Name = t.Module
	}
	// Ansible's defaults for until without retries or delay.
	if t.Until != "" {
		if _, ok := m.key.lookup("retries"); !ok {
			t.Retries = 3
		}
		if _, ok := m.key.lookup("delay"); !ok {
			t.Delay = 5
		}
	}
	return t, m
}

// moduleArgs decodes a module's arguments: a mapping, null (no arguments),
// or Ansible's one-line form, "cmd line" for command and "k=v k2=v2" for
// the others.
func (p *parser) moduleArgs(module string, v *yaml.Node, field string, m *taskMeta) map[string]any {
	m.args = make(positions, 0, len(v.Content)/2+1)
	m.args.add("args", p.pos(v))
	switch {
	case yamlpos.IsNull(v):
		return map[string]any{}
	case v.Kind == yaml.MappingNode:
		out := map[string]any{}
		for _, kv := range p.pairs(v, field) {
			val, err := nodeValue(kv[1])
			if err != nil {
				p.errf(kv[1], field+"."+kv[0].Value, "", "%s", err)
				continue
			}
			out[kv[0].Value] = val
			m.args.add("args."+kv[0].Value, p.pos(kv[0]))
			p.argChildPositions("args."+kv[0].Value, kv[1], &m.args)
			p.checkTemplates(kv[1], field+"."+kv[0].Value)
		}
		return out
	case v.Kind == yaml.ScalarNode:
		m.freeForm = true
		p.checkTemplate(v, field, v.Value)
		args, err := freeForm(module, v.Value)
		if err != nil {
			p.errf(v, field, "", "%v", err)
			return nil
		}
		for _, k := range slices.Sorted(maps.Keys(args)) {
			m.args.add("args."+k, p.pos(v))
		}
		return args
	}
	p.errf(v, field, "", "module arguments must be a mapping, got %s", yamlpos.KindName(v))
	return nil
}

// argPositions records where every nested argument value was written,
// named the way tmpl.Render names them.
func (p *parser) argPositions(name string, n *yaml.Node, out *positions) {
	out.add(name, p.pos(resolveAlias(n)))
	p.argChildPositions(name, n, out)
}

// argChildPositions records the positions of what n (the argument name)
// holds, not of n itself.
func (p *parser) argChildPositions(name string, n *yaml.Node, out *positions) {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p.argPositions(name+"."+n.Content[i].Value, n.Content[i+1], out)
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			p.argPositions(fmt.Sprintf("%s[%d]", name, i), e, out)
		}
	}
}

// freeForm parses Ansible's one-line module arguments.
func freeForm(module, s string) (map[string]any, error) {
	words, err := splitWords(s)
	if err != nil {
		return nil, err
	}
	args := map[string]any{}
	if module == "command" {
		// Ansible pulls its own options out of the command line.
		var rest []string
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if ok && (k == "creates" || k == "removes" || k == "chdir") {
				args[k] = v
				continue
			}
			rest = append(rest, w)
		}
		if len(rest) > 0 {
			args["cmd"] = commandLine(s, words, rest)
		}
		return args, nil
	}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q: write the arguments as a mapping, or as key=value words", w)
		}
		args[k] = v
	}
	return args, nil
}

// commandLine keeps the command as written when nothing was pulled out of
// it, so quoting survives; otherwise it rejoins the remaining words.
func commandLine(orig string, words, rest []string) string {
	if len(words) == len(rest) {
		return strings.TrimSpace(orig)
	}
	return strings.Join(rest, " ")
}

// splitWords splits on spaces, honouring quotes (and keeping them, so a
// command line's quoting reaches the shell unchanged) and {{ actions }}.
func splitWords(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case strings.HasPrefix(s[i:], "{{"):
			end := strings.Index(s[i:], "}}")
			if end < 0 {
				return nil, fmt.Errorf("unclosed {{ in %q", s)
			}
			cur.WriteString(s[i : i+end+2])
			i += end + 1
		case quote != 0:
			cur.WriteByte(ch)
			if ch == quote {
				quote = 0
			}
		case ch == '"' || ch == '\'':
			quote = ch
			cur.WriteByte(ch)
		case ch == ' ' || ch == '\t' || ch == '\n':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(ch)
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}

// vars decodes a mapping of variables, recording each one's position.
func (p *parser) vars(n *yaml.Node, field, prefix string, pos map[string]Pos) map[string]any {
	out := map[string]any{}
	if yamlpos.IsNull(n) {
		return out
	}
	if n.Kind != yaml.MappingNode {
		p.errf(n, field, "", "must be a mapping of variables, got %s", yamlpos.KindName(n))
		return out
	}
	for _, kv := range p.pairs(n, field) {
		val, err := nodeValue(kv[1])
		if err != nil {
			p.errf(kv[1], field+"."+kv[0].Value, "", "%s", err)
			continue
		}
		out[kv[0].Value] = val
		pos[prefix+"."+kv[0].Value] = p.pos(kv[1])
		p.checkTemplates(kv[1], field+"."+kv[0].Value)
	}
	return out
}

// checkTemplates checks the template syntax of every string under n.
func (p *parser) checkTemplates(n *yaml.Node, field string) {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.ScalarNode:
		p.checkTemplate(n, field, n.Value)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p.checkTemplates(n.Content[i+1], field+"."+n.Content[i].Value)
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			p.checkTemplates(e, fmt.Sprintf("%s[%d]", field, i))
		}
	}
}

func (p *parser) checkTemplate(n *yaml.Node, field, text string) {
	if err := tmpl.Check(field, text); err != nil {
		p.errf(n, field, "", "%v", err)
	}
}

// conditions reads when/changed_when: a string, a bool, or a list of them
// (all must hold). Each is a Go template expression, with or without the
// braces.
func (p *parser) conditions(v *yaml.Node, field string) []string {
	var nodes []*yaml.Node
	if v.Kind == yaml.SequenceNode {
		nodes = v.Content
	} else {
		nodes = []*yaml.Node{v}
	}
	var out []string
	for _, n := range nodes {
		n = resolveAlias(n)
		if n.Kind != yaml.ScalarNode || yamlpos.IsNull(n) {
			p.errf(n, field, "", "must be a condition (a template expression or a boolean), got %s", yamlpos.KindName(n))
			continue
		}
		out = append(out, n.Value)
		p.checkTemplate(n, field, wrapCond(n.Value))
	}
	return out
}

// wrapCond turns a bare condition ("eq .x 1") into a template.
func wrapCond(s string) string {
	if tmpl.Has(s) {
		return s
	}
	return "{{ " + s + " }}"
}

func (p *parser) serial(v *yaml.Node, field string) []SerialStep {
	nodes := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		nodes = v.Content
		if len(nodes) == 0 {
			p.errf(v, field, "", "must not be an empty list")
		}
	}
	var out []SerialStep
	for _, n := range nodes {
		n = resolveAlias(n)
		s := strings.TrimSpace(n.Value)
		if n.Kind != yaml.ScalarNode || yamlpos.IsNull(n) {
			p.errf(n, field, "", "must be a number, a percentage or a list of them, got %s", yamlpos.KindName(n))
			continue
		}
		step := SerialStep{}
		if strings.HasSuffix(s, "%") {
			step.Percent = true
			s = strings.TrimSpace(strings.TrimSuffix(s, "%"))
		}
		num, err := strconv.Atoi(s)
		switch {
		case err != nil:
			p.errf(n, field, "", "must be a number or a percentage like \"30%%\", got %q", n.Value)
			continue
		case num < 0 || (step.Percent && (num < 1 || num > 100)):
			p.errf(n, field, "", "out of range: %q", n.Value)
			continue
		}
		step.N = num
		out = append(out, step)
	}
	if len(out) == 1 && out[0].N == 0 && !out[0].Percent {
		return nil // serial: 0 is Ansible's "all at once"
	}
	for _, s := range out {
		if s.N == 0 {
			p.errf(v, field, "", "0 is only allowed alone (all hosts at once)")
			break
		}
	}
	return out
}

func (p *parser) percent(v *yaml.Node, field string) (int, bool) {
	s := strings.TrimSuffix(strings.TrimSpace(v.Value), "%")
	f, err := strconv.ParseFloat(s, 64)
	if v.Kind != yaml.ScalarNode || err != nil {
		p.errf(v, field, "", "must be a percentage between 0 and 100, got %s", yamlpos.KindName(v))
		return 0, false
	}
	if f < 0 || f > 100 {
		p.errf(v, field, "", "must be between 0 and 100, got %s", v.Value)
		return 0, false
	}
	return int(f), true
}

func (p *parser) str(v *yaml.Node, field string) (string, bool) {
	if v.Kind != yaml.ScalarNode || yamlpos.IsNull(v) {
		p.errf(v, field, "", "must be a string, got %s", yamlpos.KindName(v))
		return "", false
	}
	return v.Value, true
}

func (p *parser) strList(v *yaml.Node, field string) ([]string, bool) {
	if yamlpos.IsNull(v) {
		return nil, true
	}
	if v.Kind == yaml.ScalarNode {
		return []string{v.Value}, true
	}
	if v.Kind != yaml.SequenceNode {
		p.errf(v, field, "", "must be a string or a list of strings, got %s", yamlpos.KindName(v))
		return nil, false
	}
	var out []string
	for _, e := range v.Content {
		e = resolveAlias(e)
		if e.Kind != yaml.ScalarNode || yamlpos.IsNull(e) {
			p.errf(e, field, "", "must be a string, got %s", yamlpos.KindName(e))
			continue
		}
		out = append(out, e.Value)
	}
	return out, true
}

// tags accepts a list or Ansible's comma-separated string.
func (p *parser) tags(v *yaml.Node, field string) []string {
	list, _ := p.strList(v, field)
	var out []string
	for _, s := range list {
		for _, t := range strings.Split(s, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

func (p *parser) boolean(v *yaml.Node, field string) (bool, bool) {
	if v.Kind == yaml.ScalarNode && !yamlpos.IsNull(v) {
		if b, ok := coerce.Bool(v.Value); ok {
			return b, true
		}
	}
	p.errf(v, field, "", "must be a boolean, got %s", yamlpos.KindName(v))
	return false, false
}

func (p *parser) integer(v *yaml.Node, field string) (int, bool) {
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int" {
		if n, err := strconv.Atoi(v.Value); err == nil {
			return n, true
		}
	}
	p.errf(v, field, "", "must be an integer, got %s", yamlpos.KindName(v))
	return 0, false
}

func (p *parser) number(v *yaml.Node, field string) (float64, bool) {
	if v.Kind == yaml.ScalarNode && (v.ShortTag() == "!!int" || v.ShortTag() == "!!float") {
		if f, err := strconv.ParseFloat(v.Value, 64); err == nil && f >= 0 {
			return f, true
		}
	}
	p.errf(v, field, "", "must be a number of seconds, got %s", yamlpos.KindName(v))
	return 0, false
}

// checkIDs checks ids (unique in the playbook), needs (existing ids of the
// same play, no cycle), notify (an existing handler or listen topic).
func (p *parser) checkIDs() {
	type where struct {
		play *PlaySpec
		task *Task
	}
	ids := map[string]where{}
	for _, play := range p.pb.Plays {
		for _, t := range append(append([]*Task(nil), play.Tasks...), play.Handlers...) {
			if t.ID == "" {
				continue
			}
			m := play.meta[t]
			if prev, dup := ids[t.ID]; dup {
				p.c.addf(m.key.get("id"), m.field+".id", "", "duplicate task id %q (first used at %s)", t.ID, prev.play.meta[prev.task].key.get("id"))
				continue
			}
			ids[t.ID] = where{play, t}
		}
	}
	for _, play := range p.pb.Plays {
		local := map[string]*Task{}
		var idNames []string
		for _, t := range play.Tasks {
			if t.ID != "" {
				if _, dup := local[t.ID]; !dup {
					local[t.ID] = t
					idNames = append(idNames, t.ID)
				}
			}
		}
		sort.Strings(idNames)
		for _, t := range play.Tasks {
			m := play.meta[t]
			for _, need := range t.Needs {
				if _, ok := local[need]; ok {
					continue
				}
				if w, ok := ids[need]; ok && w.play != play {
					p.c.addf(m.key.get("needs"), m.field+".needs", "", "task %q is in play %d: needs only names tasks of the same play (plays already run in order)", need, w.play.Index)
					continue
				}
				p.c.addf(m.key.get("needs"), m.field+".needs", modules.Closest(need, idNames), "no task with id %q in this play", need)
			}
		}
		p.checkCycle(play, local)
		p.checkNotify(play)
	}
}

// checkCycle finds a cycle among a play's tasks: needs edges, plus the
// implicit edge from every earlier task to a task without needs.
func (p *parser) checkCycle(play *PlaySpec, byID map[string]*Task) {
	// Only a needs edge can point backwards: without any, the tasks run
	// in order and there is no cycle to look for.
	if !slices.ContainsFunc(play.Tasks, func(t *Task) bool { return t.Needs != nil }) {
		return
	}
	label := func(t *Task) string {
		if t.ID != "" {
			return t.ID
		}
		return fmt.Sprintf("t%d", t.Index)
	}
	// A task without needs runs after every task before it. Spelled as
	// edges that is n^2/2 of them (20,000 tasks: 200 million); a chain of
	// "everything before task i" nodes keeps the same reachability with
	// 2n, so the search stays linear.
	g := dag.New[*Task]()
	task := func(i int) string { return "t" + strconv.Itoa(i) }
	before := func(i int) string { return "b" + strconv.Itoa(i) }
	for i, t := range play.Tasks {
		_ = g.Add(task(i), t)
	}
	for i := 1; i < len(play.Tasks); i++ {
		_ = g.Add(before(i), nil)
		_ = g.Connect(task(i-1), before(i))
		if i > 1 {
			_ = g.Connect(before(i-1), before(i))
		}
	}
	index := map[*Task]int{}
	for i, t := range play.Tasks {
		index[t] = i
	}
	for i, t := range play.Tasks {
		if t.Needs == nil {
			if i > 0 {
				_ = g.Connect(before(i), task(i))
			}
			continue
		}
		for _, n := range t.Needs {
			if d, ok := byID[n]; ok {
				_ = g.Connect(task(index[d]), task(i))
			}
		}
	}
	cycle := g.Cycle()
	if cycle == nil {
		return
	}
	// In run order, without the chain nodes.
	var found []*Task
	for _, id := range cycle {
		if t, _ := g.Node(id); t != nil {
			found = append(found, t)
		}
	}
	var names []string
	for _, t := range found {
		names = append(names, label(t))
	}
	names = append(names, names[0])
	// Point at the first task of the cycle, in play order, that has needs:
	// that is where the cycle was written.
	var first *Task
	for _, t := range play.Tasks {
		if t.Needs != nil && containsTask(found, t) {
			first = t
			break
		}
	}
	m := play.meta[first]
	p.c.addf(m.key.get("needs"), m.field+".needs", "", "dependency cycle: %s", strings.Join(names, " -> "))
}

func (p *parser) checkNotify(play *PlaySpec) {
	topics := map[string][]string{} // name or listen topic -> handler names
	var names []string
	for _, h := range play.Handlers {
		topics[h.Name] = append(topics[h.Name], h.Name)
		names = append(names, h.Name)
		for _, l := range play.meta[h].listen {
			topics[l] = append(topics[l], h.Name)
			names = append(names, l)
		}
	}
	for _, t := range append(append([]*Task(nil), play.Tasks...), play.Handlers...) {
		m := play.meta[t]
		var resolved []string
		for _, n := range t.Notify {
			hs, ok := topics[n]
			if !ok {
				p.c.addf(m.key.get("notify"), m.field+".notify", modules.Closest(n, names), "no handler named %q in this play", n)
				continue
			}
			for _, h := range hs {
				if !contains(resolved, h) {
					resolved = append(resolved, h)
				}
			}
		}
		t.Notify = resolved
	}
}

func containsTask(ts []*Task, t *Task) bool {
	for _, e := range ts {
		if e == t {
			return true
		}
	}
	return false
}

func contains(xs []string, x string) bool {
	for _, e := range xs {
		if e == x {
			return true
		}
	}
	return false
}
