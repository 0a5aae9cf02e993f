package etcd_restart

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/hostprobe"
)

func TestHostProbe(t *testing.T) {
	started := time.Date(2026, 11, 23, 14, 30, 0, 250000000, time.UTC)
	in := []string{"/etc/etcd/etcd.yaml", "/usr/local/bin/etcd", "/etc/etcd/pki/ca.crt"}
	facts := func(active string, started time.Time, mtimes ...time.Time) *hostprobe.Facts {
		f := &hostprobe.Facts{Units: map[string]hostprobe.Unit{unitName: {Load: "loaded", Active: active, Started: started}},
			Paths: map[string]hostprobe.Path{}}
		for i, m := range mtimes {
			f.Paths[in[i]] = hostprobe.Path{Exists: true, ModTime: m}
		}
		return f
	}
	p := newHostProbe(facts("active", started, started.Add(-time.Minute), started.Add(time.Hour), started.Add(-time.Hour)), in)
	if p.NewestP != "/usr/local/bin/etcd" || !p.Newest.Equal(started.Add(time.Hour)) {
		t.Errorf("newest %v %s", p.Newest, p.NewestP)
	}
	tests := []struct {
		name  string
		f     *hostprobe.Facts
		run   bool
		stale bool
	}{
		{"inputs newer than process", facts("active", started, started.Add(time.Second)), true, true},
		{"process started after inputs (bootstrap in this run)", facts("activating", started, started.Add(-time.Second)), true, false},
		{"not running", facts("inactive", time.Time{}, started), false, false},
		{"never started", facts("failed", time.Time{}), false, false},
	}
	for _, tt := range tests {
		p := newHostProbe(tt.f, in)
		if p.Running() != tt.run || p.Stale() != tt.stale {
			t.Errorf("%s: running=%v stale=%v, want %v %v", tt.name, p.Running(), p.Stale(), tt.run, tt.stale)
		}
	}
}

// The handler under --check plans every running member it was notified
// for (the inputs change later in the run); otherwise, and always for the
// plain task that finishes an interrupted roll, the host decides.
func TestRestartNeeded(t *testing.T) {
	started := time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC)
	stale := hostProbe{Active: "active", Started: started, Newest: started.Add(time.Minute), NewestP: "/etc/etcd/etcd.yaml"}
	fresh := hostProbe{Active: "active", Started: started, Newest: started.Add(-time.Minute), NewestP: "/etc/etcd/etcd.yaml"}
	stopped := hostProbe{Active: "inactive", Newest: started}
	tests := []struct {
		name               string
		p                  hostProbe
		notifiedUnderCheck bool
		want               bool
		why                string
	}{
		{"stale", stale, false, true, "/etc/etcd/etcd.yaml changed after etcd started"},
		{"fresh", fresh, false, false, "etcd started after its last input change"},
		{"fresh, notified under --check", fresh, true, true, "notified"},
		{"stopped, notified under --check", stopped, true, false, "etcd is inactive"},
		{"stopped", stopped, false, false, "nothing to restart (etcd_service starts it)"},
	}
	for _, tt := range tests {
		got, why := tt.p.restartNeeded(tt.notifiedUnderCheck)
		if got != tt.want || !strings.Contains(why, tt.why) {
			t.Errorf("%s: %v %q, want %v %q", tt.name, got, why, tt.want, tt.why)
		}
	}
}

func TestOrder(t *testing.T) {
	s := func(hs ...string) []step {
		var out []step
		for _, h := range hs {
			out = append(out, step{Host: h, Name: h})
		}
		return out
	}
	tests := []struct {
		in     []step
		leader string
		want   string
	}{
		{s("e1", "e2", "e3"), "e1", "e2, e3, e1"},
		{s("e1", "e2", "e3"), "e3", "e1, e2, e3"},
		{s("e1", "e3"), "e2", "e1, e3"},
		{s("e2"), "e2", "e2"},
		{s("e1", "e2"), "", "e1, e2"},
	}
	for _, tt := range tests {
		if got := names(order(tt.in, tt.leader)); got != tt.want {
			t.Errorf("order(%s, leader %s) = %s, want %s", names(tt.in), tt.leader, got, tt.want)
		}
	}
}

func TestTargetMembers(t *testing.T) {
	c, err := etcd.FromVars(map[string]any{"groups": map[string]any{"etcd": []any{"e1", "e2", "e3"}}})
	if err != nil {
		t.Fatal(err)
	}
	hosts := func(ms []etcd.Member) string {
		var n []string
		for _, m := range ms {
			n = append(n, m.Host)
		}
		return strings.Join(n, ",")
	}
	tests := []struct {
		explicit, notified []string
		want               string
		wantErr            bool
	}{
		{nil, nil, "e1,e2,e3", false},
		{nil, []string{"e3", "e1", "web1"}, "e1,e3", false},
		{nil, []string{}, "", false},
		{[]string{"e3", "e2"}, []string{"e1"}, "e2,e3", false},
		{[]string{"nope"}, nil, "", true},
	}
	for _, tt := range tests {
		got, err := targetMembers(c, tt.explicit, tt.notified)
		if (err != nil) != tt.wantErr || hosts(got) != tt.want {
			t.Errorf("targetMembers(%v, %v) = %s, %v; want %s", tt.explicit, tt.notified, hosts(got), err, tt.want)
		}
	}
}

// fakeHost stands in for a host's agent: the probe reports etcd's unit
// in the state units gives (default active) with its config changed after
// it started, and "systemctl restart" restarts the in-process member.
type fakeHost struct {
	name  string
	idx   int
	tc    *etcdtest.Cluster
	mu    *sync.Mutex
	log   *[]string
	units map[string]string
}

