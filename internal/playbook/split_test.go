package playbook

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// cutSmall makes parseSplit cut every list of two items or more, one item
// per piece.
func cutSmall(t testing.TB) {
	lines, pieces := splitMinLines, splitPieces
	splitMinLines, splitPieces = 1, 1<<20
	t.Cleanup(func() { splitMinLines, splitPieces = lines, pieces })
}

// sameTree reports where two parses differ, comments aside.
func sameTree(a, b *yaml.Node, at string) error {
	if a.Kind != b.Kind || a.Tag != b.Tag || a.Value != b.Value || a.Anchor != b.Anchor ||
		a.Style != b.Style || a.Line != b.Line || a.Column != b.Column || len(a.Content) != len(b.Content) {
		return fmt.Errorf("%s: %d:%d kind %v tag %q value %q anchor %q style %v, %d children; want %d:%d kind %v tag %q value %q anchor %q style %v, %d children",
			at, a.Line, a.Column, a.Kind, a.Tag, a.Value, a.Anchor, a.Style, len(a.Content),
			b.Line, b.Column, b.Kind, b.Tag, b.Value, b.Anchor, b.Style, len(b.Content))
	}
	if (a.Alias == nil) != (b.Alias == nil) || a.Alias != nil && (a.Alias.Line != b.Alias.Line || a.Alias.Column != b.Alias.Column) {
		return fmt.Errorf("%s: alias targets differ", at)
	}
	for i := range a.Content {
		if err := sameTree(a.Content[i], b.Content[i], fmt.Sprintf("%s/%d", at, i)); err != nil {
			return err
		}
	}
	return nil
}

// cutParse is what parsing the file cut amounts to: the skeleton with
// every piece's items in place; nil when the file was not cut, or a
// piece did not parse.
func cutParse(data []byte) *yaml.Node {
	cf := cutYAML(data)
	if cf == nil {
		return nil
	}
	for list, pieces := range cf.pieces {
		for _, p := range pieces {
			items, ok := p.parse()
			if !ok {
				return nil
			}
			list.Content = append(list.Content, items...)
		}
	}
	return cf.root
}

