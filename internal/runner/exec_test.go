package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/etcdplay/etcdplay/internal/transport"
	"github.com/etcdplay/etcdplay/internal/transport/sshtest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/internal/playbook"
	"github.com/etcdplay/etcdplay/modules"
)

// sshtest_fail fails when its "fail" argument is true; otherwise it reports
// rc as data and no change.
type failModule struct{}

func init() { modules.Register("sshtest_fail", failModule{}) }

func (failModule) Validate(modules.Args) error { return nil }
func (failModule) Plan(_ context.Context, _ *modules.Env, a modules.Args) (*modules.Change, error) {
	if a.Bool("fail", false) {
		return nil, fmt.Errorf("asked to fail")
	}
	return &modules.Change{}, nil
}
func (failModule) Apply(context.Context, *modules.Env, *modules.Change) (*modules.Result, error) {
	return &modules.Result{}, nil
}

// recorder is a Sink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Emit(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// results maps "task@host" to the status it reported.
func (r *recorder) results() map[string]modules.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]modules.Status{}
	for _, e := range r.events {
		if e.Type == EventNodeDone {
			out[e.Task+"@"+e.Host] = e.Status
		}
	}
	return out
}

// TestMain lets the test binary be the agent the in-process SSH servers
// run.
func TestMain(m *testing.M) {
	sshtest.Main(m)
}