func (f *fakeHost) Name() string    { return f.name }
func (f *fakeHost) Address() string { return "127.0.0.1" }
func (f *fakeHost) Reachable() bool { return true }
func (f *fakeHost) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
func (f *fakeHost) Upload(context.Context, io.Reader, string, uint32) error { return nil }
func (f *fakeHost) Download(context.Context, string, io.Writer) error       { return nil }
func (f *fakeHost) Plan(ctx context.Context, module string, args modules.Args) (*modules.Result, error) {
	return nil, fmt.Errorf("unexpected plan of %s", module)
}
func (f *fakeHost) Probe(ctx context.Context, probe string, args modules.Args, out any) error {
	if probe != hostprobe.Name {
		return fmt.Errorf("unexpected probe %s", probe)
	}
	f.mu.Lock()
	active := f.units[f.name]
	f.mu.Unlock()
	if active == "" {
		active = "active"
	}
	facts := hostprobe.Facts{
		Units: map[string]hostprobe.Unit{unitName: {Load: "loaded", Active: active, Started: time.Now().Add(-time.Hour)}},
		Paths: map[string]hostprobe.Path{"/etc/etcd/etcd.yaml": {Exists: true, ModTime: time.Now()}},
	}
	b, err := json.Marshal(facts)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}
func (f *fakeHost) Apply(ctx context.Context, module string, args modules.Args) (*modules.Result, error) {
	argv := args.Strings("argv")
	if module != "command" || len(argv) == 0 {
		return nil, fmt.Errorf("unexpected %s %v", module, argv)
	}
	switch {
	case strings.Join(argv, " ") == "systemctl restart etcd.service":
		f.mu.Lock()
		*f.log = append(*f.log, f.name)
		f.mu.Unlock()
		f.tc.Restart(f.idx)
		return &modules.Result{Status: modules.StatusChanged, Data: map[string]any{"rc": 0}}, nil
	}
	return nil, fmt.Errorf("unexpected command %v", argv)
}

func TestRollingRestartLeaderLast(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	var mu sync.Mutex
	var restarted []string
	units := map[string]string{}
	setUnit := func(host, active string) {
		mu.Lock()
		units[host] = active
		mu.Unlock()
	}
	hosts := map[string]modules.Host{}
	writers := map[string]modules.HostWriter{}
	for i, m := range tc.Model.Members {
		w := &fakeHost{name: m.Host, idx: i, tc: tc, mu: &mu, log: &restarted, units: units}
		hosts[m.Host], writers[m.Host] = w, w
	}
	env := &modules.Env{Host: "etcd1", Vars: tc.Vars, Hosts: hosts, StateDir: tc.StateDir,
		Notified: []string{"etcd1", "etcd2", "etcd3"}, Remote: hosts["etcd1"]}
	ctx := context.Background()
	leader := tc.Model.Members[tc.LeaderIndex()].Name

	// --check plans all three, leader last.
	env.Check = true
	ch, err := Module{}.Plan(ctx, env, modules.Args{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Actions) != 3 || ch.Actions[2].Target != "restart "+leader || !strings.Contains(ch.Actions[2].Detail, "3/3, leader") {
		t.Fatalf("check plan: %v", ch.Actions)
	}
	if len(restarted) != 0 {
		t.Fatal("plan restarted something")
	}

	env.Check = false
	res, err := modules.Run(ctx, "etcd_restart", Module{}, env, modules.Args{}, writers)
	if err != nil {
		t.Fatal(err)
	}
	if len(restarted) != 3 || restarted[2] != leader {
		t.Errorf("restart order %v, want the leader %s last", restarted, leader)
	}
	if res.Status != modules.StatusChanged {
		t.Errorf("status %s", res.Status)
	}
	if h, err := etcdclient.CheckHealth(ctx, tc.Model, tc.StateDir, nil, etcdclient.CheckOptions{}); err != nil || !h.Healthy() {
		t.Errorf("cluster after roll: %v %v", err, h.Problems())
	}

	// etcd3 on its way back (systemd still restarting it, as a killed run
	// leaves it): the plan waits for it, then plans the restart of etcd1.
	tc.Stop(2)
	setUnit("etcd3", "deactivating")
	back := time.AfterFunc(2*time.Second, func() { tc.Restart(2); setUnit("etcd3", "active") })
	defer back.Stop()
	env.Notified = []string{"etcd1"}
	var waited []string
	env.Log = func(format string, args ...any) { waited = append(waited, fmt.Sprintf(format, args...)) }
	ch, err = Module{}.Plan(ctx, env, modules.Args{})
	if err != nil || len(ch.Actions) != 1 || !strings.Contains(strings.Join(waited, "\n"), "etcd3 is deactivating: waiting up to") {
		t.Errorf("plan with etcd3 restarting: %v %v; log %q", ch, err, waited)
	}
	env.Log = nil

	// Quorum guard: with etcd3 stopped, restarting etcd1 is refused up
	// front, without waiting for a member nothing will start.
	tc.Stop(2)
	setUnit("etcd3", "inactive")
	start := time.Now()
	_, err = Module{}.Plan(ctx, env, modules.Args{})
	if err == nil || !strings.Contains(err.Error(), "refusing") || !strings.Contains(err.Error(), "etcd3") {
		t.Errorf("plan with a member down: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the refusal took %s: it waited for a stopped member", took)
	}
	// Under --check the same situation is a warning: etcd_service may start
	// the stopped member before the handler runs.
	env.Check = true
	if ch, err := (Module{}).Plan(ctx, env, modules.Args{}); err != nil || len(ch.Actions) != 1 {
		t.Errorf("check mode with a member down: %v %v", ch, err)
	}
}
