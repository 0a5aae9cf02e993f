package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/internal/transport"
)

// BenchmarkGenericDemoVsAnsible applies playbooks/generic-demo.yml, which
// runs unchanged under both tools, to 30 bare lab hosts with etcdplay, to
// 30 others with ansible-playbook and, with Mitogen installed, to 30 more
// under Mitogen. ETCDPLAY_BENCH_HOSTS changes the per-tool host count.
func BenchmarkGenericDemoVsAnsible(b *testing.B) {
	n := envInt(b, "ETCDPLAY_BENCH_HOSTS", 30)
	pb := harness.Playbook("generic-demo.yml")
	cold, warm := compareWithAnsible(b, benchCase{
		name: "generic-demo", lab: "bench-fleet", block: 74, hosts: n,
		etcdplay: pb, ansible: pb, target: "cold target <= 4s",
	})
	b.ReportMetric(cold.Seconds(), "s/cold")
	b.ReportMetric(warm.Seconds(), "s/warm")
}

// BenchmarkSiteVsAnsible bootstraps a 3-member TLS etcd 3.6 cluster from
// bare hosts with playbooks/site.yml, and with the same work written for
// Ansible (integration/bench/ansible/site.yml) on 3 other hosts, then
// re-applies both as no-ops. Both fetch the release from the lab's mirror.
func BenchmarkSiteVsAnsible(b *testing.B) {
	url := harness.Mirror(b, "v3.6.16")
	cold, warm := compareWithAnsible(b, benchCase{
		name: "site.yml", lab: "bench-site-ansible", block: 75, hosts: 3,
		// etcd's first election alone takes 0.2-1.1 s (a random timeout
		// of 2-11 heartbeats after its tick advance), so one cold run says
		// little: three each, on fresh hosts, and the medians.
		coldRounds: 3,
		etcdplay:   harness.Playbook("site.yml"),
		setup:      func(e *harness.Env) { e.Vars["etcd_release_url"] = url },
		ansible:    filepath.Join(harness.RepoRoot(), "integration/bench/ansible/site.yml"),
		// Each Ansible cluster gets a controller dir (its CA) of its own,
		// as each etcdplay one gets its own state dir.
		ansibleVars: func(dir string) []string {
			return []string{"-e", "etcd_release_url=" + url, "-e", "controller_dir=" + dir}
		},
		target: "cold target <= 2.5s (>= 12x Ansible), warm <= 0.15s (>= 90x Ansible, >= 40x Mitogen)",
	})
	b.ReportMetric(cold.Seconds(), "s/cold")
	b.ReportMetric(warm.Seconds(), "s/warm")
}

// BenchmarkFleet200 applies generic-demo.yml to 200 lab hosts, cold and
// then warm, and reports the controller's wall time, CPU time and peak RSS
// (targets: warm <= 3 s, RSS <= 300 MB). etcdplay only: Ansible on 200
// hosts adds many minutes and no new ratio. ETCDPLAY_FLEET_HOSTS changes
// the count (at most 254).
func BenchmarkFleet200(b *testing.B) {
	n := envInt(b, "ETCDPLAY_FLEET_HOSTS", 200)
	boot := time.Now()
	l := lab.ForTest(b, lab.Options{Name: "bench-fleet200", Block: 76, Hosts: n, BootTimeout: 5 * time.Minute})
	fmt.Printf("BENCH fleet: %d lab hosts booted in %.1fs\n", n, time.Since(boot).Seconds())
	e := harness.New(b, l)
	pb := harness.Playbook("generic-demo.yml")
	// Every host logs in at once, and on the 2-core bench machine 200
	// containers' sshd and agent starts queue for the CPU far beyond the
	// default 10 s connect timeout: that is the machine, not the hosts.
	args := []string{"--forks", fmt.Sprint(n), "--timeout", "120s"}
	cold := e.MustApply(b, pb, args...)
	printColdBreakdown(cold)
	w := medianWarm(b, e, pb, args...)
	sock := ownRelay(b)
	persist := append(append([]string{}, args...), "--persist", ansiblePersist)
	opened := e.MustApply(b, pb, persist...)
	wp := medianWarm(b, e, pb, persist...)
	printFleetRun("generic-demo cold", n, cold, "")
	printFleetRun("generic-demo warm", n, w, "; target <= 3s and <= 300 MB")
	printFleetRun("generic-demo warm through the relay (--persist)", n, wp, fmt.Sprintf("; the run that opened its connections %.2fs", opened.Elapsed.Seconds()))
	printRelayUsage(b, sock, n, 4)
	b.ReportMetric(cold.Elapsed.Seconds(), "s/cold")
	b.ReportMetric(w.Elapsed.Seconds(), "s/warm")
	b.ReportMetric(float64(w.MaxRSS)/1e6, "MB/warm-rss")
	b.ReportMetric(wp.Elapsed.Seconds(), "s/warm-persist")
}

