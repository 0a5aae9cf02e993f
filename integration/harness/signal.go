package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/runner"
)

// SignalWhen runs `etcdplay apply PLAYBOOK --output json` plus extra args
// and sends sig to etcdplay delay after a log event containing marker (an
// operator's Ctrl-C, or the controller dying, at a chosen point). It waits
// for etcdplay to exit and fails the test if the marker never showed.
func (e *Env) SignalWhen(t testing.TB, playbook, marker string, delay time.Duration, sig os.Signal, extra ...string) *Outcome {
	t.Helper()
	return e.ActWhen(t, playbook, marker, func(p *os.Process) {
		time.Sleep(delay)
		_ = p.Signal(sig)
	}, extra...)
}

// ActWhen runs `etcdplay apply PLAYBOOK --output json` plus extra args and
// calls act once a log event contains marker (a fault injected at a chosen
// point: act may signal etcdplay's process). It waits for etcdplay to
// exit and fails the test if the marker never showed.
func (e *Env) ActWhen(t testing.TB, playbook, marker string, act func(*os.Process), extra ...string) *Outcome {
	t.Helper()
	args := append([]string{"apply", playbook, "--output", "json"}, extra...)
	args = append(args, "-i", e.Inventory, "--known-hosts", e.knownHosts(), "--state-dir", e.StateDir)
	for k, v := range e.Vars {
		args = append(args, "-e", k+"="+v)
	}
	cmd := exec.Command(Binary(t), args...)
	cmd.Dir = RepoRoot()
	cmd.Env = e.environ()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	seen := false
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		stdout.Write(sc.Bytes())
		stdout.WriteByte('\n')
		var ev runner.Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == runner.EventLog && strings.Contains(ev.Msg, marker) {
			seen = true
			act(cmd.Process)
			break
		}
	}
	rest, _ := io.ReadAll(pipe)
	stdout.Write(rest)
	err = cmd.Wait()
	if !seen {
		t.Fatalf("etcdplay ended without logging %q:\n%s", marker, stdout.String())
	}
	o := ParseOutcome(stdout.String())
	o.Stderr, o.Elapsed = stderr.String(), time.Since(start)
	if ee, ok := err.(*exec.ExitError); ok {
		o.Code = ee.ExitCode()
	}
	return o
}
