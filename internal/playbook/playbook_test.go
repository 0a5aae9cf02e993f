package playbook

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/dag"
	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/modules"

	"gopkg.in/yaml.v3"
)

func testInventory(t *testing.T) *inventory.Inventory {
	t.Helper()
	inv, err := inventory.Load("testdata/inventory.yml")
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// chunkings runs f with tasks read and built in chunks as large as
// playbooks of this size get (one chunk), then in chunks of one task: the
// result must not depend on it.
func chunkings(t *testing.T, f func(t *testing.T)) {
	defer func(was int) { minChunk = was }(minChunk)
	for _, size := range []int{minChunk, 1} {
		minChunk = size
		t.Run(fmt.Sprintf("chunk%d", size), f)
	}
}

// TestGraphGolden compiles each testdata/graph/*.yml and compares the
// graph listing with its golden file.
func TestGraphGolden(t *testing.T) { chunkings(t, testGraphGolden) }

func testGraphGolden(t *testing.T) {
	inv := testInventory(t)
	files, _ := filepath.Glob("testdata/graph/*.yml")
	if len(files) == 0 {
		t.Fatal("no graph testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f, inv, Options{})
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, strings.TrimSuffix(f, ".yml")+".golden", c.Text())
		})
	}
}

// TestErrorGolden compiles each bad playbook in testdata/errors and
// compares the error text with its golden file.
func TestErrorGolden(t *testing.T) { chunkings(t, testErrorGolden) }

func testErrorGolden(t *testing.T) {
	inv := testInventory(t)
	files, _ := filepath.Glob("testdata/errors/*.yml")
	if len(files) < 15 {
		t.Fatalf("want at least 15 kinds of bad playbooks, have %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f, inv, Options{ExtraVars: map[string]any{"from_cli": "x"}})
			if err == nil {
				t.Fatal("compiled without error")
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Errorf("error %T is not a *playbook.Error", err)
			}
			golden.Check(t, strings.TrimSuffix(f, ".yml")+".golden", err.Error()+"\n")
		})
	}
}

// edges returns "from>to" for every edge, sorted.
func edges(g *dag.Graph[*Node]) []string {
	var out []string
	for _, id := range g.IDs() {
		for _, d := range g.Deps(id) {
			out = append(out, d+">"+id)
		}
	}
	sort.Strings(out)
	return out
}

func hasEdge(g *dag.Graph[*Node], from, to string) bool {
	return contains(g.Deps(to), from)
}

// reaches reports whether to transitively depends on from.
func reaches(g *dag.Graph[*Node], from, to string) bool {
	seen := map[string]bool{}
	var walk func(id string) bool
	walk = func(id string) bool {
		if id == from {
			return true
		}
		if seen[id] {
			return false
		}
		seen[id] = true
		for _, d := range g.Deps(id) {
			if walk(d) {
				return true
			}
		}
		return false
	}
	return walk(to)
}

