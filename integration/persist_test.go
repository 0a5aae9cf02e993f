package integration

import (
	"context"
	"fmt"
	"os"
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

	o = e.MustApply(t, pb, persist...)
	if c := o.Changed(); c != 0 {
		t.Fatalf("re-apply through the relay changed %d", c)
	}
	connectMsgs(t, o, "through the relay (its connection reused)")
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
