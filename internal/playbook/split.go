package playbook

import (
	"bytes"
	"runtime"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// yaml.v3 parses a document on one goroutine, and for a playbook of
// thousands of tasks that parse is most of what validate costs. Tasks are
// independent of each other in the text, so a long task list can be cut
// at its items and the pieces parsed side by side.
//
// The cut is made on the text, so it is checked rather than trusted:
//   - a list is cut only at lines that start an item at the list's own
//     indentation ("- " at column k), inside a run of lines that are all
//     blank, comments, or indented at least k;
//   - a file with a character yaml.v3's reader refuses (not UTF-8, a
//     control character) is never cut: only the whole parse reports it
//     (yaml.v3 stops reading after a document's root node, so whether
//     it reads such a character after the list depends on where its
//     read-ahead ends, which differs in the cut-down rest of the file);
//   - each piece, and the first item that stays in place, must parse on
//     its own to a list at column k; a cut inside
//     a quoted or flow scalar leaves a piece unterminated, and an alias to
//     an anchor in another piece is unknown, so both fail;
//   - the rest of the file (the pieces' lines left blank, so every line
//     keeps its number) must parse with the list where it was, holding
//     the one item left in place;
//   - every list cut must turn out to be a play's tasks or handlers (a
//     "tasks:" key under vars is a list of anything), since only those
//     read their pieces.
//
// Anything else falls back to parsing the file whole, which is also what
// reports syntax errors, so a broken file says the same thing either way.

var (
	// splitMinLines is the fewest lines of a task list worth cutting, and
	// the fewest lines per piece; splitPieces is how many pieces to aim
	// for, 0 meaning eight per CPU (variables so tests can cut small
	// files into many pieces).
	splitMinLines = 2000
	splitPieces   = 0
)

// cutFile is a file whose long task lists were cut: the tree of the rest
// of the file (each cut list holding its first item), and each list's
// pieces, keyed by the list's node in that tree. The pieces are parsed
// where their tasks are read (parser.tasks), so each piece's tree is
// garbage once its tasks are: a fresh process then faults in far less
// memory, which on a VM costs as much as the parse.
type cutFile struct {
	root   *yaml.Node
	pieces map[*yaml.Node][]*piece
}

// taskList is a block sequence found in the text: its items' column
// (0-based) and the lines (0-based) where its items start, the last entry
// being the line after its last item.
type taskList struct {
	col   int
	items []int
}

// piece is a run of a list's items, to be parsed apart: its text, the
// 0-based line it starts on, and the 0-based index of its first item in
// the list.
type piece struct {
	text  []byte
	col   int
	line  int
	first int
}

// cutYAML returns nil when the file is small, has no list worth cutting,
// or the rest of the file does not parse with each list where the text
// put it (then the whole file is parsed instead).
func cutYAML(data []byte) *cutFile {
	lines := lineStarts(data)
	if len(lines) < 2*splitMinLines {
		return nil
	}
	if !yamlReadable(data) {
		return nil
	}
	lists := findTaskLists(data, lines)
	total := 0
	for _, l := range lists {
		total += l.items[len(l.items)-1] - l.items[1]
	}
	if total < splitMinLines {
		return nil
	}
	n := splitPieces
	if n == 0 {
		// Several pieces per CPU, so that what one piece allocates can be
		// reused by the next instead of growing the heap.
		n = 8 * runtime.GOMAXPROCS(0)
	}
	per := max(splitMinLines, total/n+1)
	pieces := map[*taskList][]*piece{}
	// The skeleton is the file with the pieces' lines emptied, so that
	// every line keeps its number.
	skeleton := make([]byte, 0, len(data)/8)
	kept := 0
	for _, l := range lists {
		// The first item stays in the skeleton, so the list is still
		// there, with its position, when the pieces are read. The
		// pieces' lines are emptied there, and a quoted or flow scalar
		// in the first item that runs on past it would swallow them and
		// close after the list, where the skeleton's parse cannot tell:
		// so the first item must parse on its own too, as each piece
		// must (a fuzzed `- "` item lost the next item this way).
		first := &piece{text: data[lines[l.items[0]]:lineEnd(data, lines, l.items[1])], col: l.col, line: l.items[0]}
		if _, ok := first.parse(); !ok {
			return nil
		}
		from := 1
		last := l.items[len(l.items)-1]
		for i := 1; i < len(l.items)-1; i++ {
			if to := l.items[i+1]; to-l.items[from] >= per || to == last {
				pieces[l] = append(pieces[l], &piece{
					text: data[lines[l.items[from]]:lineEnd(data, lines, to)],
					col:  l.col, line: l.items[from], first: from,
				})
				from = i + 1
			}
		}
		skeleton = append(skeleton, data[kept:lines[l.items[1]]]...)
		skeleton = append(skeleton, bytes.Repeat([]byte{'\n'}, last-l.items[1])...)
		kept = lineEnd(data, lines, last)
	}
	skeleton = append(skeleton, data[kept:]...)
	var root yaml.Node
	if err := yaml.Unmarshal(skeleton, &root); err != nil {
		return nil
	}
	seqs := listsAt(&root, lists)
	out := &cutFile{root: &root, pieces: make(map[*yaml.Node][]*piece, len(lists))}
	for _, l := range lists {
		if seqs[l] == nil {
			return nil
		}
		out.pieces[seqs[l]] = pieces[l]
	}
	return out
}

// parse parses the piece's text alone and numbers its nodes' lines as in
// the whole file. False means the cut was wrong: parse the file whole.
func (p *piece) parse() ([]*yaml.Node, bool) {
	var doc yaml.Node
	if err := yaml.Unmarshal(p.text, &doc); err != nil {
		return nil, false
	}
	if len(doc.Content) != 1 {
		return nil, false
	}
	seq := doc.Content[0]
	if seq.Kind != yaml.SequenceNode || seq.Column != p.col+1 || seq.Anchor != "" || seq.Tag != "!!seq" {
		return nil, false
	}
	shiftLines(seq, p.line)
	return seq.Content, true
}

// listsAt finds, in the skeleton's tree, each list still holding only its
// first item where the text put it.
func listsAt(root *yaml.Node, lists []*taskList) map[*taskList]*yaml.Node {
	want := make(map[[2]int]*taskList, len(lists))
	for _, l := range lists {
		want[[2]int{l.items[0] + 1, l.col + 1}] = l
	}
	found := make(map[*taskList]*yaml.Node, len(lists))
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.SequenceNode && len(n.Content) == 1 && n.Content[0].Line == n.Line {
			if l := want[[2]int{n.Line, n.Column}]; l != nil && n.Tag == "!!seq" && n.Anchor == "" {
				found[l] = n
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	return found
}

func shiftLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		shiftLines(c, by)
	}
}

// lineStarts returns the offset of each line's first byte.
func lineStarts(data []byte) []int {
	starts := make([]int, 1, bytes.Count(data, []byte{'\n'})+1)
	for i, b := range data {
		if b == '\n' && i+1 < len(data) {
			starts = append(starts, i+1)
		}
	}
	return starts
}

func lineEnd(data []byte, lines []int, i int) int {
	if i < len(lines) {
		return lines[i]
	}
	return len(data)
}

// findTaskLists finds the block lists under "tasks:" and "handlers:" keys
// long enough to cut: where each item starts, at the list's column.
func findTaskLists(data []byte, lines []int) []*taskList {
	var out []*taskList
	for i := 0; i < len(lines); i++ {
		text := line(data, lines, i)
		key, ok := listKeyColumn(text)
		if !ok {
			continue
		}
		l, next := scanList(data, lines, i+1, key)
		if l != nil && l.items[len(l.items)-1]-l.items[0] >= splitMinLines && len(l.items) > 2 {
			out = append(out, l)
		}
		i = next - 1
	}
	return out
}

// listKeyColumn reports whether a line is only a "tasks:" or "handlers:"
// key (perhaps after "- " play item markers, perhaps with a comment),
// and the key's column.
func listKeyColumn(text []byte) (int, bool) {
	col := indent(text)
	for col+1 < len(text) && text[col] == '-' && text[col+1] == ' ' {
		col += 2
		for col < len(text) && text[col] == ' ' {
			col++
		}
	}
	rest := text[col:]
	for _, k := range [][]byte{[]byte("tasks:"), []byte("handlers:")} {
		if bytes.HasPrefix(rest, k) {
			tail := bytes.TrimLeft(rest[len(k):], " ")
			if len(tail) == 0 || tail[0] == '#' && len(tail) < len(rest[len(k):]) {
				return col, true
			}
		}
	}
	return 0, false
}

// scanList reads the block list that starts at the first content line at
// or after line i, under a key at column key. It returns nil when there
// is none, or when a line it would hold has a tab in its indentation, and
// the line where scanning stopped.
func scanList(data []byte, lines []int, i, key int) (*taskList, int) {
	var l *taskList
	for ; i < len(lines); i++ {
		text := line(data, lines, i)
		col := indent(text)
		if col == len(text) || text[col] == '#' {
			continue // blank or comment: belongs wherever it falls
		}
		if text[col] == '\t' {
			return nil, i + 1
		}
		item := text[col] == '-' && (col+1 == len(text) || text[col+1] == ' ')
		if l == nil {
			if !item || col < key {
				return nil, i
			}
			l = &taskList{col: col}
		}
		if col < l.col || col == l.col && !item {
			break
		}
		if col == l.col {
			l.items = append(l.items, i)
		}
	}
	if l == nil {
		return nil, i
	}
	// The end of the last item: the next line that is not blank or a
	// comment is the list's end, and anything before it belongs to the
	// last item (the skeleton keeps trailing comments either way).
	l.items = append(l.items, i)
	return l, i
}

// line returns line i without its line break.
func line(data []byte, lines []int, i int) []byte {
	text := data[lines[i]:lineEnd(data, lines, i+1)]
	text = bytes.TrimSuffix(text, []byte{'\n'})
	return bytes.TrimSuffix(text, []byte{'\r'})
}

func indent(text []byte) int {
	n := 0
	for n < len(text) && text[n] == ' ' {
		n++
	}
	return n
}

// yamlReadable reports whether every character of data is one yaml.v3's
// reader accepts: valid UTF-8, and in YAML's printable set (tab, line
// feed, carriage return, and no other control character).
func yamlReadable(data []byte) bool {
	for i := 0; i < len(data); {
		b := data[i]
		if b < utf8.RuneSelf {
			if b < 0x20 && b != '\t' && b != '\n' && b != '\r' || b == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return false
		case r == 0x85, r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000:
		default:
			return false
		}
		i += size
	}
	return true
}