func TestGraphEdges(t *testing.T) {
	inv := testInventory(t)
	tests := []struct {
		file        string
		edges       []string // must exist
		noEdges     []string // must not exist
		ordered     []string // from>to must hold transitively
		independent []string // neither reaches the other
	}{
		{file: "order.yml",
			edges:       []string{"p1.t1.etcd1>p1.t2.etcd1", "p1.t2.etcd2>p1.t3.etcd2", "p1.t3.etcd1>p2.t1.bastion", "p1.t3.etcd2>p2.t1.bastion"},
			noEdges:     []string{"p1.t1.etcd1>p1.t2.etcd2"},
			independent: []string{"p1.t1.etcd1>p1.t3.etcd2"}},
		{file: "needs.yml",
			edges:       []string{"p1.t1.etcd1>p1.t3.etcd1", "p1.t2.etcd1>p1.t3.etcd1", "p1.t1.etcd1>p1.t4.etcd1", "p1.t3.etcd1>p1.t5.etcd1", "p1.t4.etcd1>p1.t5.etcd1"},
			noEdges:     []string{"p1.t1.etcd1>p1.t2.etcd1", "p1.t3.etcd1>p1.t4.etcd1"},
			independent: []string{"p1.t1.etcd1>p1.t2.etcd1", "p1.t3.etcd1>p1.t4.etcd1", "p1.t1.etcd1>p1.t1.etcd2"}},
		{file: "serial.yml",
			ordered:     []string{"p1.t2.etcd1>p1.t1.etcd2", "p1.t2.etcd3>p1.t1.etcd4", "p1.t2.etcd2>p1.t1.etcd5"},
			independent: []string{"p1.t1.etcd2>p1.t1.etcd3", "p1.t2.etcd4>p1.t2.etcd5"}},
		{file: "run_once.yml",
			edges: []string{"p1.t1.etcd1>p1.t2.once", "p1.t1.etcd3>p1.t2.once", "p1.t2.once>p1.t3.etcd2",
				"p1.t1.etcd1>p1.t4.once", "p1.t1.etcd2>p1.t4.once", "p1.t4.once>p1.t5.etcd1", "p1.t3.etcd1>p1.t5.etcd1"},
			independent: []string{"p1.t2.once>p1.t4.once"}},
		{file: "partition.yml",
			edges:   []string{"p1.t1.etcd1>p1.t2.once", "p1.t1.etcd4>p1.t2.once.c2", "p1.h1.once>p2.t1.bastion", "p1.h1.once.c2>p2.t1.bastion"},
			noEdges: []string{"p1.t1.etcd4>p1.t2.once", "p1.t1.etcd1>p1.t2.once.c2"},
			independent: []string{"p1.t2.once>p1.t2.once.c2", "p1.h1.once>p1.h1.once.c2",
				"p1.h1.once>p1.t1.etcd4", "p1.h1.once.c2>p1.t2.once"}},
		{file: "handlers.yml",
			edges:       []string{"p1.t2.etcd1>p1.h1.etcd1", "p1.h1.etcd1>p1.h2.etcd1", "p1.h2.etcd1>p1.h3.once", "p1.h3.once>p1.t1.etcd2"},
			noEdges:     []string{"p1.t1.etcd1>p1.h1.etcd1"},
			ordered:     []string{"p1.h2.etcd1>p1.h1.etcd2"},
			independent: nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := Load("testdata/graph/"+tt.file, inv, Options{})
			if err != nil {
				t.Fatal(err)
			}
			g := c.Graph
			for _, e := range tt.edges {
				from, to, _ := strings.Cut(e, ">")
				if !hasEdge(g, from, to) {
					t.Errorf("missing edge %s (have %v)", e, edges(g))
				}
			}
			for _, e := range tt.noEdges {
				from, to, _ := strings.Cut(e, ">")
				if hasEdge(g, from, to) {
					t.Errorf("unexpected edge %s", e)
				}
			}
			for _, e := range tt.ordered {
				from, to, _ := strings.Cut(e, ">")
				if !reaches(g, from, to) {
					t.Errorf("%s does not precede %s", from, to)
				}
			}
			for _, e := range tt.independent {
				a, b, _ := strings.Cut(e, ">")
				if reaches(g, a, b) || reaches(g, b, a) {
					t.Errorf("%s and %s should be independent", a, b)
				}
			}
			if g.Cycle() != nil {
				t.Errorf("cycle %v", g.Cycle())
			}
		})
	}
}

