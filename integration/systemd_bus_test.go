package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// TestUnitStateOverBus runs modules/systemd's own tests as root on a real
// host (a lab container with systemd as PID 1): the agent reads units over
// systemd's private D-Bus socket, and TestShowOverBusMatchesSystemctl
// checks that it reads every kind of unit (running, masked, not found,
// named without a type, static, a target, a timer, changed on disk) as
// `systemctl show` does. This controller has no systemd to run them on.
func TestUnitStateOverBus(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-sdbus", Block: 99, Hosts: 1})
	h := l.Hosts()[0].Name
	root, err := l.HostRoot(h)
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "test", "-c", "-o", filepath.Join(root, "root", "systemd.test"), "./modules/systemd")
	build.Dir = harness.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := l.Run(ctx, h, "cd /root && ./systemd.test -test.v -test.run 'TestShowOverBusMatchesSystemctl|TestRunOverBus|TestRealSystemd'")
	if err != nil {
		t.Fatalf("modules/systemd tests on %s: %v\n%s", h, err, out)
	}
	for _, test := range []string{"TestShowOverBusMatchesSystemctl", "TestRunOverBus", "TestRealSystemd"} {
		if !strings.Contains(out, "--- PASS: "+test) {
			t.Errorf("%s did not pass on %s (skipped?):\n%s", test, h, out)
		}
	}
}