// walkLab is three in-process SSH servers running the real agent (this test
// binary), and an inventory naming them h1..h3.
func walkLab(t *testing.T) (inv *inventory.Inventory, opts transport.ConnectOptions, servers []*sshtest.Server) {
	t.Helper()
	c := sshtest.NewClient(t)
	var b strings.Builder
	b.WriteString("all:\n  hosts:\n")
	for i := 1; i <= 3; i++ {
		s := sshtest.NewServer(t, c.Pub)
		c.Trust(t, s)
		servers = append(servers, s)
		fmt.Fprintf(&b, "    h%d: {ansible_host: %s, ansible_port: %d, ansible_user: tester, ansible_ssh_private_key_file: %s}\n", i, s.Addr, s.Port, c.KeyFile)
	}
	path := filepath.Join(t.TempDir(), "inv.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return inv, transport.ConnectOptions{KnownHostsFile: c.KnownHosts, Timeout: 5 * time.Second}, servers
}

func compile(t *testing.T, inv *inventory.Inventory, src string) *playbook.Compiled {
	t.Helper()
	path := filepath.Join(t.TempDir(), "play.yml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := playbook.Load(path, inv, playbook.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRunWalksTheGraph(t *testing.T) {
	inv, opts, _ := walkLab(t)
	const src = `
- name: walk
  hosts: all
  tasks:
    - name: change
      sshtest_set: {have: a, want: b}
      notify: handler
    - name: same
      sshtest_set: {have: a, want: a}
      register: same
    - name: only when unchanged
      sshtest_set: {have: a, want: c}
      when: not same.changed
    - name: only when changed
      sshtest_set: {have: a, want: c}
      when: same.changed
    - name: fails on h2
      sshtest_fail: {fail: "{{ eq inventory_hostname \"h2\" }}"}
    - name: after failure
      sshtest_set: {have: a, want: a}
    - name: forced ok
      sshtest_set: {have: a, want: b}
      changed_when: false
  handlers:
    - name: handler
      sshtest_set: {have: x, want: y}
`
	c := compile(t, inv, src)
	rec, sum := runRecorded(t, c, inv, Options{Forks: 4, Connect: opts})
	got := rec.results()
	want := map[string]modules.Status{
		"change@h1": "changed", "same@h1": "ok", "only when unchanged@h1": "changed",
		"only when changed@h1": "skipped", "fails on h2@h1": "ok", "after failure@h1": "ok",
		"forced ok@h1": "ok", "handler@h1": "changed",
		"fails on h2@h2": "failed", "after failure@h2": "skipped", "forced ok@h2": "skipped",
	}
	for k, st := range want {
		if got[k] != st {
			t.Errorf("%s: %q, want %q", k, got[k], st)
		}
	}
	if _, ran := got["handler@h2"]; ran {
		t.Errorf("handler ran on h2 after a failure there")
	}
	if !sum.Failed || sum.Unreachable {
		t.Errorf("summary failed=%v unreachable=%v, want true/false", sum.Failed, sum.Unreachable)
	}
	i := slices.IndexFunc(sum.Recap, func(r HostRecap) bool { return r.Host == "h2" })
	if r := sum.Recap[i]; r.Failed != 1 || r.Skipped < 2 {
		t.Errorf("h2 recap %+v", r)
	}
}

func TestCheckModeAppliesNothingAndNotifies(t *testing.T) {
	inv, opts, _ := walkLab(t)
	c := compile(t, inv, `
- hosts: all
  tasks:
    - name: change
      sshtest_set: {have: a, want: b}
      notify: once
  handlers:
    - name: once
      sshtest_set: {have: x, want: y}
      run_once: true
`)
	rec, _ := runRecorded(t, c, inv, Options{Check: true, Connect: opts})
	handlers := 0
	for _, e := range rec.events {
		if e.Type != EventNodeDone {
			continue
		}
		if e.Status != modules.StatusChanged || e.Change == nil || e.Change.Empty() {
			t.Errorf("%s@%s: %s %+v, want a planned change", e.Task, e.Host, e.Status, e.Change)
		}
		if e.Task == "once" {
			handlers++
		}
	}
	if handlers != 1 {
		t.Errorf("run_once handler ran %d times, want 1", handlers)
	}
}

func TestUnreachableHostSkipsOnlyItself(t *testing.T) {
	inv, opts, servers := walkLab(t)
	servers[1].Kill()
	c := compile(t, inv, `
- hosts: all
  tasks:
    - name: one
      sshtest_set: {have: a, want: b}
    - name: two
      sshtest_set: {have: a, want: b}
`)
	rec, sum := runRecorded(t, c, inv, Options{Connect: opts})
	got := rec.results()
	if got["one@h2"] != modules.StatusUnreachable || got["two@h2"] != modules.StatusSkipped {
		t.Errorf("h2: one=%s two=%s", got["one@h2"], got["two@h2"])
	}
	for _, h := range []string{"h1", "h3"} {
		if got["two@"+h] != modules.StatusChanged {
			t.Errorf("%s did not finish: %s", h, got["two@"+h])
		}
	}
	if !sum.Unreachable || sum.Failed {
		t.Errorf("summary unreachable=%v failed=%v", sum.Unreachable, sum.Failed)
	}
}

// runRecorded runs c with o (its Sink a new recorder) and returns the
// recorder and the summary.
func runRecorded(t *testing.T, c *playbook.Compiled, inv *inventory.Inventory, o Options) (*recorder, *Summary) {
	t.Helper()
	rec := &recorder{}
	o.Sink = rec
	sum, err := Run(context.Background(), c, inv, o)
	if err != nil {
		t.Fatal(err)
	}
	return rec, sum
}

// runResults runs c and returns each task's status by "task@host".
func runResults(t *testing.T, c *playbook.Compiled, inv *inventory.Inventory, opts transport.ConnectOptions) map[string]modules.Status {
	t.Helper()
	rec, _ := runRecorded(t, c, inv, Options{Connect: opts})
	return rec.results()
}

func TestAnyErrorsFatalStopsThePlay(t *testing.T) {
	inv, opts, _ := walkLab(t)
	c := compile(t, inv, `
- hosts: all
  any_errors_fatal: true
  serial: 1
  tasks:
    - name: fails on h1
      sshtest_fail: {fail: "{{ eq inventory_hostname \"h1\" }}"}
`)
	got := runResults(t, c, inv, opts)
	if got["fails on h1@h1"] != modules.StatusFailed {
		t.Fatalf("h1: %s", got["fails on h1@h1"])
	}
	for _, h := range []string{"h2", "h3"} {
		if st := got["fails on h1@"+h]; st != modules.StatusSkipped {
			t.Errorf("%s after a fatal error in an earlier batch: %q, want skipped", h, st)
		}
	}
}

// TestPartitionsAreFailureDomains: a fatal error in one partition of a
// play (one etcd cluster of site.yml) stops that partition only; the
// other's serial batches carry on.
func TestPartitionsAreFailureDomains(t *testing.T) {
	inv, opts, _ := walkLab(t)
	c := compile(t, inv, `
- hosts: all
  partition_by: "{{ if eq .inventory_hostname \"h1\" }}a{{ else }}b{{ end }}"
  any_errors_fatal: true
  serial: 1
  tasks:
    - name: fails on h1
      sshtest_fail: {fail: "{{ eq inventory_hostname \"h1\" }}"}
    - name: after
      sshtest_fail: {fail: false}
`)
	got := runResults(t, c, inv, opts)
	if got["fails on h1@h1"] != modules.StatusFailed {
		t.Fatalf("h1: %s", got["fails on h1@h1"])
	}
	if st := got["after@h1"]; st != modules.StatusSkipped {
		t.Errorf("h1 after its own failure: %q, want skipped", st)
	}
	for _, h := range []string{"h2", "h3"} {
		if st := got["after@"+h]; st != modules.StatusOK {
			t.Errorf("%s, in the other partition: %q, want ok", h, st)
		}
	}
}

// sshtest_file makes a file exist or not: its plan reads the host's state,
// so a plan made before an earlier task changed that state is stale.
type fileModule struct{}

func init() { modules.Register("sshtest_file", fileModule{}) }

func (fileModule) Validate(modules.Args) error { return nil }
func (fileModule) Plan(_ context.Context, _ *modules.Env, a modules.Args) (*modules.Change, error) {
	path, want := a.Str("path", ""), a.Str("state", "present") == "present"
	_, err := os.Stat(path)
	c := &modules.Change{Payload: a}
	if have := err == nil; have != want {
		c.Add("~", path, a.Str("state", "present"))
	}
	return c, nil
}
func (fileModule) Apply(_ context.Context, _ *modules.Env, c *modules.Change) (*modules.Result, error) {
	a := c.Payload.(modules.Args)
	path := a.Str("path", "")
	if a.Str("state", "present") == "present" {
		return &modules.Result{}, os.WriteFile(path, nil, 0o644)
	}
	return &modules.Result{}, os.Remove(path)
}

// Plans asked ahead of their turn must never stand in for a task whose
// host changed in between: here the second task's early plan sees the file
// that the first task is about to remove.
func TestSpeculativePlansNeverGoStale(t *testing.T) {
	inv, opts, _ := walkLab(t)
	dir := t.TempDir()
	for _, h := range []string{"h1", "h2", "h3"} {
		if err := os.WriteFile(filepath.Join(dir, h), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	b.WriteString("- hosts: all\n  tasks:\n")
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "    - name: noop %d\n      sshtest_file: {path: %q, state: present}\n", i, dir+"/{{ inventory_hostname }}")
	}
	fmt.Fprintf(&b, "    - name: remove\n      sshtest_file: {path: %q, state: absent}\n", dir+"/{{ inventory_hostname }}")
	fmt.Fprintf(&b, "    - name: recreate\n      sshtest_file: {path: %q, state: present}\n", dir+"/{{ inventory_hostname }}")
	c := compile(t, inv, b.String())
	for round := 0; round < 3; round++ {
		rec, _ := runRecorded(t, c, inv, Options{Connect: opts})
		got := rec.results()
		for _, h := range []string{"h1", "h2", "h3"} {
			if got["noop 3@"+h] != modules.StatusOK || got["remove@"+h] != modules.StatusChanged || got["recreate@"+h] != modules.StatusChanged {
				t.Errorf("round %d %s: noop=%s remove=%s recreate=%s", round, h, got["noop 3@"+h], got["remove@"+h], got["recreate@"+h])
			}
			if _, err := os.Stat(filepath.Join(dir, h)); err != nil {
				t.Errorf("round %d: %s's file missing after the run: a stale plan was used", round, h)
			}
		}
	}
}

// TestNoLogHidesWhatATaskPrints: a no_log task reports its status and how
// many changes it plans, never their details, its data or its error, in
// --check and in a real run; a task beside it prints as usual.
func TestNoLogHidesWhatATaskPrints(t *testing.T) {
	inv, opts, _ := walkLab(t)
	c := compile(t, inv, `
- hosts: all
  tasks:
    - name: secret
      sshtest_set: {have: a, want: hunter2}
      no_log: true
    - name: shown
      sshtest_set: {have: a, want: visible}
    - name: secret failure
      sshtest_fail: {fail: true}
      no_log: true
      ignore_errors: true
`)
	for _, check := range []bool{true, false} {
		rec, _ := runRecorded(t, c, inv, Options{Check: check, Connect: opts})
		all, err := json.Marshal(rec.events)
		if err != nil {
			t.Fatal(err)
		}
		for _, leak := range []string{"hunter2", "asked to fail"} {
			if strings.Contains(string(all), leak) {
				t.Errorf("check=%v: %q printed by a no_log task:\n%s", check, leak, all)
			}
		}
		if !strings.Contains(string(all), "visible") {
			t.Errorf("check=%v: the task without no_log printed nothing", check)
		}
		for _, e := range rec.events {
			if ev, _ := json.Marshal(e); e.Task == "secret" && strings.Contains(string(ev), `"pid"`) {
				t.Errorf("check=%v: the no_log task's data printed: %s", check, ev)
			}
			switch {
			case e.Type != EventNodeDone:
			case e.Task == "secret" && (e.Status != modules.StatusChanged || e.Change == nil || e.Change.Actions[0].Target != "1 planned changes"):
				t.Errorf("check=%v: secret@%s: %s %+v, want changed with its changes counted", check, e.Host, e.Status, e.Change)
			case e.Task == "secret failure" && (e.Status != modules.StatusFailed || e.Msg != hiddenMsg):
				t.Errorf("check=%v: secret failure@%s: %s %q", check, e.Host, e.Status, e.Msg)
			}
		}
	}
}

// TestWhenOnRegisteredResults: conditions on what an earlier task
// registered are decided when the task runs, whatever their shape. Before
// the fix "out.host is defined" was rendered at compile time, before
// anything was registered, and skipped the task.
func TestWhenOnRegisteredResults(t *testing.T) {
	inv, opts, _ := walkLab(t)
	for _, tt := range []struct {
		cond string
		want modules.Status
	}{
		{"out.changed", modules.StatusChanged},
		{"out.host is defined", modules.StatusChanged},
		{"out.data.host is defined and 'h' in out.host", modules.StatusChanged},
		{"out.nothing is defined", modules.StatusSkipped},
		{"'out' == 'x'", modules.StatusSkipped},
		{"out.host == 'nowhere'", modules.StatusSkipped},
	} {
		c := compile(t, inv, `
- hosts: all
  tasks:
    - name: a
      sshtest_set: {have: a, want: b}
      register: out
    - name: b
      sshtest_set: {have: a, want: c}
      when: "`+tt.cond+`"
`)
		rec, _ := runRecorded(t, c, inv, Options{Connect: opts})
		if got := rec.results()["b@h1"]; got != tt.want {
			t.Errorf("when: %s: %s, want %s", tt.cond, got, tt.want)
		}
	}
}

// prepareModule is controller-side and a modules.Preparer: it records when
// Prepare ran for which host, and what it was handed.
type prepareModule struct{}

var prepared = struct {
	sync.Mutex
	start, end map[string]time.Time
	remote     bool
}{start: map[string]time.Time{}, end: map[string]time.Time{}}

func init() { modules.Register("sshtest_prepare", prepareModule{}) }

func (prepareModule) RunsOnController()           {}
func (prepareModule) Validate(modules.Args) error { return nil }
func (prepareModule) Plan(context.Context, *modules.Env, modules.Args) (*modules.Change, error) {
	return &modules.Change{}, nil
}
func (prepareModule) Apply(context.Context, *modules.Env, *modules.Change) (*modules.Result, error) {
	return &modules.Result{}, nil
}
func (prepareModule) Prepare(_ context.Context, env *modules.Env, args modules.Args) {
	key := args.Str("id", "") + "@" + env.Host
	prepared.Lock()
	prepared.start[key] = time.Now()
	prepared.remote = prepared.remote || env.Remote != nil || env.Hosts != nil
	prepared.Unlock()
	time.Sleep(300 * time.Millisecond)
	prepared.Lock()
	prepared.end[key] = time.Now()
	prepared.Unlock()
}

// TestPrepareOverlapsConnecting: a Preparer's controller-side work starts
// before any host has connected, gets no host handle, is not started for
// a task the compiler skipped, and has finished when Run returns.
func TestPrepareOverlapsConnecting(t *testing.T) {
	prepared.Lock()
	prepared.start, prepared.end, prepared.remote = map[string]time.Time{}, map[string]time.Time{}, false
	prepared.Unlock()
	inv, opts, _ := walkLab(t)
	c := compile(t, inv, `
- name: prepare
  hosts: all
  tasks:
    - name: fetch
      sshtest_prepare: {id: fetch}
    - name: never
      sshtest_prepare: {id: never}
      when: false
`)
	rec, _ := runRecorded(t, c, inv, Options{Forks: 4, Connect: opts})
	prepared.Lock()
	defer prepared.Unlock()
	var firstConnect time.Time
	for _, e := range rec.events {
		if e.Type == EventHostConnect && (firstConnect.IsZero() || e.Time.Before(firstConnect)) {
			firstConnect = e.Time
		}
	}
	if len(prepared.start) != 3 || len(prepared.end) != 3 {
		t.Fatalf("prepared %v, finished %v: want fetch@h1..h3", prepared.start, prepared.end)
	}
	for h, s := range prepared.start {
		if !s.Before(firstConnect) {
			t.Errorf("%s: prepare started at %v, after the first host connected at %v", h, s, firstConnect)
		}
	}
	if prepared.remote {
		t.Error("Prepare was handed a host handle")
	}
}

// planCountModule always has a change to make, and appends a line to its
// log file each time it is planned.
type planCountModule struct{}

func init() { modules.Register("sshtest_plancount", planCountModule{}) }

func (planCountModule) Validate(modules.Args) error { return nil }
func (planCountModule) Plan(_ context.Context, env *modules.Env, a modules.Args) (*modules.Change, error) {
	f, err := os.OpenFile(a.Str("log", ""), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, env.Host); err != nil {
		return nil, err
	}
	c := &modules.Change{}
	c.Add("~", a.Str("log", ""), "always")
	return c, nil
}
func (planCountModule) Apply(_ context.Context, _ *modules.Env, c *modules.Change) (*modules.Result, error) {
	return &modules.Result{Status: modules.StatusChanged, Change: c}, nil
}

// TestNoSpeculationWhileConverging: a host whose tasks keep changing it is
// not planned ahead after its first change, since every such plan would
// be thrown away (before, each of n tasks re-planned all that followed).
func TestNoSpeculationWhileConverging(t *testing.T) {
	inv, opts, _ := walkLab(t)
	log := filepath.Join(t.TempDir(), "plans")
	const tasks = 8
	var b strings.Builder
	b.WriteString("- hosts: all\n  tasks:\n")
	for i := range tasks {
		fmt.Fprintf(&b, "    - name: change %d\n      sshtest_plancount: {log: %q}\n", i, log)
	}
	rec, _ := runRecorded(t, compile(t, inv, b.String()), inv, Options{Connect: opts})
	for task, st := range rec.results() {
		if st != modules.StatusChanged {
			t.Errorf("%s: %s", task, st)
		}
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	// Each task is planned once to run, plus the plans asked ahead of the
	// first one: 2*tasks-1 at most, against tasks*(tasks+1)/2 before.
	for _, h := range []string{"h1", "h2", "h3"} {
		if n := strings.Count(string(data), h+"\n"); n < tasks || n > 2*tasks-1 {
			t.Errorf("%s planned %d times for %d tasks that all changed it, want %d to %d", h, n, tasks, tasks, 2*tasks-1)
		}
	}
}

// blockingPrepare's Prepare returns only when its context ends.
type blockingPrepare struct{ prepareModule }

var preparesCancelled atomic.Int32

func init() { modules.Register("sshtest_prepare_blocking", blockingPrepare{}) }

func (blockingPrepare) Prepare(ctx context.Context, _ *modules.Env, _ modules.Args) {
	<-ctx.Done()
	preparesCancelled.Add(1)
}

// TestRunEndsPreparation: once the walk is done, preparation no task is
// left to use is cancelled, not waited for (a slow download would hold the
// end of a run whose hosts were all unreachable).
func TestRunEndsPreparation(t *testing.T) {
	preparesCancelled.Store(0)
	inv, opts, _ := walkLab(t)
	c := compile(t, inv, "- hosts: all\n  tasks:\n    - name: fetch\n      sshtest_prepare_blocking: {}\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		runRecorded(t, c, inv, Options{Connect: opts})
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Run is still waiting for a Prepare after its walk")
	}
	if n := preparesCancelled.Load(); n != 3 {
		t.Errorf("%d of 3 Prepare calls saw their context end", n)
	}
}

// TestTimeline: the summary and the recap event say where the time went:
// the connections, then each task that ran, over the hosts it ran on, in
// the order they started; a task skipped everywhere takes no time.
func TestTimeline(t *testing.T) {
	inv, opts, _ := walkLab(t)
	c := compile(t, inv, `
- name: timed
  hosts: all
  tasks:
    - name: first
      sshtest_set: {have: a, want: a}
    - name: once
      sshtest_set: {have: a, want: a}
      run_once: true
    - name: never
      sshtest_set: {have: a, want: a}
      when: false
    - name: only h1
      sshtest_set: {have: a, want: a}
      when: inventory_hostname == "h1"
`)
	rec, sum := runRecorded(t, c, inv, Options{Forks: 4, Connect: opts})
	type step struct {
		what  string
		hosts int
	}
	var got []step
	for i, s := range sum.Timeline {
		got = append(got, step{s.What, s.Hosts})
		if s.Start < 0 || s.End < s.Start || s.End > sum.Elapsed.Seconds() {
			t.Errorf("%s: %.3f-%.3f in a run of %.3fs", s.What, s.Start, s.End, sum.Elapsed.Seconds())
		}
		if i > 0 && s.Start < sum.Timeline[i-1].Start {
			t.Errorf("%s starts before %s, listed after it", s.What, sum.Timeline[i-1].What)
		}
	}
	want := []step{{"connect", 3}, {"first", 3}, {"once", 1}, {"only h1", 1}}
	if !slices.Equal(got, want) {
		t.Errorf("timeline %v, want %v", got, want)
	}
	recap := rec.events[len(rec.events)-1]
	if recap.Type != EventRecap || !slices.Equal(recap.Timeline, sum.Timeline) {
		t.Errorf("the recap event carries %v, the summary %v", recap.Timeline, sum.Timeline)
	}
}