// checkSplit: when the cut parse answers, its tree is yaml.v3's for the
// whole file, and the playbook read from it (tasks, where each part was
// written, problems) is the one read whole; when the whole file is not
// YAML, the cut parse does not answer. It reports whether the file was
// cut.
func checkSplit(t *testing.T, data []byte) bool {
	t.Helper()
	got := cutParse(data)
	var want yaml.Node
	if err := yaml.Unmarshal(data, &want); err != nil {
		if got != nil {
			t.Fatalf("the whole file fails (%v), the pieces parsed", err)
		}
		return false
	}
	if got == nil {
		return false
	}
	if err := sameTree(got, &want, "doc"); err != nil {
		t.Fatalf("cut parse differs from whole parse: %v\n%s", err, data)
	}
	path := filepath.Join(t.TempDir(), "play.yml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// A list cut where no play's tasks are is read whole (wrong), as is
	// the rest; either way the result is the whole reading.
	_, wrong, _ := parseFile(path, true)
	cut, cutErr := parse(path)
	whole, _, wholeErr := parseFile(path, false)
	if fmt.Sprint(cutErr) != fmt.Sprint(wholeErr) {
		t.Fatalf("cut: %v\nwhole: %v", cutErr, wholeErr)
	}
	if err := samePlaybook(cut, whole); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	return !wrong
}

// samePlaybook compares two readings of one file; tasks' metadata is
// keyed by the tasks' pointers, so it is compared in task order.
func samePlaybook(a, b *Playbook) error {
	if (a == nil) != (b == nil) {
		return fmt.Errorf("cut playbook %v, whole %v", a, b)
	}
	if a == nil {
		return nil
	}
	if len(a.Plays) != len(b.Plays) {
		return fmt.Errorf("%d plays cut, %d whole", len(a.Plays), len(b.Plays))
	}
	for i := range a.Plays {
		pa, pb := *a.Plays[i], *b.Plays[i]
		var ma, mb []*taskMeta
		for _, t := range append(append([]*Task(nil), pa.Tasks...), pa.Handlers...) {
			ma = append(ma, pa.meta[t])
		}
		for _, t := range append(append([]*Task(nil), pb.Tasks...), pb.Handlers...) {
			mb = append(mb, pb.meta[t])
		}
		pa.meta, pb.meta = nil, nil
		if !reflect.DeepEqual(pa, pb) {
			return fmt.Errorf("play %d differs:\ncut   %+v\nwhole %+v", i+1, pa, pb)
		}
		if !reflect.DeepEqual(ma, mb) {
			for j := range ma {
				if !reflect.DeepEqual(ma[j], mb[j]) {
					return fmt.Errorf("play %d: where the parts of task %d were written differs:\ncut   %+v\nwhole %+v", i+1, j+1, ma[j], mb[j])
				}
			}
		}
	}
	return nil
}

func TestParseSplitMatchesWhole(t *testing.T) {
	cutSmall(t)
	for _, tc := range []struct {
		name string
		src  string
		cut  bool
	}{
		{"two plays, tasks and handlers", "- hosts: all\n  tasks:\n    - name: a\n      command: echo a\n\n    # a comment\n    - name: b\n      copy: {dest: /x, content: \"y\"}\n  handlers:\n    - name: h1\n      command: echo\n    - name: h2\n      command: echo\n- hosts: b\n  tasks:\n  - name: c\n    command: c\n  - name: d\n    command: d\n", true},
		{"key on the play's item line", "- tasks:\n    - command: a\n    - command: b\n  hosts: all\n", true},
		{"comment after the key, CRLF", "- hosts: all\r\n  tasks: # the work\r\n    - command: a\r\n    - command: b\r\n", true},
		{"comment at column 0 inside the list", "- hosts: all\n  tasks:\n    - command: a\n# here\n    - command: b\n", true},
		{"block scalar holding a task list", "- hosts: all\n  tasks:\n    - copy:\n        content: |\n          tasks:\n            - one\n            - two\n    - command: b\n", true},
		{"multi-line quoted scalar crossing an item line", "- hosts: all\n  tasks:\n    - name: \"a\n    - b\"\n      command: x\n    - command: c\n", false},
		{"multi-line plain scalar", "- hosts: all\n  tasks:\n    - name: a\n        b\n      command: x\n    - command: c\n", true},
		{"flow mapping across lines", "- hosts: all\n  tasks:\n    - args: {a: 1,\n    - b}\n      command: x\n    - command: c\n", false},
		{"anchor used in a later item", "- hosts: all\n  tasks:\n    - command: &c echo\n    - command: *c\n", false},
		{"anchor used in its own item", "- hosts: all\n  tasks:\n    - command: &c echo\n      name: *c\n    - command: x\n", true},
		{"second document", "- hosts: all\n  tasks:\n    - command: a\n---\n- hosts: b\n  tasks:\n    - command: a\n    - command: b\n", false},
		{"list ends in a key at its column", "- hosts: all\n  tasks:\n  - command: a\n  - command: b\n  handlers:\n  - command: c\n  - command: d\n", true},
		{"tab in an item", "- hosts: all\n  tasks:\n    - command: a\n\t- command: b\n    - command: c\n", false},
		{"item marker on its own line", "- hosts: all\n  tasks:\n    -\n      command: a\n    - command: b\n", false},
		{"empty item", "- hosts: all\n  tasks:\n    - command: a\n    -\n    - command: b\n", true},
		{"no final line break", "- hosts: all\n  tasks:\n    - command: a\n    - command: b", true},
		{"tasks is not a list", "- hosts: all\n  tasks: []\n  vars:\n    - a\n    - b\n", false},
		{"broken item", "- hosts: all\n  tasks:\n    - command: a\n    - command: [b\n", false},
		{"tasks in a nested mapping", "- hosts: all\n  vars:\n    tasks:\n      - a\n      - b\n", false},
		{"tasks in a nested mapping and in the play", "- hosts: all\n  vars:\n    tasks:\n      - a\n      - b\n  tasks:\n    - command: a\n    - command: b\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkSplit(t, []byte(tc.src)); got != tc.cut {
				t.Errorf("cut = %v, want %v", got, tc.cut)
			}
		})
	}
}

// The playbooks we ship, the test playbooks and a large generated one
// parse the same cut or whole.
func TestParseSplitShippedPlaybooks(t *testing.T) {
	cutSmall(t)
	files, _ := filepath.Glob("../../playbooks/*.yml")
	more, _ := filepath.Glob("testdata/*.yml")
	files = append(files, more...)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(f), func(t *testing.T) { checkSplit(t, data) })
	}
	var b strings.Builder
	b.WriteString("- name: big\n  hosts: all\n  tasks:\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "    - name: file %d\n      copy:\n        dest: /tmp/f%d\n        content: |\n          line %d\n          - not an item\n", i, i, i)
	}
	splitMinLines, splitPieces = 2000, 0
	if !checkSplit(t, []byte(b.String())) {
		t.Fatal("a 3,000-task playbook was not cut")
	}
}

