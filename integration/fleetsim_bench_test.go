package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/integration/fleetsim"
	"github.com/etcdplay/etcdplay/integration/harness"
)

// BenchmarkFleetSimulated applies integration/bench/fleet-sim.yml to a
// simulated fleet of 1000 hosts (fleetsim: SSH servers on 127.201.0.0/16
// serving the real agent in this process), cold and then warm, and
// reports the controller's wall time, CPU time and peak RSS per host
// (targets: warm <= 10 s, <= 1 MB RSS per host). The fleet's servers share
// the machine with the controller, so the wall time includes their side
// of every handshake. ETCDPLAY_SIM_HOSTS changes the count.
func BenchmarkFleetSimulated(b *testing.B) {
	n := envInt(b, "ETCDPLAY_SIM_HOSTS", 1000)
	bin := harness.Binary(b)
	st, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	fleet, err := fleetsim.Start(fleetsim.Options{Hosts: n, Net: "127.201.0.1", Port: 2222, Dir: dir, AgentSize: st.Size()})
	if err != nil {
		b.Fatal(err)
	}
	defer fleet.Close()
	e := &harness.Env{StateDir: b.TempDir(), Inventory: fleet.InventoryFile, KnownHosts: fleet.KnownHostsFile, Vars: map[string]string{}}
	pb := filepath.Join(harness.RepoRoot(), "integration", "bench", "fleet-sim.yml")
	args := []string{"--forks", fmt.Sprint(n), "--private-key", fleet.KeyFile}

	cold := e.MustApply(b, pb, args...)
	if c, want := cold.Changed(), 7*n; c != want {
		b.Fatalf("cold run changed %d, want %d (7 tasks on %d hosts)", c, want, n)
	}
	// What the hosts have, read from their directories, not from the run.
	for _, h := range []int{1, n} {
		name := fmt.Sprintf("sim%04d", h)
		got, err := os.ReadFile(filepath.Join(dir, "hosts", name, "etc", "demo", "host.conf"))
		if err != nil || !strings.Contains(string(got), "name = "+name+"\n") {
			b.Fatalf("%s: host.conf %q (%v)", name, got, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "hosts", name, "var", "lib", "demo", ".initialised")); err != nil {
			b.Fatalf("%s: the command did not run: %v", name, err)
		}
	}
	w := medianWarm(b, e, pb, args...)
	printFleetRun("simulated fleet first run (7 tasks)", n, cold, "")
	printFleetRun("simulated fleet warm (7 tasks)", n, w, "; target <= 10s and <= 1 MB per host")
	b.ReportMetric(w.Elapsed.Seconds(), "s/warm")
	b.ReportMetric(float64(w.MaxRSS)/1e6/float64(n), "MB/host")
}