// medianWarm applies pb three more times, each changing nothing, and
// returns the median run.
func medianWarm(b *testing.B, e *harness.Env, pb string, args ...string) *harness.Outcome {
	var warm []*harness.Outcome
	for r := 0; r < 3; r++ {
		o := e.MustApply(b, pb, args...)
		if c := o.Changed(); c != 0 {
			b.Fatalf("warm run changed %d", c)
		}
		warm = append(warm, o)
	}
	sort.Slice(warm, func(i, j int) bool { return warm[i].Elapsed < warm[j].Elapsed })
	return warm[1]
}

// printFleetRun prints one fleet run's controller costs, in total and
// per host.
func printFleetRun(what string, hosts int, o *harness.Outcome, target string) {
	fmt.Printf("BENCH %s, %d hosts: %.2fs wall, controller %.2fs CPU (%.1f ms per host), peak RSS %.0f MB (%.2f MB per host)%s\n",
		what, hosts, o.Elapsed.Seconds(), o.CPU.Seconds(), o.CPU.Seconds()*1000/float64(hosts),
		float64(o.MaxRSS)/1e6, float64(o.MaxRSS)/1e6/float64(hosts), target)
}

// benchCase is one piece of work done by etcdplay and by Ansible on
// separate hosts of one lab.
type benchCase struct {
	name        string
	lab         string
	block       int
	hosts       int // per tool and cold round
	coldRounds  int // cold runs per tool, each on hosts of its own (default 1)
	etcdplay    string
	setup       func(*harness.Env)
	ansible     string
	ansibleVars func(dir string) []string // given a fresh dir per cluster
	target      string
}