// TestPartitionPlayHosts: a partition is a play of its own to the
// templates and modules (ansible_play_hosts, the run_once node's hosts) and
// to the runner (Node.Part indexes Play.Parts).
func TestPartitionPlayHosts(t *testing.T) {
	c, err := Load("testdata/graph/partition.yml", testInventory(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Partition{{Key: "a", Hosts: []string{"etcd1", "etcd2", "etcd3"}}, {Key: "b", Hosts: []string{"etcd4", "etcd5"}}}
	if got := c.Plays[0].Parts; !reflect.DeepEqual(got, want) {
		t.Errorf("Parts = %+v, want %+v", got, want)
	}
	for id, w := range map[string]struct {
		part  int
		hosts string
	}{"p1.t2.once": {0, "etcd1,etcd2,etcd3"}, "p1.t2.once.c2": {1, "etcd4,etcd5"}} {
		n, ok := c.Graph.Node(id)
		if !ok {
			t.Fatalf("no node %s", id)
		}
		if n.Part != w.part || strings.Join(n.Hosts, ",") != w.hosts {
			t.Errorf("%s: part %d hosts %v, want %d %s", id, n.Part, n.Hosts, w.part, w.hosts)
		}
		if cmd := n.Args["cmd"]; cmd != "echo "+w.hosts {
			t.Errorf("%s: cmd %q, want ansible_play_hosts of its partition (%s)", id, cmd, w.hosts)
		}
	}
	if c.Plays[1].Parts != nil {
		t.Errorf("play 2 has no partition_by but Parts = %+v", c.Plays[1].Parts)
	}
}

// TestNodeValueMatchesDecode: the parser's fast path gives what yaml.v3's
// Decode (normalised) gives, for every shape a playbook value takes.
func TestNodeValueMatchesDecode(t *testing.T) {
	for _, src := range []string{
		`plain`, `"quoted"`, `'0755'`, `0755`, `0o755`, `42`, `-1`, `1.5`, `true`, `yes`, `no`, `~`, `null`, ``,
		`2024-01-02`, `!!str 12`, `!!binary aGk=`, `"{{ x }}"`, `a: b`, `{a: 1, b: [x, 2, true]}`,
		`[a, {b: c}, [d]]`, "x: &a {k: v}\ny: *a", "base: &b {k: v}\nm: {<<: *b, j: w}", `{1: a}`, `{a: 1, a: 2}`,
		"- !!set {a, b}", "|\n  text\n", `[]`, `{}`,
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		n := doc.Content[0]
		got, gotErr := nodeValue(n)
		want, wantErr := decodeNode(n)
		if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: nodeValue = %#v, %v; Decode = %#v, %v", src, got, gotErr, want, wantErr)
		}
	}
}

func TestSerialBatches(t *testing.T) {
	tests := []struct {
		steps []SerialStep
		hosts int
		want  []int
	}{
		{nil, 5, nil},
		{[]SerialStep{{N: 1}}, 3, []int{1, 1, 1}},
		{[]SerialStep{{N: 2}}, 5, []int{2, 2, 1}},
		{[]SerialStep{{N: 10}}, 3, []int{3}},
		{[]SerialStep{{N: 30, Percent: true}}, 10, []int{3, 3, 3, 1}},
		{[]SerialStep{{N: 10, Percent: true}}, 3, []int{1, 1, 1}},
		{[]SerialStep{{N: 1}, {N: 50, Percent: true}}, 5, []int{1, 2, 2}},
		{[]SerialStep{{N: 1}, {N: 2}, {N: 100, Percent: true}}, 6, []int{1, 2, 3}},
		{[]SerialStep{{N: 2}}, 0, nil},
	}
	for _, tt := range tests {
		if got := batchSizes(tt.steps, tt.hosts); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("batchSizes(%v, %d) = %v, want %v", tt.steps, tt.hosts, got, tt.want)
		}
	}
}

func TestTagsAndWhen(t *testing.T) {
	inv := testInventory(t)
	skipped := func(c *Compiled) []string {
		var out []string
		for _, id := range c.Graph.IDs() {
			if n, _ := c.Graph.Node(id); n.Skip {
				out = append(out, id)
			}
		}
		return out
	}
	all := func(task string) []string {
		return []string{"p1." + task + ".etcd1", "p1." + task + ".etcd2", "p1." + task + ".etcd3"}
	}
	cat := func(xs ...[]string) []string {
		var out []string
		for _, x := range xs {
			out = append(out, x...)
		}
		sort.Strings(out)
		return out
	}
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"no tags", Options{}, cat([]string{"p1.t1.etcd2", "p1.t1.etcd3", "p1.t5.etcd3"}, all("t3"))},
		{"--tags config", Options{Tags: []string{"config"}},
			cat(all("t1"), all("t3"), all("t5"), all("t6"), all("t7"))},
		{"--tags never", Options{Tags: []string{"never"}},
			cat(all("t1"), all("t2"), all("t5"), all("t6"), all("t7"))},
		{"--skip-tags config,always", Options{SkipTags: []string{"config", "always"}},
			cat([]string{"p1.t1.etcd2", "p1.t1.etcd3", "p1.t5.etcd3"}, all("t2"), all("t3"), all("t4"))},
		{"-e first", Options{ExtraVars: map[string]any{"first": "etcd2"}},
			cat([]string{"p1.t1.etcd1", "p1.t1.etcd3", "p1.t5.etcd3"}, all("t3"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load("testdata/graph/tags_when.yml", inv, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := skipped(c)
			sort.Strings(got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("skipped %v\nwant    %v", got, tt.want)
			}
			n, _ := c.Graph.Node("p1.t7.etcd1")
			if !n.Task.WhenAtRuntime && !n.Skip {
				t.Error("a when on a registered result must be left to the runner")
			}
		})
	}
	c, _ := Load("testdata/graph/tags_when.yml", inv, Options{})
	n, _ := c.Graph.Node("p1.t1.etcd2")
	if n.SkipReason != "when: eq inventory_hostname first is false" {
		t.Errorf("skip reason %q", n.SkipReason)
	}
}

