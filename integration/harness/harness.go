// Package harness runs the real etcdplay binary against lab hosts and
// checks the results with etcd's own client. Integration tests, the demo
// and the benchmarks share it.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/integration/mirror"
	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_binary"
)

// RepoRoot is the module root (playbooks/, inventory/ live there).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Playbook returns the path of a shipped playbook.
func Playbook(name string) string { return filepath.Join(RepoRoot(), "playbooks", name) }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds etcdplay once per test process (statically, as the agent
// must run on the hosts) and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "etcdplay-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "etcdplay")
		// As `make build` does: the lean agent first, for etcdplay to
		// embed, then etcdplay, stripped (it is the agent of hosts that
		// need it whole).
		for _, args := range [][]string{
			{"generate", "./internal/leanagent"},
			{"build", "-trimpath", "-ldflags", "-s -w", "-o", binPath, "./cmd/etcdplay"},
		} {
			cmd := exec.Command("go", args...)
			cmd.Dir = RepoRoot()
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %s: %v\n%s", args[0], err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var (
	mirrorMu     sync.Mutex
	mirrorURL    string
	mirrorDone   = map[string]bool{}
	mirrorPrimed = map[string]bool{}
)

// Mirror builds (or reuses from the cache) the given etcd releases and
// serves them on 127.0.0.1 for the rest of the test process. The URL it
// returns is what etcd_release_url should be. Each release is also
// verified and repacked into the controller's user cache, as an
// operator's controller holds it after its first run: a test's or a
// benchmark's first apply then costs what every later one does, not the
// one-time repack (about 4 s of CPU per release).
func Mirror(t testing.TB, versions ...string) string {
	t.Helper()
	mirrorMu.Lock()
	defer mirrorMu.Unlock()
	cache := mirror.DefaultCacheDir()
	for _, v := range versions {
		if mirrorDone[v] {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		_, err := mirror.Build(ctx, v, cache)
		cancel()
		if err != nil {
			t.Fatalf("build etcd %s for the mirror: %v", v, err)
		}
		mirrorDone[v] = true
	}
	if mirrorURL == "" {
		url, _, err := mirror.Serve(cache)
		if err != nil {
			t.Fatalf("serve mirror: %v", err)
		}
		mirrorURL = url // lives as long as the test process
	}
	for _, v := range versions {
		if mirrorPrimed[v] {
			continue
		}
		// The cluster model wants members; which ones does not matter to
		// the release.
		c, err := etcd.FromVarsAt(map[string]any{
			"etcd_release_url": mirrorURL,
			"groups":           map[string]any{"etcd": []any{"m"}},
			"hostvars":         map[string]any{"m": map[string]any{"ansible_host": "127.0.0.1"}},
		}, v)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		_, err = etcd_binary.Fetch(ctx, c, t.TempDir(), nil)
		cancel()
		if err != nil {
			t.Fatalf("etcd %s into the controller's user cache: %v", v, err)
		}
		mirrorPrimed[v] = true
	}
	return mirrorURL
}

// Env is one lab with everything needed to run etcdplay against it.
type Env struct {
	Lab      *lab.Lab
	StateDir string
	// Inventory is the inventory the runs use (the lab's by default).
	Inventory string
	// Vars are passed as -e to every run.
	Vars map[string]string
	// KnownHosts is the known_hosts file the runs verify host keys
	// against (the lab's by default).
	KnownHosts string
	// Ask leaves disruptive steps to be confirmed (no ETCDPLAY_YES): the
	// runs have no terminal, so they refuse them (exit 4).
	Ask bool
	// UserCache, when set, is the controller's user cache for the runs
	// (XDG_CACHE_HOME): a test that must see a release downloaded gives
	// it an empty one, since the runs of other tests have filled the
	// default.
	UserCache string
}

// New wraps a lab with a fresh controller state directory.
func New(t testing.TB, l *lab.Lab) *Env {
	return &Env{Lab: l, StateDir: t.TempDir(), Inventory: l.InventoryFile, Vars: map[string]string{}}
}

// Outcome is one etcdplay run: exit code, output, and the parsed JSON
// events when the run used --output json.
type Outcome struct {
	Code    int
	Stdout  string
	Stderr  string
	Events  []runner.Event
	Recap   map[string]runner.HostRecap
	Elapsed time.Duration
	// CPU is the run's user plus system time; MaxRSS its peak resident
	// memory in bytes (the controller's cost, for the benchmarks).
	CPU    time.Duration
	MaxRSS int64
}

// Changed sums changed counts over every host.
func (o *Outcome) Changed() int {
	n := 0
	for _, r := range o.Recap {
		n += r.Changed
	}
	return n
}

// Etcdplay runs `etcdplay ARGS... -i INV --known-hosts K --state-dir S -e ...`.
func (e *Env) Etcdplay(t testing.TB, args ...string) *Outcome {
	t.Helper()
	full := append([]string{}, args...)
	full = append(full, "-i", e.Inventory, "--known-hosts", e.knownHosts(), "--state-dir", e.StateDir)
	for k, v := range e.Vars {
		full = append(full, "-e", k+"="+v)
	}
	return run(t, Binary(t), full, e.environ())
}

// Ctl runs `etcdplay ctl -i INV --known-hosts K --state-dir S -- ARGS...`.
func (e *Env) Ctl(t testing.TB, args ...string) *Outcome {
	t.Helper()
	full := []string{"ctl", "-i", e.Inventory, "--known-hosts", e.knownHosts(), "--state-dir", e.StateDir}
	for k, v := range e.Vars {
		full = append(full, "-e", k+"="+v)
	}
	full = append(append(full, "--"), args...)
	return run(t, Binary(t), full, e.environ())
}

func (e *Env) knownHosts() string {
	if e.KnownHosts != "" {
		return e.KnownHosts
	}
	return e.Lab.KnownHostsFile
}

// environ is the runs' environment: the tests' own, and ETCDPLAY_YES=1
// unless Ask (the tests answer for the operator; a run that needs an
// answer and has no terminal refuses).
func (e *Env) environ() []string {
	env := os.Environ()
	if !e.Ask {
		env = append(env, "ETCDPLAY_YES=1")
	}
	if e.UserCache != "" {
		env = append(env, "XDG_CACHE_HOME="+e.UserCache)
	}
	return env
}

// Apply runs `etcdplay apply PLAYBOOK --output json` plus extra args and
// parses its events.
func (e *Env) Apply(t testing.TB, playbook string, extra ...string) *Outcome {
	t.Helper()
	args := append([]string{"apply", playbook, "--output", "json"}, extra...)
	return e.Etcdplay(t, args...)
}

// MustApply is Apply that fails the test unless the run exits 0.
func (e *Env) MustApply(t testing.TB, playbook string, extra ...string) *Outcome {
	t.Helper()
	o := e.Apply(t, playbook, extra...)
	if o.Code != 0 {
		t.Fatalf("etcdplay apply %s %v: exit %d\n%s\nstderr:\n%s%s", filepath.Base(playbook), extra, o.Code, o.Summary(), o.Stderr, e.sshdLogs(o))
	}
	return o
}

// sshdLogs is the end of sshd's journal on each host the run could not
// reach: the server's side of a refused or dropped connection.
func (e *Env) sshdLogs(o *Outcome) string {
	if e.Lab == nil {
		return ""
	}
	var b strings.Builder
	seen := map[string]bool{}
	for _, ev := range o.Events {
		if ev.Status != "unreachable" || ev.Host == "" || seen[ev.Host] {
			continue
		}
		seen[ev.Host] = true
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		out, err := e.Lab.Run(ctx, ev.Host, "journalctl -u ssh --no-pager -n 40 -o short-precise")
		cancel()
		fmt.Fprintf(&b, "\nsshd journal on %s (err %v):\n%s\n", ev.Host, err, out)
	}
	return b.String()
}

// Summary lists failed and unreachable results, for test failure messages.
func (o *Outcome) Summary() string {
	var b strings.Builder
	for _, ev := range o.Events {
		if ev.Type == runner.EventNodeDone && (ev.Status == "failed" || ev.Status == "unreachable") {
			fmt.Fprintf(&b, "%s [%s] %s: %s\n", ev.Status, ev.Host, ev.Task, ev.Msg)
		}
		if ev.Type == runner.EventHostConnect && ev.Status == "unreachable" {
			fmt.Fprintf(&b, "unreachable [%s]: %s\n", ev.Host, ev.Msg)
		}
	}
	if b.Len() == 0 && len(o.Events) == 0 {
		return o.Stdout
	}
	return b.String()
}

// Logs is what the run logged and what failed, in order: what a test
// shows when a run took another path than it expected.
func (o *Outcome) Logs() string {
	var b strings.Builder
	for _, ev := range o.Events {
		switch {
		case ev.Type == runner.EventLog:
			fmt.Fprintf(&b, "%s [%s] %s: %s\n", ev.Time.Format("15:04:05.000"), ev.Host, ev.Task, ev.Msg)
		case ev.Status == "failed" || ev.Status == "unreachable":
			fmt.Fprintf(&b, "%s %s [%s] %s: %s\n", ev.Time.Format("15:04:05.000"), ev.Status, ev.Host, ev.Task, ev.Msg)
		}
	}
	return b.String()
}

func run(t testing.TB, bin string, args, env []string) *Outcome {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = RepoRoot()
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Start()
	var peak int64
	if err == nil {
		done := make(chan struct{})
		followed := make(chan int64)
		go func() { followed <- followPeakRSS(cmd.Process.Pid, done) }()
		err = cmd.Wait()
		close(done)
		peak = <-followed
	}
	o := &Outcome{Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start), Recap: map[string]runner.HostRecap{}, MaxRSS: peak}
	if ps := cmd.ProcessState; ps != nil {
		o.CPU = ps.UserTime() + ps.SystemTime()
	}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run etcdplay %v: %v", args, err)
		}
		o.Code = ee.ExitCode()
	}
	o.parseEvents()
	return o
}

