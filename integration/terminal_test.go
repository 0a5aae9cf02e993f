package integration

// The operator at a terminal. The real thing exercised: etcdplay on a
// pseudo-terminal (util-linux script(1)), as an operator runs it, against
// a real cluster: transfers show as a status line, a disruptive step
// shows its plan and goes on only on "yes", the text output is coloured
// on a terminal and not with NO_COLOR.

import (
	"bufio"
	"context"
	"maps"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

func TestConfirmOnTerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script(1) from util-linux gives the run a terminal: %v", err)
	}
	l := lab.ForTest(t, lab.Options{Name: "it-terminal", Block: 80, Hosts: 3})
	e := bootEnv(t, l)
	// The cold run sends the etcd release (24 MB) to every host: on a
	// terminal that is one status line, redrawn in place. (The lean
	// agent, 3 MB, is under the size worth a progress line.)
	out, code := onTerminal(t, e, "", nil, "apply", harness.Playbook("site.yml"))
	if code != 0 {
		t.Fatalf("site.yml on a terminal: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "sending /var/tmp/etcdplay/etcd-") || !strings.Contains(out, "\r\x1b[K") {
		t.Errorf("no progress line for the release upload on a terminal:\n%q", out)
	}
	restart := restartWhenStale(t, l)
	pids := etcdPIDs(t, e)

	out, code = onTerminal(t, e, "no", nil, "apply", restart)
	if code != 4 || !strings.Contains(out, "restarts members one at a time") || !strings.Contains(out, "Only 'yes' goes on:") {
		t.Fatalf("answered no: exit %d, want 4 after the plan and the question:\n%s", code, out)
	}
	if !strings.Contains(out, "\x1b[") {
		t.Errorf("no colour on a terminal:\n%q", out)
	}
	if now := etcdPIDs(t, e); !maps.Equal(now, pids) {
		t.Errorf("answered no, yet etcd restarted: %v -> %v", pids, now)
	}

	out, code = onTerminal(t, e, "yes", nil, "apply", restart)
	if code != 0 || !strings.Contains(out, "Only 'yes' goes on:") {
		t.Fatalf("answered yes: exit %d\n%s", code, out)
	}
	now := etcdPIDs(t, e)
	for h, pid := range pids {
		if now[h] == pid {
			t.Errorf("answered yes, yet etcd on %s was not restarted (pid %s)", h, pid)
		}
	}

	// Nothing left to restart: no question, and NO_COLOR means no colour.
	out, code = onTerminal(t, e, "", []string{"NO_COLOR=1"}, "apply", restart)
	if code != 0 || strings.Contains(out, "Only 'yes' goes on:") || strings.Contains(out, "\x1b[") {
		t.Errorf("converged run with NO_COLOR: exit %d, want 0 with no question and no colour:\n%q", code, out)
	}
}

// onTerminal runs etcdplay ARGS on a pseudo-terminal with e's inventory,
// known_hosts and state dir and without ETCDPLAY_YES, answers the first
// confirmation question with answer, and returns what the terminal showed
// and the exit code.
func onTerminal(t *testing.T, e *harness.Env, answer string, extraEnv []string, args ...string) (string, int) {
	t.Helper()
	full := append([]string{harness.Binary(t)}, args...)
	full = append(full, "-i", e.Inventory, "--known-hosts", e.Lab.KnownHostsFile, "--state-dir", e.StateDir)
	for k, v := range e.Vars {
		full = append(full, "-e", k+"="+v)
	}
	quoted := make([]string, len(full))
	for i, a := range full {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qefc", strings.Join(quoted, " "), "/dev/null")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDPLAY_YES=") && !strings.HasPrefix(kv, "NO_COLOR=") && !strings.HasPrefix(kv, "TERM=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(append(env, "TERM=xterm"), extraEnv...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var shown strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(stdout)
		answered := false
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			mu.Lock()
			shown.Write(buf[:n])
			ask := !answered && strings.Contains(shown.String(), "Only 'yes' goes on:")
			mu.Unlock()
			if ask {
				answered = true
				stdin.Write([]byte(answer + "\n"))
			}
			if err != nil {
				return
			}
		}
	}()
	<-done
	err = cmd.Wait()
	stdin.Close()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("etcdplay on a terminal: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return shown.String(), code
}
