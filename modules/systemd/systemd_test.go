package systemd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/moduletest"
)

// The .show files are `systemctl show -p Id,LoadState,ActiveState,SubState,
// UnitFileState,NeedDaemonReload UNIT` output in each situation (this
// controller has no running systemd; the lab hosts exercise the real thing).
func loadShow(t *testing.T, name string) UnitState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".show"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseShow(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestParseShow(t *testing.T) {
	got := loadShow(t, "changed-on-disk")
	want := UnitState{ID: "etcd.service", LoadState: "loaded", ActiveState: "active", SubState: "running", UnitFileState: "enabled", NeedDaemonReload: true}
	if got != want {
		t.Errorf("ParseShow = %+v, want %+v", got, want)
	}
	if st := loadShow(t, "not-found"); st.LoadState != "not-found" || st.UnitFileState != "" {
		t.Errorf("not-found: %+v", st)
	}
	for _, tc := range []struct {
		name, out string
		want      UnitState
		err       bool
	}{
		{"running", "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\nExecMainStartTimestamp=Wed 2026-12-02 14:01:02.123456 UTC\n",
			UnitState{LoadState: "loaded", ActiveState: "active", UnitFileState: "enabled", MainStarted: time.Date(2026, 12, 2, 14, 1, 2, 123456000, time.UTC)}, false},
		{"never started", "LoadState=not-found\nActiveState=inactive\nUnitFileState=\nExecMainStartTimestamp=n/a\n",
			UnitState{LoadState: "not-found", ActiveState: "inactive"}, false},
		{"garbage", "hello\n", UnitState{}, true},
		{"bad time", "LoadState=loaded\nActiveState=active\nExecMainStartTimestamp=yesterday\n", UnitState{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseShow(tc.out)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestActive: a unit on its way up counts as running (a bootstrapping
// etcd member waits in "activating" until its cluster has quorum, and
// etcd_service must not start it twice); a failed one does not.
func TestActive(t *testing.T) {
	for state, want := range map[string]bool{
		"active": true, "activating": true, "reloading": true, "refreshing": true,
		"inactive": false, "failed": false, "deactivating": false, "": false,
	} {
		if got := (UnitState{ActiveState: state}).Active(); got != want {
			t.Errorf("ActiveState %q: Active() = %v, want %v", state, got, want)
		}
	}
}

func TestPlanSteps(t *testing.T) {
	tests := []struct {
		name   string
		args   modules.Args
		show   string
		check  bool
		want   string // "op verb" per step, joined by "; "
		replan bool
		err    string
	}{
		{"converged", modules.Args{"name": "etcd", "state": "started", "enabled": true}, "running-enabled", false, "", false, ""},
		{"start and enable", modules.Args{"name": "etcd", "state": "started", "enabled": true}, "stopped-disabled", false, "~ enable; ! start", false, ""},
		{"failed unit is started", modules.Args{"name": "etcd", "state": "started"}, "failed-enabled", false, "! start", false, ""},
		{"stop and disable", modules.Args{"name": "etcd", "state": "stopped", "enabled": false}, "running-enabled", false, "~ disable; ! stop", false, ""},
		{"already stopped", modules.Args{"name": "etcd", "state": "stopped"}, "stopped-disabled", false, "", false, ""},
		{"restart always", modules.Args{"name": "etcd", "state": "restarted"}, "running-enabled", false, "! restart", false, ""},
		{"reload running", modules.Args{"name": "etcd", "state": "reloaded"}, "running-enabled", false, "! reload", false, ""},
		{"reload stopped starts", modules.Args{"name": "etcd", "state": "reloaded"}, "stopped-disabled", false, "! start", false, ""},
		{"daemon-reload when stale", modules.Args{"name": "etcd", "daemon_reload": true, "state": "started"}, "changed-on-disk", false, "! daemon-reload", false, ""},
		{"no daemon-reload when fresh", modules.Args{"name": "etcd", "daemon_reload": true, "state": "started"}, "running-enabled", false, "", false, ""},
		{"new unit", modules.Args{"name": "etcd", "daemon_reload": true, "state": "started", "enabled": true}, "not-found", false, "! daemon-reload; ~ enable; ! start", true, ""},
		{"new unit check mode", modules.Args{"name": "etcd", "state": "started", "enabled": true}, "not-found", true, "~ enable; ! start", false, ""},
		{"missing unit", modules.Args{"name": "etcd", "state": "started"}, "not-found", false, "", false, "unit not found"},
		{"stop missing unit", modules.Args{"name": "etcd", "state": "stopped"}, "not-found", false, "", false, ""},
		{"unmask then start", modules.Args{"name": "etcd", "masked": false, "state": "started"}, "masked", false, "~ unmask; ! start", false, ""},
		{"mask", modules.Args{"name": "etcd", "masked": true, "state": "stopped"}, "running-enabled", false, "~ mask; ! stop", false, ""},
		{"start masked", modules.Args{"name": "etcd", "state": "started"}, "masked", false, "", false, "masked"},
		{"static cannot be enabled or disabled", modules.Args{"name": "systemd-journald", "enabled": false}, "static", false, "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := parse(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			steps, replan, err := PlanSteps(w, loadShow(t, tt.show), tt.check)
			if moduletest.Settled(t, err, tt.err) {
				return
			}
			var got []string
			for _, s := range steps {
				got = append(got, s.op+" "+s.verb)
				if s.verb != "daemon-reload" && s.unit != w.unit {
					t.Errorf("step %v on %q", s, s.unit)
				}
			}
			if strings.Join(got, "; ") != tt.want || replan != tt.replan {
				t.Errorf("steps %q replan %v, want %q replan %v", strings.Join(got, "; "), replan, tt.want, tt.replan)
			}
		})
	}
}

func TestAnyNeedsReload(t *testing.T) {
	for name, want := range map[string]bool{"all-clean": false, "all-one-stale": true} {
		b, err := os.ReadFile(filepath.Join("testdata", name+".show"))
		if err != nil {
			t.Fatal(err)
		}
		if got := AnyNeedsReload(string(b)); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

func TestUnitName(t *testing.T) {
	for in, want := range map[string]string{
		"etcd": "etcd.service", "etcd.service": "etcd.service", "etcd-backup.timer": "etcd-backup.timer",
		"etcd.v3": "etcd.v3.service", "": "",
	} {
		if got := UnitName(in); got != want {
			t.Errorf("UnitName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []moduletest.ArgCase{
		{Args: modules.Args{"name": "etcd", "state": "started", "enabled": "yes"}, WantArg: ""},
		{Args: modules.Args{"daemon_reload": true}, WantArg: ""},
		{Args: modules.Args{}, WantArg: "name"},
		{Args: modules.Args{"state": "started"}, WantArg: "name"},
		{Args: modules.Args{"name": "etcd", "state": "running"}, WantArg: "state"},
		{Args: modules.Args{"name": "etcd", "enabled": "maybe"}, WantArg: "enabled"},
		{Args: modules.Args{"name": "etcd", "masked": true, "state": "started"}, WantArg: "masked"},
		{Args: modules.Args{"name": "etcd", "daemon-reload": true}, WantArg: "daemon-reload"},
	}
	moduletest.CheckValidate(t, Module{}, tests)
}

// TestRealSystemd drives a throwaway unit through the real systemctl.
func TestRealSystemd(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		t.Skip("systemd is not running here (no /run/systemd/system); the lab integration tests cover this module on real hosts")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to install a unit")
	}
	unit := fmt.Sprintf("etcdplay-test-%d.service", time.Now().UnixNano()%1e6)
	path := filepath.Join("/etc/systemd/system", unit)
	if err := os.WriteFile(path, []byte("[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Cleanup(func() {
		Systemctl(ctx, "disable", "--now", unit)
		os.Remove(path)
		Systemctl(ctx, "daemon-reload")
	})
	run := func(args modules.Args) []string {
		t.Helper()
		c, err := Module{}.Plan(ctx, &modules.Env{}, args)
		if err != nil {
			t.Fatal(err)
		}
		var acts []string
		for _, a := range c.Actions {
			acts = append(acts, a.String())
		}
		if !c.Empty() {
			if _, err := (Module{}).Apply(ctx, &modules.Env{}, c); err != nil {
				t.Fatal(err)
			}
		}
		return acts
	}
	up := modules.Args{"name": unit, "state": "started", "enabled": true, "daemon_reload": true}
	if acts := run(up); len(acts) == 0 {
		t.Fatal("first apply did nothing")
	}
	if acts := run(up); len(acts) != 0 {
		t.Errorf("second apply not empty: %v", acts)
	}
	if out, _ := Systemctl(ctx, "is-active", unit); strings.TrimSpace(out) != "active" {
		t.Errorf("unit is %q", out)
	}
	down := modules.Args{"name": unit, "state": "stopped", "enabled": false}
	run(down)
	if acts := run(down); len(acts) != 0 {
		t.Errorf("second stop not empty: %v", acts)
	}
}

// TestShowOverBusMatchesSystemctl reads units in every state over
// systemd's socket and with systemctl, and wants the same UnitState. It
// needs a running systemd and root; the lab integration test
// TestUnitStateOverBus runs this test binary on a real host.
func TestShowOverBusMatchesSystemctl(t *testing.T) {
	if _, err := os.Stat(privateSocket); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and a running systemd (" + privateSocket + "); TestUnitStateOverBus runs this on a lab host")
	}
	ctx := context.Background()
	tag := fmt.Sprintf("etcdplay-bus-%d", time.Now().UnixNano()%1e6)
	running, masked := tag+"-running.service", tag+"-masked.service"
	path := filepath.Join("/etc/systemd/system", running)
	if err := os.WriteFile(path, []byte("[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Systemctl(ctx, "unmask", masked)
		Systemctl(ctx, "disable", "--now", running)
		os.Remove(path)
		Systemctl(ctx, "daemon-reload")
	})
	for _, args := range [][]string{{"daemon-reload"}, {"enable", "--now", running}, {"mask", masked}} {
		if _, err := Systemctl(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	units := []string{
		running,
		strings.TrimSuffix(running, ".service"), // systemctl's default type
		masked,
		tag + "-none.service", // no unit file: loaded as not-found
		"systemd-journald.service",
		"multi-user.target",
		"systemd-tmpfiles-clean.timer",
	}
	check := func(t *testing.T) {
		for _, u := range units {
			want, err := showSystemctl(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := showBus(ctx, u)
			if !ok {
				t.Fatalf("%s: the bus was not used", u)
			}
			if got != want {
				t.Errorf("%s:\nbus       %+v\nsystemctl %+v", u, got, want)
			}
		}
	}
	// The connection is the agent's, not the first caller's: it outlives
	// the context of the Show that dialled it.
	closeBus()
	first, cancel := context.WithCancel(ctx)
	if _, ok := showBus(first, running); !ok {
		t.Fatal("the bus was not used")
	}
	cancel()
	time.Sleep(50 * time.Millisecond) // time for a context watcher to close the connection
	conn := bus.conn
	if _, ok := showBus(ctx, running); !ok || bus.conn != conn {
		t.Fatal("the connection did not outlive the context of the Show that dialled it")
	}
	check(t)
	if st, _ := showBus(ctx, running); st.MainStarted.IsZero() || st.ActiveState != "active" || st.UnitFileState != "enabled" {
		t.Errorf("the running unit reads %+v", st)
	}
	// A unit file changed on disk: both see that a daemon-reload is due.
	if err := os.WriteFile(path, []byte("[Service]\nExecStart=/bin/sleep 1000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check(t)
	if st, _ := showBus(ctx, running); !st.NeedDaemonReload {
		t.Errorf("a changed unit file reads %+v", st)
	}
}

// TestRunOverBus drives throwaway units through every verb Run carries
// over systemd's socket, with systemctl forbidden (Show too reads over
// the socket), and checks each result as systemd reports it. It needs
// root and a running systemd; TestUnitStateOverBus runs it on a lab host.
func TestRunOverBus(t *testing.T) {
	if _, err := os.Stat(privateSocket); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and a running systemd (" + privateSocket + "); TestUnitStateOverBus runs this on a lab host")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tag := fmt.Sprintf("etcdplay-run-%d", time.Now().UnixNano()%1e6)
	good, bad := tag+"-good", tag+"-bad.service"
	files := map[string]string{
		good + ".service": "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
		bad:               "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo refusing to start; exit 3'\n",
	}
	real := Systemctl
	t.Cleanup(func() {
		real(ctx, "disable", "--now", good+".service")
		for name := range files {
			os.Remove(filepath.Join("/etc/systemd/system", name))
		}
		real(ctx, "daemon-reload")
	})
	Systemctl = func(ctx context.Context, args ...string) (string, error) {
		t.Errorf("systemctl %s ran: the socket was not used", strings.Join(args, " "))
		return real(ctx, args...)
	}
	t.Cleanup(func() { Systemctl = real })
	for name, text := range files {
		if err := os.WriteFile(filepath.Join("/etc/systemd/system", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state := func() UnitState {
		t.Helper()
		st, err := Show(ctx, good)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	run := func(verb, unit string, noBlock bool) {
		t.Helper()
		if err := Run(ctx, verb, unit, noBlock); err != nil {
			t.Fatalf("%s %s: %v", verb, unit, err)
		}
	}
	run("daemon-reload", "", false)
	if st := state(); st.LoadState != "loaded" {
		t.Fatalf("after daemon-reload: %+v", st)
	}
	run("enable", good, false) // named without its type, as systemctl takes it
	if st := state(); st.UnitFileState != "enabled" {
		t.Errorf("after enable: %+v", st)
	}
	run("start", good, false)
	first := state()
	if first.ActiveState != "active" || first.MainStarted.IsZero() {
		t.Fatalf("start returned before the unit was active: %+v", first)
	}
	run("restart", good, false)
	if st := state(); st.ActiveState != "active" || !st.MainStarted.After(first.MainStarted) {
		t.Errorf("after restart: %+v (started %v before)", st, first.MainStarted)
	}
	run("stop", good, false)
	if st := state(); st.ActiveState != "inactive" {
		t.Errorf("stop returned before the unit stopped: %+v", st)
	}
	run("disable", good, false)
	if st := state(); st.UnitFileState != "disabled" {
		t.Errorf("after disable: %+v", st)
	}
	run("start", good, true)
	for st := state(); !st.Active(); st = state() {
		if ctx.Err() != nil {
			t.Fatalf("a start without waiting never started the unit: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A failed job is an error, with what the unit said in its journal;
	// an unknown unit is an error in systemd's own words.
	if err := Run(ctx, "start", bad, false); err == nil || !strings.Contains(err.Error(), `ended "failed"`) || !strings.Contains(err.Error(), "refusing to start") {
		t.Errorf("a failing start: %v", err)
	}
	if err := Run(ctx, "start", tag+"-none.service", false); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("starting a unit with no file: %v", err)
	}
}

// closeBus drops the agent's connection, so the next Show dials again.
func closeBus() {
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if bus.conn != nil {
		bus.conn.Close()
		bus.conn = nil
	}
}