// followPeakRSS reads a running process's VmHWM (its peak resident
// memory since its exec) every few milliseconds until done is closed, and
// returns the last value in bytes. wait4's ru_maxrss would not do: Linux
// carries into it, across the exec, the high-water mark of the process
// it was forked from, and the test binary is hundreds of MB after some
// benchmarks (the simulated fleet's servers run in it). VmHWM only grows,
// so the last reading misses at most a few milliseconds' growth.
func followPeakRSS(pid int, done <-chan struct{}) int64 {
	var peak int64
	path := fmt.Sprintf("/proc/%d/status", pid)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done: // the pid may be another process's by now
			return peak
		default:
		}
		if b, err := os.ReadFile(path); err == nil {
			if i := bytes.Index(b, []byte("VmHWM:")); i >= 0 {
				var kb int64
				if _, err := fmt.Sscan(string(b[i+len("VmHWM:"):]), &kb); err == nil && kb*1024 > peak {
					peak = kb * 1024
				}
			}
		}
		select {
		case <-done:
			return peak
		case <-t.C:
		}
	}
}

// ParseOutcome reads the JSON events (and the recap) of an `--output json`
// run's stdout.
func ParseOutcome(stdout string) *Outcome {
	o := &Outcome{Stdout: stdout, Recap: map[string]runner.HostRecap{}}
	o.parseEvents()
	return o
}

func (o *Outcome) parseEvents() {
	sc := bufio.NewScanner(strings.NewReader(o.Stdout))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var ev runner.Event
		if json.Unmarshal(line, &ev) == nil {
			o.Events = append(o.Events, ev)
			for _, r := range ev.Recap {
				o.Recap[r.Host] = r
			}
		}
	}
}

// AgentFileName is what the transport names the agent file path on a
// host: etcdplay-agent-<first 16 hex digits of its sha256>.
func AgentFileName(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "etcdplay-agent-" + hex.EncodeToString(sum[:])[:16]
}

// LeanAgentFileName is the name on hosts of the lean agent the binary
// Binary built embeds (its sha256 as the build recorded it).
func LeanAgentFileName(t testing.TB) string {
	t.Helper()
	Binary(t)
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "internal", "leanagent", "bin", "etcdplay-agent.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	return "etcdplay-agent-" + string(b[:16])
}
