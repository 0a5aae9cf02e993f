package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/etcdplay/etcdplay/internal/coerce"
	"github.com/etcdplay/etcdplay/modules"
)

// confirmer asks, on the terminal the run was started from, before each
// disruptive step (a membership change, a restore, a rolling restart,
// upgrade or defrag): its plan, then "yes" to go on. Steps ask one at a
// time. Without a terminal it refuses, saying how to confirm.
type confirmer struct {
	mu       sync.Mutex
	in       *bufio.Reader
	out      io.Writer
	terminal bool
	refused  bool // a step was refused: apply exits 4
}

func newConfirmer(in *os.File, out io.Writer) *confirmer {
	return &confirmer{in: bufio.NewReader(in), out: out, terminal: isTerminal(in)}
}

// isTerminal says f is a terminal (not a pipe or a file).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// useColor says the text output may colour: a terminal, and neither
// --no-color nor NO_COLOR (https://no-color.org: any non-empty value).
func useColor(w io.Writer, noColor bool) bool {
	if noColor || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return onTerminal(w)
}

// onTerminal reports whether w is a terminal (and not TERM=dumb).
func onTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && os.Getenv("TERM") != "dumb" && isTerminal(f)
}

func (c *confirmer) confirm(ctx context.Context, task, host string, ch *modules.Change) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.terminal {
		c.refused = true
		return fmt.Errorf("not confirmed: %q %s; nothing of it was done. Run on a terminal to confirm it, or pass --yes (ETCDPLAY_YES=1); --check shows the plan",
			task, ch.Disruptive)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s [%s] %s:\n", task, host, ch.Disruptive)
	for _, a := range ch.Actions {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	b.WriteString("Apply this step? Only 'yes' goes on: ")
	fmt.Fprint(c.out, b.String())
	answer := make(chan string, 1)
	go func() {
		line, _ := c.in.ReadString('\n')
		answer <- strings.TrimSpace(line)
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case a := <-answer:
		if a == "yes" {
			return nil
		}
		c.refused = true
		return fmt.Errorf("not confirmed: %q declined at the prompt; nothing of it was done", task)
	}
}

// yesFromEnv reads ETCDPLAY_YES (1, true, yes).
func yesFromEnv() bool {
	yes, _ := coerce.Bool(os.Getenv("ETCDPLAY_YES"))
	return yes
}
