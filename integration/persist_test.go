package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/internal/runner"
)

// TestPersist exercises --persist against real sshd on three lab hosts:
// site.yml bootstraps through a relay the run starts (a real `etcdplay
// relay` process), the relay keeps one TCP connection per host (read
// from the kernel's socket table, not from etcdplay) after the run, a
// no-op re-apply and `status` go over those same connections, etcd's own
// client finds the cluster healthy, and once no run has used the relay
// for its persist time it has closed every connection and exited.
func TestPersist(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "persist", Block: 43, Hosts: 3})
	e := bootEnv(t, l)
	// The relay's socket lives in this test's own runtime dir.
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	sock := filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "etcdplay", "relay.sock")
	pb := harness.Playbook("site.yml")
	persist := []string{"--persist", "5s"}

	o := e.MustApply(t, pb, persist...)
	connectMsgs(t, o, "through the relay (a new connection)")
	before := sshConnections(t, l)
	if len(before) != 3 {
		t.Fatalf("after the first run the relay holds %d connections to the hosts' sshd, want 3: %v", len(before), before)
	}

	// The relay has started the next run's agent on each host.
	spares := waitingAgents(t, e, 1)

	o = e.MustApply(t, pb, persist...)
	if c := o.Changed(); c != 0 {
		t.Fatalf("re-apply through the relay changed %d", c)
	}
	connectMsgs(t, o, "through the relay (its connection reused)")
	// That run used them (they have exited), and left the next ones.
	for h, next := range waitingAgents(t, e, 1) {
		if slices.Contains(next, spares[h][0]) {
			t.Errorf("%s: the agent started for the second run (pid %s) still waits after it", h, spares[h][0])
		}
	}
	if st := e.Etcdplay(t, "status", "--persist", "5s"); st.Code != 0 {
		t.Fatalf("status through the relay: exit %d\n%s%s", st.Code, st.Stdout, st.Stderr)
	}
	if after := sshConnections(t, l); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("connections changed across runs: %v, then %v", before, after)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli := e.Client(t)
	resp, err := cli.MemberList(ctx)
	if err != nil || len(resp.Members) != 3 {
		t.Fatalf("member list: %v %v", resp, err)
	}
	for _, ep := range e.Endpoints() {
		if _, err := cli.Status(ctx, ep); err != nil {
			t.Errorf("%s: %v", ep, err)
		}
	}

	interruptThroughRelay(t, e, persist)
	if after := sshConnections(t, l); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("connections changed across an interrupted run: %v, then %v", before, after)
	}

	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := os.Stat(sock)
		conns := sshConnections(t, l)
		if os.IsNotExist(err) && len(conns) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15s past its persist time the relay's socket is there (%v) and %d connections are open", err, len(conns))
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The agents started ahead ended with the connections.
	waitingAgents(t, e, 0)
}

// waitingAgents waits until each lab host runs n etcdplay agents and
// returns their pids by host.
func waitingAgents(t *testing.T, e *harness.Env, n int) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pids, ok := map[string][]string{}, true
		for _, h := range e.Lab.Hosts() {
			// The brackets keep pgrep's own shell out of the match.
			o, err := e.Lab.Run(ctx, h.Name, "pgrep -f '^/var/lib/etcdplay/agent/[e]tcdplay-agent-[0-9a-f]+ agent$' || true")
			if err != nil {
				t.Fatal(err)
			}
			pids[h.Name] = strings.Fields(o)
			ok = ok && len(pids[h.Name]) == n
		}
		if ok {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d etcdplay agents on each host, have %v", n, pids)
		}
	}
}

// interruptThroughRelay: Ctrl-C while a command runs on every host
// through the relay ends the command on every host (seen by pgrep on the
// host), as it does without the relay, and leaves the relay serving.
func interruptThroughRelay(t *testing.T, e *harness.Env, persist []string) {
	t.Helper()
	pb := filepath.Join(t.TempDir(), "sleep.yml")
	if err := os.WriteFile(pb, []byte("- hosts: etcd\n  tasks:\n    - name: A long command\n      command: sleep 120\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"apply", pb, "-i", e.Inventory, "--known-hosts", e.Lab.KnownHostsFile, "--state-dir", e.StateDir}, persist...)
	cmd := exec.Command(harness.Binary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sleeping := func() int {
		n := 0
		for _, h := range e.Lab.Hosts() {
			if o, _ := e.Lab.Run(ctx, h.Name, "pgrep -x sleep || true"); strings.TrimSpace(o) != "" {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(20 * time.Second); sleeping() < 3; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the command did not start on every host:\n%s", out.String())
		}
	}
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("interrupted run: %v (want exit 130)\n%s", err, out.String())
	}
	for deadline := time.Now().Add(10 * time.Second); sleeping() > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("10s after Ctrl-C the command still runs on %d hosts", sleeping())
		}
	}
}

// connectMsgs checks that every host's connect event says how it
// connected.
func connectMsgs(t *testing.T, o *harness.Outcome, want string) {
	t.Helper()
	n := 0
	for _, ev := range o.Events {
		if ev.Type == runner.EventHostConnect {
			n++
			if !strings.Contains(ev.Msg, want) {
				t.Errorf("%s: connected %q, want %q", ev.Host, ev.Msg, want)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d connect events", n)
	}
}

// sshConnections lists the established TCP connections from this machine
// to the lab hosts' sshd (the lab's hosts share its network), as
// "local->remote" in the kernel's hex, sorted.
func sshConnections(t *testing.T, l *lab.Lab) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{}
	for _, h := range l.Hosts() {
		var a [4]int
		fmt.Sscanf(h.Addr, "%d.%d.%d.%d", &a[0], &a[1], &a[2], &a[3])
		hosts[fmt.Sprintf("%02X%02X%02X%02X:0016", a[3], a[2], a[1], a[0])] = true
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[3] == "01" && hosts[f[2]] {
			out = append(out, f[1]+"->"+f[2])
		}
	}
	slices.Sort(out)
	return out
}
