// Package output renders runner events for people (text) and for pipelines
// (one JSON object per line). Both views render the same events.
package output

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/etcdplay/etcdplay/internal/diff"
	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/internal/transport"
	"github.com/etcdplay/etcdplay/modules"
)

// Options shape the output.
type Options struct {
	// Diff shows file diffs (secrets as hashes); Check marks changes as
	// what would happen.
	Diff, Check bool
	// Verbosity is the count of -v: 1 shows module result data (a
	// command's rc, stdout and stderr), 3 also each connection.
	Verbosity int
	// Color colours the status words (a terminal, no NO_COLOR).
	Color bool
	// Progress shows large transfers as one status line, redrawn in place
	// (a terminal only: a log would fill with carriage returns).
	Progress bool
}

// New returns a sink for format "text" or "json".
func New(format string, w io.Writer, o Options) (runner.Sink, error) {
	switch format {
	case "", "text":
		return &Text{w: w, diff: o.Diff, check: o.Check, verbosity: o.Verbosity, color: o.Color, progress: o.Progress}, nil
	case "json":
		return &JSON{enc: json.NewEncoder(w), diff: o.Diff}, nil
	}
	return nil, fmt.Errorf("unknown output format %q (want text or json)", format)
}

// JSON writes one event per line.
type JSON struct {
	mu   sync.Mutex
	enc  *json.Encoder
	diff bool // file content travels only when --diff asked for it
}