// compareWithAnsible runs c cold coldRounds times per tool, alternating,
// each on fresh hosts, then warm no-op runs alternating between the tools
// on the last round's hosts, prints the figures and ratios (of medians),
// and returns etcdplay's median cold and warm times. Ansible is set up as
// fast as it goes (runAnsible); Mitogen joins when installed.
func compareWithAnsible(b *testing.B, c benchCase) (time.Duration, time.Duration) {
	tools := []string{"etcdplay"}
	ansible, err := exec.LookPath("ansible-playbook")
	if err != nil {
		fmt.Println("BENCH ansible-playbook not installed (make bench installs it as root on Debian): etcdplay figures only")
	} else {
		tools = append(tools, "ansible")
		if mitogenStrategy() != "" {
			tools = append(tools, "mitogen")
		} else {
			fmt.Println("BENCH ansible-mitogen not installed: no Mitogen figures")
		}
	}
	n, rounds := c.hosts, max(c.coldRounds, 1)
	l := lab.ForTest(b, lab.Options{Name: c.lab, Block: c.block, Hosts: n * len(tools) * rounds, BootTimeout: 3 * time.Minute})
	// runs[tool][r] applies c to hostsOf(tool i, round r).
	type run func() (*harness.Outcome, time.Duration, int)
	runs := map[string][]run{}
	hostsOf := func(i, r int) []lab.Host {
		first := (r*len(tools) + i) * n
		return l.Hosts()[first : first+n]
	}
	last := rounds - 1
	for i, tool := range tools {
		for r := 0; r < rounds; r++ {
			inv := subsetInventory(b, l, hostsOf(i, r), fmt.Sprintf("%s-%d", tool, r))
			if tool == "etcdplay" {
				e := harness.New(b, l)
				e.Inventory = inv
				if c.setup != nil {
					c.setup(e)
				}
				apply := func(extra ...string) (*harness.Outcome, time.Duration, int) {
					o := e.MustApply(b, c.etcdplay, append([]string{"--forks", fmt.Sprint(max(n, 50)), "--timeout", "120s"}, extra...)...)
					return o, o.Elapsed, o.Changed()
				}
				runs[tool] = append(runs[tool], func() (*harness.Outcome, time.Duration, int) { return apply() })
				if r == last {
					runs[persisting] = []run{func() (*harness.Outcome, time.Duration, int) { return apply("--persist", ansiblePersist) }}
				}
				continue
			}
			var vars []string
			if c.ansibleVars != nil {
				vars = c.ansibleVars(b.TempDir())
			}
			mitogen := tool == "mitogen"
			runs[tool] = append(runs[tool], func() (*harness.Outcome, time.Duration, int) {
				d, changed := runAnsible(b, ansible, inv, c.ansible, l.KnownHostsFile, n, mitogen, vars...)
				return nil, d, changed
			})
		}
	}
	med := func(ds []time.Duration) time.Duration {
		ds = append([]time.Duration(nil), ds...)
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	cold := map[string][]time.Duration{}
	var coldOutcomes []*harness.Outcome
	for r := 0; r < rounds; r++ {
		for _, tool := range tools {
			o, d, changed := runs[tool][r]()
			if changed == 0 {
				b.Fatalf("%s cold run changed nothing", tool)
			}
			cold[tool] = append(cold[tool], d)
			if o != nil {
				coldOutcomes = append(coldOutcomes, o)
			}
		}
		// Power off the round's hosts before the next one, so every
		// cold run shares the machine with as many idle clusters (at
		// most the other tools' of its round) as the warm runs do.
		for i := 0; r < last && i < len(tools); i++ {
			for _, h := range hostsOf(i, r) {
				if err := l.Kill(h.Name); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	sort.Slice(coldOutcomes, func(i, j int) bool { return coldOutcomes[i].Elapsed < coldOutcomes[j].Elapsed })
	printColdBreakdown(coldOutcomes[len(coldOutcomes)/2])
	// etcdplay --persist warms on etcdplay's hosts: its first run opens
	// the relay's connections, as Ansible's first run opened its masters.
	sock := ownRelay(b)
	_, opened, _ := runs[persisting][0]()
	warmTools := append([]string{tools[0], persisting}, tools[1:]...)
	const warmRounds = 3
	warm := map[string][]time.Duration{}
	for r := 0; r < warmRounds; r++ {
		for _, tool := range warmTools {
			wr := runs[tool]
			_, d, changed := wr[len(wr)-1]()
			if changed != 0 {
				b.Fatalf("%s warm run %d changed %d", tool, r, changed)
			}
			warm[tool] = append(warm[tool], d)
		}
	}
	coldNote := ""
	if rounds > 1 {
		coldNote = fmt.Sprintf(" (median of %d, each on fresh hosts: %s)", rounds, seconds(cold["etcdplay"]))
	}
	ec, ep := med(cold["etcdplay"]), med(warm["etcdplay"])
	fmt.Printf("BENCH %s, %d hosts, cold: etcdplay %.2fs%s; warm no-op: %.3fs (median of %d); %s\n", c.name, n, ec.Seconds(), coldNote, ep.Seconds(), warmRounds, c.target)
	pp := med(warm[persisting])
	fmt.Printf("BENCH %s, %d hosts, warm no-op with --persist %s (connections kept open between runs, as Ansible's ControlPersist here): %.3fs (median of %d; the run that opened them %.3fs)\n",
		c.name, n, ansiblePersist, pp.Seconds(), warmRounds, opened.Seconds())
	printRelayUsage(b, sock, n, warmRounds+1)
	for _, tool := range tools[1:] {
		tc, w := med(cold[tool]), med(warm[tool])
		if rounds > 1 {
			coldNote = fmt.Sprintf(" (median of %d: %s)", rounds, seconds(cold[tool]))
		}
		fmt.Printf("BENCH %s, %d hosts, cold: %s %.2fs%s (etcdplay %.1fx faster); warm no-op: %.2fs (etcdplay %.1fx faster, with --persist %.1fx)\n",
			c.name, n, tool, tc.Seconds(), coldNote, tc.Seconds()/ec.Seconds(), w.Seconds(), w.Seconds()/ep.Seconds(), w.Seconds()/pp.Seconds())
	}
	return ec, ep
}

// seconds lists ds as "1.23s, 1.40s, ...", in the order they ran.
func seconds(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = fmt.Sprintf("%.2fs", d.Seconds())
	}
	return strings.Join(s, ", ")
}

// ownRelay gives the benchmark's runs a relay of their own (its socket
// in a runtime dir of the benchmark's), whose costs printRelayUsage can
// then find.
func ownRelay(b *testing.B) string {
	dir := b.TempDir()
	b.Setenv("XDG_RUNTIME_DIR", dir)
	return filepath.Join(dir, "etcdplay", "relay.sock")
}

// printRelayUsage prints what the relay on sock has cost so far, over
// runs runs: the controller's figures of the runs through it leave it
// out, as it is a process of its own.
func printRelayUsage(b *testing.B, sock string, hosts, runs int) {
	pid, err := transport.RelayPID(sock)
	if err != nil {
		b.Fatalf("the relay: %v", err)
	}
	stat, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	status, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("the relay (pid %d): %v", pid, err)
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	cpu := float64(utime+stime) / 100 // USER_HZ
	var hwmKB int
	if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(status); m != nil {
		hwmKB, _ = strconv.Atoi(string(m[1]))
	}
	fmt.Printf("BENCH   the relay itself (a process of its own) over those %d runs: %.2fs CPU (%.1f ms per host per run), peak RSS %.0f MB (%.2f MB per host)\n",
		runs, cpu, cpu*1000/float64(hosts*runs), float64(hwmKB)/1000, float64(hwmKB)/1000/float64(hosts))
}

// persisting is etcdplay with --persist among compareWithAnsible's tools;
// ansiblePersist is how long both keep connections (runAnsible's
// ControlPersist): longer than the other tools' runs between two of a
// tool's warm runs, which on a slow machine (30 hosts under Ansible and
// Mitogen) take over two minutes. A shorter one closes the connections
// between rounds and measures a first run.
const (
	persisting     = "etcdplay --persist"
	ansiblePersist = "600s"
)

// printColdBreakdown says where a cold run's time went: the run's own
// timeline (what -v prints), with how long an agent upload took.
func printColdBreakdown(o *harness.Outcome) {
	upload := ""
	for _, ev := range o.Events {
		if m := uploadRE.FindString(ev.Msg); ev.Type == runner.EventHostConnect && m != "" {
			upload = "; e.g. " + m
			break
		}
	}
	for _, ev := range o.Events {
		if ev.Type != runner.EventRecap {
			continue
		}
		fmt.Printf("BENCH   cold run, where the time went (seconds from its start; steps over 1%% of it):\n")
		for _, s := range ev.Timeline {
			if s.Seconds() < ev.Elapsed/100 {
				continue
			}
			note := ""
			if s.What == "connect" {
				note = upload
			}
			hosts := "1 host"
			if s.Hosts != 1 {
				hosts = fmt.Sprintf("%d hosts", s.Hosts)
			}
			fmt.Printf("BENCH     %5.2f-%5.2f %5.2fs  %s (%s%s)\n", s.Start, s.End, s.Seconds(), s.What, hosts, note)
		}
	}
}

var uploadRE = regexp.MustCompile(`agent sent [^,]*in [0-9.]+m?s`)

// runAnsible runs ansible-playbook as fast as it is configured in
// practice, and returns how long it took and how many tasks it changed.
func runAnsible(t testing.TB, ansible, inv, pb, knownHosts string, forks int, mitogen bool, extra ...string) (time.Duration, int) {
	t.Helper()
	cmd := exec.Command(ansible, append([]string{"-i", inv, "-f", fmt.Sprint(forks), pb}, extra...)...)
	cmd.Dir = t.TempDir() // no ansible.cfg from the working directory
	cmd.Env = append(os.Environ(),
		"ANSIBLE_GATHERING=explicit",
		"ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3",
		"ANSIBLE_PIPELINING=True",
		"ANSIBLE_HOST_KEY_CHECKING=True",
		"ANSIBLE_SSH_ARGS=-o ControlMaster=auto -o ControlPersist="+ansiblePersist+" -o UserKnownHostsFile="+knownHosts,
		"ANSIBLE_RETRY_FILES_ENABLED=False",
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_LOCAL_TEMP="+t.TempDir(),
		// As etcdplay's --timeout: 90 lab hosts on two cores can take
		// longer than the default 10 s to answer a handshake, and that is
		// the machine, not the hosts.
		"ANSIBLE_TIMEOUT=120",
	)
	if mitogen {
		cmd.Env = append(cmd.Env, "ANSIBLE_STRATEGY_PLUGINS="+mitogenStrategy(), "ANSIBLE_STRATEGY=mitogen_linear")
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("ansible-playbook (mitogen %v): %v\n%s", mitogen, err, out)
	}
	changed := 0
	for _, m := range recapChangedRE.FindAllStringSubmatch(string(out), -1) {
		var c int
		fmt.Sscan(m[1], &c)
		changed += c
	}
	return d, changed
}

var recapChangedRE = regexp.MustCompile(`changed=(\d+)`)

// mitogenStrategy is the directory of Mitogen's Ansible strategy plugins
// from Debian's python3-mitogen, or "".
func mitogenStrategy() string {
	ds, _ := filepath.Glob("/usr/lib/python3/dist-packages/ansible_mitogen/plugins/strategy")
	if len(ds) == 0 {
		return ""
	}
	return ds[0]
}

// subsetInventory writes an inventory of some of the lab's hosts, in the
// lab's own form (one group, etcd), usable by both tools.
func subsetInventory(t testing.TB, l *lab.Lab, hosts []lab.Host, name string) string {
	var b strings.Builder
	b.WriteString("all:\n  children:\n    etcd:\n      hosts:\n")
	for _, h := range hosts {
		fmt.Fprintf(&b, "        %s:\n          ansible_host: %s\n          ansible_user: root\n          ansible_ssh_private_key_file: %s\n", h.Name, h.Addr, l.KeyFile)
	}
	p := filepath.Join(t.TempDir(), name+".yml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// envInt is the integer in environment variable name, or def.
func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}
