// Package diff renders file changes for --diff: unified diffs like
// `diff -u`, and hash-only lines for secrets and binary content so a plan
// never prints a private key.
package diff

import (
	"fmt"
	"strings"
)

// Context is the number of unchanged lines shown around each change.
const Context = 3

// Unified returns before and after as a unified diff with --- path and
// +++ path headers and @@ hunks with Context lines of context, as
// `diff -u` prints it; "" when they are equal.
func Unified(path, before, after string) string {
	if before == after {
		return ""
	}
	ops := editScript(splitLines(before), splitLines(after))
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", path, path)
	for _, h := range hunks(ops) {
		h.write(&sb, ops)
	}
	return sb.String()
}

// splitLines keeps each line's "\n" so that a missing final newline is a
// difference, as it is to diff(1).
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// hunk is ops[lo:hi] starting at line aLine of before and bLine of after
// (0-based).
type hunk struct {
	lo, hi       int
	aLine, bLine int
}

func hunks(ops []op) []hunk {
	var out []hunk
	aLine, bLine := 0, 0
	// aAt[i], bAt[i]: line numbers before ops[i].
	aAt := make([]int, len(ops)+1)
	bAt := make([]int, len(ops)+1)
	for i, o := range ops {
		aAt[i], bAt[i] = aLine, bLine
		if o.kind != opIns {
			aLine++
		}
		if o.kind != opDel {
			bLine++
		}
	}
	aAt[len(ops)], bAt[len(ops)] = aLine, bLine
	for i := 0; i < len(ops); {
		if ops[i].kind == opEq {
			i++
			continue
		}
		lo := max(0, i-Context)
		// Extend over changes whose gap of equal lines is at most two
		// contexts, so neighbouring changes share one hunk.
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].kind != opEq {
				end = j + 1
				continue
			}
			if j-end >= 2*Context {
				break
			}
		}
		hi := min(len(ops), end+Context)
		out = append(out, hunk{lo: lo, hi: hi, aLine: aAt[lo], bLine: bAt[lo]})
		i = end
	}
	return out
}

func (h hunk) write(sb *strings.Builder, ops []op) {
	na, nb := 0, 0
	for _, o := range ops[h.lo:h.hi] {
		if o.kind != opIns {
			na++
		}
		if o.kind != opDel {
			nb++
		}
	}
	fmt.Fprintf(sb, "@@ -%s +%s @@\n", rangeOf(h.aLine, na), rangeOf(h.bLine, nb))
	for _, o := range ops[h.lo:h.hi] {
		sb.WriteByte(byte(o.kind))
		sb.WriteString(o.line)
		if !strings.HasSuffix(o.line, "\n") {
			sb.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

// rangeOf formats a hunk range as GNU diff does: "3" for one line, "3,4"
// for several, and the line before the hunk with ",0" for none.
func rangeOf(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start)
	case 1:
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}