// Emit writes e as one line of JSON. File diffs are included only with
// --diff, as in the text output (a JSON log is kept and shipped further
// than a terminal); secret diffs carry only hashes.
func (j *JSON) Emit(e runner.Event) {
	if e.Type == runner.EventProgress {
		return // twice a second per host: the end of a transfer is its task's result
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if e.Change != nil {
		c := *e.Change
		c.Diffs = maskSecrets(c.Diffs)
		if !j.diff {
			c.Diffs = nil
		}
		e.Change = &c
	}
	_ = j.enc.Encode(e)
}

// secretHash stands in for secret content: equal hashes say "unchanged"
// without saying anything about the content.
func secretHash(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func maskSecrets(in []modules.FileDiff) []modules.FileDiff {
	out := make([]modules.FileDiff, len(in))
	for i, d := range in {
		if d.Secret {
			d.Before, d.After = secretHash(d.Before), secretHash(d.After)
		}
		out[i] = d
	}
	return out
}

// Text writes live progress lines and the PLAY RECAP, Ansible style.
type Text struct {
	mu        sync.Mutex
	w         io.Writer
	diff      bool
	check     bool
	verbosity int
	color     bool
	lastPlay  string

	progress  bool
	transfers map[transferKey]transport.Transfer
	statusUp  bool // a status line is on screen, without a newline
}

type transferKey struct{ host, what string }

// Emit prints one event.
func (t *Text) Emit(e runner.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.Type == runner.EventProgress {
		t.trackTransfer(e)
		return
	}
	if t.statusUp {
		fmt.Fprint(t.w, "\r\x1b[K")
		t.statusUp = false
	}
	defer t.drawStatus()
	if e.Host != "" && (e.Type == runner.EventHostConnect || e.Type == runner.EventNodeDone) {
		// Whatever this host was sending is over (sent, or failed).
		for k := range t.transfers {
			if k.host == e.Host {
				delete(t.transfers, k)
			}
		}
	}
	switch e.Type {
	case runner.EventHostConnect:
		switch {
		case e.Status == modules.StatusUnreachable:
			fmt.Fprintf(t.w, "%s: [%s] %s\n", t.paint(e.Status, "unreachable"), e.Host, e.Msg)
		case t.verbosity >= 3:
			fmt.Fprintf(t.w, "connected: [%s] %s\n", e.Host, e.Msg)
		}
	case runner.EventLog:
		t.playHeader(e.Play)
		fmt.Fprintf(t.w, "  [%s] %s: %s\n", e.Host, e.Task, e.Msg)
	case runner.EventNodeDone:
		t.playHeader(e.Play)
		t.node(e)
	case runner.EventRecap:
		t.recap(e)
	}
}

func (t *Text) trackTransfer(e runner.Event) {
	if !t.progress || e.Transfer == nil {
		return
	}
	if t.transfers == nil {
		t.transfers = map[transferKey]transport.Transfer{}
	}
	k := transferKey{e.Host, e.Transfer.What}
	if e.Transfer.Done >= e.Transfer.Total {
		delete(t.transfers, k)
	} else {
		t.transfers[k] = *e.Transfer
	}
	if t.statusUp {
		fmt.Fprint(t.w, "\r\x1b[K")
		t.statusUp = false
	}
	t.drawStatus()
}

// drawStatus shows the transfers under way as one line, summed per thing
// sent: "sending agent to 30 hosts: 120.4 of 354.0 MB (34%)".
func (t *Text) drawStatus() {
	if len(t.transfers) == 0 {
		return
	}
	type sum struct {
		hosts       int
		done, total int64
	}
	by := map[string]*sum{}
	var whats []string
	for k, tr := range t.transfers {
		if by[k.what] == nil {
			by[k.what] = &sum{}
			whats = append(whats, k.what)
		}
		s := by[k.what]
		s.hosts++
		s.done += tr.Done
		s.total += tr.Total
	}
	sort.Strings(whats)
	var parts []string
	for _, w := range whats {
		s := by[w]
		hosts := "1 host"
		if s.hosts > 1 {
			hosts = fmt.Sprintf("%d hosts", s.hosts)
		}
		parts = append(parts, fmt.Sprintf("sending %s to %s: %.1f of %.1f MB (%d%%)", w, hosts,
			float64(s.done)/1e6, float64(s.total)/1e6, s.done*100/max(s.total, 1)))
	}
	line := strings.Join(parts, "; ")
	if len(line) > 160 {
		line = line[:157] + "..."
	}
	fmt.Fprint(t.w, line)
	t.statusUp = true
}

// playHeader prints "PLAY [name]" before the first line of a play.
func (t *Text) playHeader(play string) {
	if play != t.lastPlay {
		t.lastPlay = play
		fmt.Fprintf(t.w, "\nPLAY [%s] %s\n", play, stars(play))
	}
}

func (t *Text) node(e runner.Event) {
	label := string(e.Status)
	if t.check && e.Status == modules.StatusChanged {
		label = "changed (check)"
	}
	line := fmt.Sprintf("%s: [%s] %s", t.paint(e.Status, label), e.Host, e.Task)
	if e.Status == modules.StatusFailed || e.Status == modules.StatusUnreachable || (e.Status == modules.StatusSkipped && e.Msg != "") {
		line += ": " + e.Msg
	} else if e.Msg != "" && e.Status == modules.StatusChanged {
		line += " (" + e.Msg + ")"
	}
	fmt.Fprintln(t.w, line)
	if t.verbosity >= 1 && len(e.Data) > 0 {
		fmt.Fprint(t.w, renderData(e.Data))
	}
	if e.Change == nil || e.Status != modules.StatusChanged {
		return
	}
	if t.check || t.diff {
		for _, a := range e.Change.Actions {
			fmt.Fprintf(t.w, "    %s\n", a)
		}
	}
	if t.diff {
		for _, d := range e.Change.Diffs {
			fmt.Fprint(t.w, indent(diff.Render(d), "    "))
		}
	}
}

func (t *Text) recap(e runner.Event) {
	fmt.Fprintf(t.w, "\nPLAY RECAP %s\n", strings.Repeat("*", 60))
	width := 0
	for _, r := range e.Recap {
		width = max(width, len(r.Host))
	}
	for _, r := range e.Recap {
		fmt.Fprintf(t.w, "%-*s : ok=%-4d changed=%-4d unreachable=%-4d failed=%-4d skipped=%-4d elapsed=%.2fs\n",
			width, r.Host, r.OK, r.Changed, r.Unreachable, r.Failed, r.Skipped, r.Elapsed)
	}
	if t.verbosity >= 1 && len(e.Timeline) > 0 {
		t.timeline(e)
	}
	fmt.Fprintf(t.w, "\nfinished in %.2fs\n", e.Elapsed)
}

// timeline says where the run's time went (-v): each step from its first
// host's start to its last host's end, in seconds from the run's start;
// steps under 1% of the run (and under 10 ms) are only counted.
func (t *Text) timeline(e runner.Event) {
	fmt.Fprintf(t.w, "\nTIMELINE %s\n", strings.Repeat("*", 62))
	plays := map[string]bool{}
	for _, s := range e.Timeline {
		if s.Play != "" {
			plays[s.Play] = true
		}
	}
	floor := max(0.01, e.Elapsed/100)
	short := 0
	for _, s := range e.Timeline {
		if s.Seconds() < floor {
			short++
			continue
		}
		what := s.What
		if len(plays) > 1 && s.Play != "" {
			what = "[" + s.Play + "] " + what
		}
		if s.Hosts > 1 {
			what += fmt.Sprintf(" (%d hosts)", s.Hosts)
		}
		fmt.Fprintf(t.w, "%6.2fs - %6.2fs %6.2fs  %s\n", s.Start, s.End, s.Seconds(), what)
	}
	switch {
	case short == 1:
		fmt.Fprintf(t.w, "(1 more step, under %.2fs)\n", floor)
	case short > 1:
		fmt.Fprintf(t.w, "(%d more steps, each under %.2fs)\n", short, floor)
	}
}

func stars(title string) string {
	return strings.Repeat("*", max(3, 70-len(title)))
}

func indent(s, prefix string) string {
	if s == "" {
		return ""
	}
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	if !strings.HasSuffix(s, "\n") {
		b.WriteString("\n")
	}
	return b.String()
}

// ANSI colours of the status words, as ansible-playbook uses them.
var colors = map[modules.Status]string{
	modules.StatusOK:          "\x1b[32m", // green
	modules.StatusChanged:     "\x1b[33m", // yellow
	modules.StatusFailed:      "\x1b[31m", // red
	modules.StatusUnreachable: "\x1b[31m",
	modules.StatusSkipped:     "\x1b[36m", // cyan
}

func (t *Text) paint(st modules.Status, word string) string {
	c, ok := colors[st]
	if !t.color || !ok {
		return word
	}
	return c + word + "\x1b[0m"
}

// renderData shows a module's result data under its line: a command's
// rc, stdout and stderr first and as blocks, the rest one key a line,
// sorted.
func renderData(d map[string]any) string {
	var b strings.Builder
	if rc, ok := d["rc"]; ok {
		fmt.Fprintf(&b, "    rc: %v\n", rc)
	}
	for _, k := range []string{"stdout", "stderr"} {
		if s, ok := d[k].(string); ok && s != "" {
			fmt.Fprintf(&b, "    %s: |\n%s", k, indent(strings.TrimRight(s, "\n")+"\n", "      "))
		}
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		if k != "rc" && k != "stdout" && k != "stderr" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := d[k]
		if s, ok := v.(string); ok {
			fmt.Fprintf(&b, "    %s: %s\n", k, s)
			continue
		}
		j, err := json.Marshal(v)
		if err != nil {
			j = []byte(fmt.Sprint(v))
		}
		fmt.Fprintf(&b, "    %s: %s\n", k, j)
	}
	return b.String()
}