// FuzzParseSplit: whatever the text, a cut parse is the whole parse, and
// text that is not YAML is never accepted in pieces.
func FuzzParseSplit(f *testing.F) {
	for _, pat := range []string{"../../playbooks/*.yml", "testdata/*.yml"} {
		seeds, _ := filepath.Glob(pat)
		for _, s := range seeds {
			if b, err := os.ReadFile(s); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("- hosts: all\n  tasks:\n    - name: \"a\n    - b\"\n    - command: c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cutSmall(t)
		checkSplit(t, data)
	})
}

// Random task lists built from the shapes that make cutting by lines
// hard: block scalars holding item-like lines, quoted and plain scalars
// over several lines, flow collections over several lines, anchors and
// aliases within and across items, comments anywhere, item markers alone
// on their line. Every cut parse must be the whole parse.
func TestParseSplitRandomLists(t *testing.T) {
	cutSmall(t)
	parts := []string{
		"- command: echo %d\n",
		"- name: t%d\n  copy:\n    dest: /x\n    content: |\n      - a\n  - b\n",
		"- name: \"t%d\n- not an item\"\n",
		"- name: 't%d\n  - still the name'\n",
		"- name: t%d\n    continued\n  command: x\n",
		"- args: {a: %d,\n- b: c}\n",
		"- args: [%d,\n  2]\n",
		"- name: &a%d anchored\n  command: *a%d\n",
		"- command: *a%d\n",
		"# comment %d\n",
		"-\n  command: %d\n",
		"- - nested %d\n  - list\n",
		"-   name: wide %d\n    command: x\n",
		"\n",
		"- >\n  folded %d\n- x\n",
		"- key: |2\n    two %d\n",
		"- \"%d\"\n",
		"-\n",
		"- ? complex %d\n  : value\n",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cut, valid := 0, 0
	for i := range 3000 {
		var b strings.Builder
		indent := strings.Repeat(" ", rng.IntN(3))
		b.WriteString("-" + indent + " hosts: all\n" + indent + "  tasks:\n")
		itemIndent := indent + strings.Repeat(" ", 3+rng.IntN(3))
		if rng.IntN(4) == 0 {
			itemIndent = indent + "  " // an indentless list
		}
		for range 2 + rng.IntN(6) {
			part := parts[0] // mostly plain tasks, so most lists are YAML
			if rng.IntN(3) == 0 {
				part = parts[rng.IntN(len(parts))]
			}
			text := strings.ReplaceAll(part, "%d", fmt.Sprint(rng.IntN(3)))
			for _, l := range strings.SplitAfter(text, "\n") {
				if l != "" && l != "\n" && !strings.HasPrefix(l, "#") {
					b.WriteString(itemIndent)
				}
				b.WriteString(l)
			}
		}
		if rng.IntN(2) == 0 {
			b.WriteString(indent + "  handlers:\n" + itemIndent + "- command: h\n" + itemIndent + "- command: i\n")
		}
		var whole yaml.Node
		if yaml.Unmarshal([]byte(b.String()), &whole) == nil {
			valid++
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if checkSplit(t, []byte(b.String())) {
				cut++
			}
		})
	}
	t.Logf("of 3000 random lists, %d are YAML and %d of those were cut", valid, cut)
	if cut < valid/2 {
		t.Errorf("only %d of %d lists were cut: the test no longer tests the cut", cut, valid)
	}
}

// TestYAMLReadable: yamlReadable refuses exactly the characters yaml.v3's
// reader refuses (yaml.v3, reading each in a comment, is the oracle). A
// fuzzed file ending in "\x10" was cut, and its pieces parsed, although
// the whole file is not YAML.
func TestYAMLReadable(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       bool
	}{
		{"plain", "a", true},
		{"tab", "\t", true},
		{"carriage return", "\r", true},
		{"data link escape, as fuzzed", "\x10", false},
		{"NUL", "\x00", false},
		{"escape", "\x1b", false},
		{"delete", "\x7f", false},
		{"next line", "\u0085", true},
		{"C1 control", "\u0090", false},
		{"no-break space", "\u00a0", true},
		{"byte order mark", "\ufeff", true},
		{"replacement character", "\ufffd", true},
		{"a noncharacter", "\ufffe", false},
		{"beyond the BMP", "\U0001F600", true},
		{"not UTF-8", "\xff", false},
		{"a lone continuation byte", "\x80", false},
	} {
		doc := []byte("a: 1\n# " + tc.text + "\n")
		var n yaml.Node
		if oracle := yaml.Unmarshal(doc, &n) == nil; oracle != tc.want {
			t.Errorf("%s: yaml.v3 reads %q: %v, the table says %v", tc.name, tc.text, oracle, tc.want)
		}
		if got := yamlReadable(doc); got != tc.want {
			t.Errorf("%s: yamlReadable(%q) = %v, want %v", tc.name, doc, got, tc.want)
		}
	}
}