func TestVarsAndArgs(t *testing.T) {
	inv := testInventory(t)
	c, err := Load("testdata/vars.yml", inv, Options{ExtraVars: map[string]any{"override": "from -e"}, Limit: "etcd1,etcd2,bastion"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Plays[0].Hosts; !reflect.DeepEqual(got, []string{"etcd1", "etcd2"}) {
		t.Errorf("limited hosts = %v", got)
	}
	args := func(id string) modules.Args {
		n, ok := c.Graph.Node(id)
		if !ok {
			t.Fatalf("no node %s in %v", id, c.Graph.IDs())
		}
		return n.Args
	}
	tests := []struct {
		id, arg string
		want    any
	}{
		// inventory < play vars < vars_files < -e, templates rendered per host
		{"p1.t1.etcd1", "content", "v3.6.16 one play-var tok-1 from -e"},
		{"p1.t1.etcd2", "content", "v3.6.16 two play-var tok-1 from -e"},
		{"p1.t1.etcd2", "dest", "/etc/etcd/etcd2.conf"},
		// a whole template keeps its type
		{"p1.t2.etcd1", "endpoints", []any{"https://127.0.1.1:2380", "https://127.0.1.2:2380", "https://127.0.1.3:2380", "https://127.0.1.4:2380", "https://127.0.1.5:2380"}},
		{"p1.t2.etcd1", "port", 2379},
		// free-form command line, with Ansible's creates= pulled out
		{"p1.t3.etcd1", "cmd", "etcdctl member list"},
		{"p1.t3.etcd1", "creates", "/var/lib/etcd/member"},
		{"p1.t4.etcd2", "cmd", `echo "a  b" 'c'`},
		// Resolve ran: src became rendered content
		{"p1.t5.etcd2", "content", "hello from files/\n"},
		{"p1.t6.etcd1", "path", "/srv/one"},
		{"p1.t6.etcd1", "mode", "0750"},
	}
	for _, tt := range tests {
		if got := args(tt.id)[tt.arg]; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %s = %#v, want %#v", tt.id, tt.arg, got, tt.want)
		}
	}
	if _, ok := args("p1.t5.etcd2")["src"]; ok {
		t.Error("src should have been resolved away")
	}
	n, _ := c.Graph.Node("p1.t1.etcd1")
	if n.Vars["inventory_hostname"] != "etcd1" || n.Vars["peer_url"] != "https://127.0.1.1:2380" {
		t.Errorf("facts/vars wrong: %v %v", n.Vars["inventory_hostname"], n.Vars["peer_url"])
	}
	if b := n.Task.Become; b == nil || !*b {
		t.Error("play become not inherited by the task")
	}
}

func TestLimitMatchesNothing(t *testing.T) {
	_, err := Load("testdata/graph/order.yml", testInventory(t), Options{Limit: "nosuch"})
	if err == nil || err.Error() != `--limit: pattern "nosuch" matches no host of testdata/inventory.yml` {
		t.Errorf("got %v", err)
	}
	// A limit that leaves a play without hosts just empties that play.
	c, err := Load("testdata/graph/order.yml", testInventory(t), Options{Limit: "bastion"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Graph.IDs(); !reflect.DeepEqual(got, []string{"p2.t1.bastion"}) {
		t.Errorf("nodes %v", got)
	}
}

func TestEmptyKnownGroupIsNotAnError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pb.yml")
	os.WriteFile(p, []byte("- hosts: etcd_new\n  tasks:\n    - ping:\n"), 0o644)
	c, err := Load(p, testInventory(t), Options{})
	if err != nil || c.Graph.Len() != 0 {
		t.Errorf("err %v, nodes %d", err, c.Graph.Len())
	}
}

func TestDot(t *testing.T) {
	c, err := Load("testdata/graph/handlers.yml", testInventory(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/graph/handlers.dot", c.Dot())
}

func TestFreeForm(t *testing.T) {
	tests := []struct {
		module, in string
		want       map[string]any
		err        bool
	}{
		{"command", "echo hi", map[string]any{"cmd": "echo hi"}, false},
		{"command", "creates=/x chdir=/tmp make install", map[string]any{"cmd": "make install", "creates": "/x", "chdir": "/tmp"}, false},
		{"file", "path=/x state=directory", map[string]any{"path": "/x", "state": "directory"}, false},
		{"file", "path=/x directory", nil, true},
		{"command", "echo 'open", nil, true},
	}
	for _, tt := range tests {
		got, err := freeForm(tt.module, tt.in)
		if (err != nil) != tt.err || (!tt.err && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("freeForm(%s, %q) = %v, %v", tt.module, tt.in, got, err)
		}
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"ansible.builtin.file": "file", "ansible.builtin.systemd_service": "systemd",
		"systemd_service": "systemd", "ansible.legacy.command": "command", "shell": "shell",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%s) = %s", in, got)
		}
	}
}

// TestParseWithoutInventory: validate can run without an inventory, and
// finds what needs none.
func TestParseWithoutInventory(t *testing.T) {
	needsNoInventory := []string{"cycle", "duplicate_id", "missing_needs", "unknown_module", "unknown_task_key", "bad_serial", "template_syntax"}
	for _, k := range needsNoInventory {
		if _, err := Parse("testdata/errors/" + k + ".yml"); err == nil {
			t.Errorf("Parse(%s) found nothing", k)
		}
	}
	// These only show against an inventory and vars.
	for _, k := range []string{"undefined_variable", "hosts_no_match", "unknown_argument"} {
		if _, err := Parse("testdata/errors/" + k + ".yml"); err != nil {
			t.Errorf("Parse(%s): %v", k, err)
		}
	}
	pb, err := Parse("testdata/graph/run_once.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(pb.Plays) != 1 || len(pb.Plays[0].Tasks) != 5 || pb.Plays[0].Hosts != "etcd1:etcd2:etcd3" {
		t.Errorf("parsed %+v", pb.Plays[0])
	}
	if _, err := Parse("testdata/nosuch.yml"); err == nil || err.Error() != "testdata/nosuch.yml: no such file" {
		t.Errorf("missing file: %v", err)
	}
}

func TestUntilDefaults(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pb.yml")
	os.WriteFile(p, []byte("- hosts: etcd1\n  tasks:\n    - command: etcdctl endpoint health\n      until: eq .result.status \"ok\"\n    - command: x\n      until: true\n      retries: 10\n      delay: 0.5\n"), 0o644)
	pb, err := Parse(p)
	if err != nil {
		t.Fatal(err)
	}
	a, b := pb.Plays[0].Tasks[0], pb.Plays[0].Tasks[1]
	if a.Retries != 3 || a.Delay != 5 || b.Retries != 10 || b.Delay != 0.5 {
		t.Errorf("retries/delay: %d %v, %d %v", a.Retries, a.Delay, b.Retries, b.Delay)
	}
}

// import_playbook brings in another file's plays in place, numbered on
// from the importer's; its problems are reported at its own lines; a
// cycle and play keys beside the import are errors.
func TestImportPlaybook(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string { return writeFile(t, dir, name, body) }
	write("inner.yml", "- hosts: etcd1\n  tasks:\n    - ping:\n")
	outer := write("outer.yml", "- hosts: etcd2\n  tasks:\n    - ping:\n- import_playbook: inner.yml\n")
	pb, err := Parse(outer)
	if err != nil {
		t.Fatal(err)
	}
	if len(pb.Plays) != 2 || pb.Plays[1].Hosts != "etcd1" || pb.Plays[1].Index != 2 {
		t.Fatalf("plays %+v", pb.Plays)
	}
	write("bad.yml", "- hosts: etcd1\n  tasks:\n    - no_such_module:\n")
	for _, tc := range []struct{ body, want string }{
		{"- import_playbook: bad.yml\n", "bad.yml:3:"},
		{"- import_playbook: loop.yml\n", "imports itself"},
		{"- import_playbook: inner.yml\n  hosts: etcd1\n", `takes no "hosts"`},
		{"- import_playbook: missing.yml\n", "missing.yml: no such file"},
	} {
		p := write("loop.yml", tc.body)
		if _, err := Parse(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
}

// writeFile writes body to dir/name and returns that path.
func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
