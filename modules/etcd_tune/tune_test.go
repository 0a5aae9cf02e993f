package etcd_tune

import (
	"context"
	"fmt"
	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/internal/localhost"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

const ms = time.Millisecond

func TestPercentile(t *testing.T) {
	s := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for p, want := range map[float64]time.Duration{50: 5, 99: 10, 90: 9, 10: 1, 0: 1} {
		if got := percentile(s, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if percentile(nil, 99) != 0 {
		t.Error("empty")
	}
}

func TestOffsetAndSpread(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	samples := []clockSample{
		{Sent: base, Received: base.Add(40 * ms), Host: base.Add(2*time.Second + 10*ms)},
		// The tightest round trip wins: 4ms, host read at +2s+2ms.
		{Sent: base.Add(100 * ms), Received: base.Add(104 * ms), Host: base.Add(2*time.Second + 102*ms)},
	}
	off, unc, ok := offset(samples)
	if !ok || off != 2*time.Second || unc != 2*ms {
		t.Errorf("offset = %v ± %v (%v), want 2s ± 2ms", off, unc, ok)
	}
	spread, u, ahead, behind := skewSpread(
		map[string]time.Duration{"a": 300 * ms, "b": -900 * ms, "c": 0},
		map[string]time.Duration{"a": ms, "b": 2 * ms, "c": ms})
	if spread != 1200*ms || u != 3*ms || ahead != "a" || behind != "b" {
		t.Errorf("spread %v ± %v %s..%s", spread, u, ahead, behind)
	}
}

func TestDeriveTiming(t *testing.T) {
	tests := []struct {
		rtt     time.Duration
		want    Timing
		wantErr bool
	}{
		{200 * time.Microsecond, Timing{100, 1000}, false}, // LAN: etcd's defaults
		{0, Timing{100, 1000}, false},
		{101 * ms, Timing{110, 1100}, false},
		{150 * ms, Timing{150, 1500}, false},
		{487 * ms, Timing{490, 4900}, false}, // the runbook's ~500ms ping
		{5 * time.Second, Timing{5000, 50000}, false},
		{5100 * ms, Timing{5100, 51000}, true},
	}
	for _, tt := range tests {
		got, err := deriveTiming(tt.rtt)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("deriveTiming(%v) = %v, %v; want %v err=%v", tt.rtt, got, err, tt.want, tt.wantErr)
		}
	}
	prev := &Timing{200, 2000}
	for next, want := range map[Timing]Timing{
		{210, 2100}: {200, 2000}, // noise: keep
		{150, 1500}: {200, 2000},
		{260, 2600}: {260, 2600}, // real change
		{100, 1000}: {100, 1000},
	} {
		if got := stable(prev, next); got != want {
			t.Errorf("stable(%v, %v) = %v, want %v", *prev, next, got, want)
		}
	}
	if got := stable(nil, Timing{100, 1000}); got != (Timing{100, 1000}) {
		t.Errorf("no previous: %v", got)
	}
}

const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0101007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 41234 1 0000000000000000 100 0 0 10 0
   1: 0201007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 41240 1 0000000000000000 100 0 0 10 0
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1200 1 0000000000000000 100 0 0 10 0
   3: 0101007F:094B 0201007F:B3E0 01 00000000:00000000 00:00000000 00000000   998        0 0 1 0000000000000000 20 4 30 10 -1
`

const procNetTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5556 1 0000000000000000 100 0 0 10 0
`

func TestParseProcNetTCP(t *testing.T) {
	ls, err := parseProcNetTCP([]byte(procNetTCP))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, fmt.Sprintf("%s:%d/%d", l.IP, l.Port, l.Inode))
	}
	want := "127.0.1.1:2379/41234 127.0.1.2:2379/41240 0.0.0.0:22/1200" // the ESTABLISHED line is not a listener
	if strings.Join(got, " ") != want {
		t.Errorf("got %s\nwant %s", strings.Join(got, " "), want)
	}
	ls6, err := parseProcNetTCP([]byte(procNetTCP6))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls6) != 2 || !ls6[0].IP.Equal(net.IPv6unspecified) || ls6[0].Port != 80 || !ls6[1].IP.Equal(net.IPv6loopback) || ls6[1].Port != 8080 {
		t.Errorf("tcp6: %+v", ls6)
	}
	if _, err := parseProcNetTCP([]byte("hdr\n 0: zz:1 0:0 0A a b c d e f\n")); err == nil {
		t.Error("garbage accepted")
	}
}

func TestConflicts(t *testing.T) {
	ip := net.ParseIP
	tests := []struct {
		l     listener
		addrs []net.IP
		port  int
		want  bool
	}{
		{listener{IP: ip("127.0.1.1"), Port: 2379}, []net.IP{ip("127.0.1.2")}, 2379, false}, // another lab member
		{listener{IP: ip("127.0.1.2"), Port: 2379}, []net.IP{ip("127.0.1.2")}, 2379, true},
		{listener{IP: ip("0.0.0.0"), Port: 2379}, []net.IP{ip("127.0.1.2")}, 2379, true},
		{listener{IP: ip("::"), Port: 2379}, []net.IP{ip("10.0.0.1")}, 2379, true},
		{listener{IP: ip("10.0.0.1"), Port: 2379}, nil, 2379, true}, // unresolvable address: be strict
		{listener{IP: ip("127.0.1.2"), Port: 2380}, []net.IP{ip("127.0.1.2")}, 2379, false},
	}
	for i, tt := range tests {
		if got := conflicts(tt.l, tt.addrs, tt.port); got != tt.want {
			t.Errorf("%d: conflicts = %v", i, got)
		}
	}
}

func TestOurs(t *testing.T) {
	tests := []struct {
		p    *process
		want bool
	}{
		{&process{Exe: "/usr/local/bin/etcd"}, true},
		{&process{Exe: "/opt/etcd/v3.6.16/etcd"}, true},
		{&process{Exe: "/opt/etcd/v3.6.16/etcdctl"}, false},
		{&process{Exe: "/usr/bin/etcd", Cgroup: "0::/system.slice/etcd.service\n"}, true},
		{&process{Exe: "/usr/sbin/nginx", Cgroup: "0::/system.slice/nginx.service\n"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := ours(tt.p, "/opt/etcd", "/usr/local/bin/etcd"); got != tt.want {
			t.Errorf("ours(%+v) = %v", tt.p, got)
		}
	}
}

// TestCheckPortsFindsHolder holds a port in this process and expects the
// real /proc scan to name this test binary as the holder.
func TestCheckPortsFindsHolder(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	reps, err := checkPorts("/proc", []net.IP{net.ParseIP("127.0.0.1")}, []int{port, port + 1}, "/opt/etcd", "/usr/local/bin/etcd")
	if err != nil {
		t.Fatal(err)
	}
	if !reps[0].Busy || reps[0].Ours || !strings.Contains(reps[0].Holder, fmt.Sprintf("pid %d ", os.Getpid())) {
		t.Errorf("held port: %+v", reps[0])
	}
	// Another address on the same port is not a conflict.
	reps, err = checkPorts("/proc", []net.IP{net.ParseIP("127.0.0.2")}, []int{port}, "", "")
	if err != nil || reps[0].Busy {
		t.Errorf("other address: %+v %v", reps, err)
	}
}

func TestFsyncAndAncestor(t *testing.T) {
	dir := t.TempDir()
	_, got, err := hostfile.FreeBytes(filepath.Join(dir, "var", "lib", "etcd"))
	if err != nil || got != dir {
		t.Fatalf("FreeBytes measured at %s, %v", got, err)
	}
	s, err := fsyncLatency(dir, 3)
	if err != nil || len(s) != 3 {
		t.Fatalf("fsync: %v %v", s, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".etcdplay-fsync-*"))
	if len(left) != 0 {
		t.Errorf("test file left behind: %v", left)
	}
}

// A data dir that holds a member is sampled only when fsync_samples was
// asked for explicitly (fsync_new_only false).
func TestFsyncNewMembersOnly(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		member, newOnly bool
		samples         int
	}{{false, true, 3}, {true, true, 0}, {true, false, 3}} {
		if c.member {
			if err := os.MkdirAll(filepath.Join(dir, "member"), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		var r probeResult
		if err := measure(context.Background(), modules.Args{"data_dir": dir, "fsync_samples": 3, "fsync_new_only": c.newOnly}, &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Fsync) != c.samples || r.FsyncSkipped != (c.samples == 0) {
			t.Errorf("member %v, new only %v: %d samples, skipped %v; want %d", c.member, c.newOnly, len(r.Fsync), r.FsyncSkipped, c.samples)
		}
	}
}

func TestConnectRTT(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer l.Close()
	if s, err := connectRTT(context.Background(), open, 3, time.Second); err != nil || len(s) != 3 {
		t.Errorf("open port: %v %v", s, err)
	}
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l2.Addr().String()
	l2.Close()
	if s, err := connectRTT(context.Background(), closed, 2, time.Second); err != nil || len(s) != 2 {
		t.Errorf("refused port still measures a round trip: %v %v", s, err)
	}
}

func rep(name string, mut func(*hostReport)) hostReport {
	r := hostReport{
		Member: etcd.Member{Host: name, Name: name},
		Probe: probeResult{DiskPath: "/var/lib/etcd", FreeBytes: 20 << 30,
			Fsync: []time.Duration{ms, 2 * ms, ms},
			Ports: []portReport{{Port: 2379}, {Port: 2380, Busy: true, Ours: true, Holder: "pid 9 /opt/etcd/v3.6.16/etcd"}},
			RTT:   map[string][]time.Duration{"peer:2380": {ms / 2, ms / 2, ms}}},
	}
	if mut != nil {
		mut(&r)
	}
	return r
}

func TestEvaluate(t *testing.T) {
	lim := limits{MaxSkew: time.Second, MinFree: 1 << 30, MaxFsync: 100 * ms, WarnFsync: 10 * ms, CheckPorts: true, MeasureRTT: true}
	tests := []struct {
		name     string
		reps     []hostReport
		failures []string
		warnings []string
	}{
		{name: "all good", reps: []hostReport{rep("e1", nil), rep("e2", func(r *hostReport) { r.Offset = 300 * ms })}},
		{
			name:     "clock spread",
			reps:     []hostReport{rep("e1", func(r *hostReport) { r.Offset = 800 * ms }), rep("e2", func(r *hostReport) { r.Offset = -700 * ms })},
			failures: []string{"clocks of e1 and e2 are 1.5s apart"},
		},
		{
			name:     "far from controller only warns",
			reps:     []hostReport{rep("e1", func(r *hostReport) { r.Offset = 3 * time.Second })},
			warnings: []string{"e1: clock is 3s off the controller's"},
		},
		{
			name:     "low disk",
			reps:     []hostReport{rep("e1", func(r *hostReport) { r.Probe.FreeBytes = 300 << 20 })},
			failures: []string{"e1: only 300 MiB free in /var/lib/etcd, etcd_min_free_disk is 1.0 GiB"},
		},
		{
			name: "slow and very slow disks",
			reps: []hostReport{
				rep("e1", func(r *hostReport) { r.Probe.Fsync = []time.Duration{20 * ms} }),
				// One slow sync among fast ones is a busy moment, not a slow disk.
				rep("e2", func(r *hostReport) { r.Probe.Fsync = []time.Duration{ms, ms, 150 * ms} }),
				rep("e3", func(r *hostReport) { r.Probe.Fsync = []time.Duration{120 * ms, 150 * ms, 160 * ms} }),
			},
			warnings: []string{"e1: fdatasync p99 20ms", "e2: fdatasync p99 150ms"},
			failures: []string{"e3: fdatasync median 150ms (p99 160ms) in /var/lib/etcd is above etcd_max_fsync_latency 100ms"},
		},
		{
			name: "port held by someone else",
			reps: []hostReport{rep("e1", func(r *hostReport) {
				r.Probe.Ports[0] = portReport{Port: 2379, Busy: true, Holder: "pid 812 /usr/sbin/nginx", Listen: "0.0.0.0:2379"}
			})},
			failures: []string{"e1: port 2379 is in use by pid 812 /usr/sbin/nginx (listening on 0.0.0.0:2379)"},
		},
		{
			name:     "peer unreachable",
			reps:     []hostReport{rep("e1", func(r *hostReport) { r.Probe.RTTErr = map[string]string{"peer:2380": "i/o timeout"} })},
			failures: []string{"e1: cannot reach peer address peer:2380: i/o timeout"},
		},
		{
			name:     "host did not answer",
			reps:     []hostReport{rep("e1", func(r *hostReport) { r.Err = fmt.Errorf("e1: connection lost") })},
			failures: []string{"e1: could not run the checks: e1: connection lost"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := evaluate(tt.reps, lim, 0)
			match(t, "failures", v.Failures, tt.failures)
			match(t, "warnings", v.Warnings, tt.warnings)
		})
	}
	v := evaluate([]hostReport{rep("e1", nil), rep("e2", func(r *hostReport) {
		r.Probe.RTT = map[string][]time.Duration{"x:2380": {3 * ms, 4 * ms, 40 * ms}}
	})}, lim, 0)
	if v.MaxRTT != 4*ms {
		t.Errorf("max RTT (largest pair median) = %v, want 4ms", v.MaxRTT)
	}
}

func match(t *testing.T, what string, got, wantPrefixes []string) {
	t.Helper()
	if len(got) != len(wantPrefixes) {
		t.Errorf("%s = %q, want %q", what, got, wantPrefixes)
		return
	}
	for i := range got {
		if !strings.HasPrefix(got[i], wantPrefixes[i]) {
			t.Errorf("%s[%d] = %q, want prefix %q", what, i, got[i], wantPrefixes[i])
		}
	}
}

func TestModuleEndToEnd(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "etcd")
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	freePort := func() int {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	free, peer := freePort(), freePort()
	vars := func(clientPort int) map[string]any {
		return map[string]any{
			"groups":                  map[string]any{"etcd": []any{"e1", "e2"}},
			"etcd_data_dir":           dataDir,
			"etcd_heartbeat_interval": "auto",
			"hostvars": map[string]any{
				"e1": map[string]any{"etcd_address": "127.0.0.1", "etcd_client_port": clientPort, "etcd_peer_port": peer},
				"e2": map[string]any{"etcd_address": "127.0.0.2", "etcd_client_port": clientPort, "etcd_peer_port": peer},
			},
		}
	}
	state := t.TempDir()
	env := &modules.Env{Host: "e1", StateDir: state, Hosts: map[string]modules.Host{"e1": localhost.New("e1"), "e2": localhost.New("e2")},
		Vars: vars(free)}
	ctx := context.Background()
	ch, err := Module{}.Plan(ctx, env, modules.Args{"fsync_samples": 3, "min_free_disk": "1M"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Actions) != 1 || ch.Actions[0].Op != "+" || !strings.Contains(ch.Actions[0].Detail, "heartbeat 100ms, election timeout 1000ms") {
		t.Fatalf("first run: %v", ch.Actions)
	}
	if _, err := (Module{}).Apply(ctx, env, ch); err != nil {
		t.Fatal(err)
	}
	c, _ := etcd.FromVars(env.Vars)
	hb, el, err := c.EffectiveTiming(state)
	if err != nil || hb != 100 || el != 1000 {
		t.Errorf("recorded timing %d/%d %v", hb, el, err)
	}
	// Second run: nothing to change.
	ch, err = Module{}.Plan(ctx, env, modules.Args{"fsync_samples": 3, "min_free_disk": "1M"})
	if err != nil || !ch.Empty() {
		t.Fatalf("second run: %v %v", ch, err)
	}
	// A client port held by this test process: preflight fails, naming it.
	env.Vars = vars(held.Addr().(*net.TCPAddr).Port)
	_, err = Module{}.Plan(ctx, env, modules.Args{"fsync_samples": 1, "min_free_disk": "1M"})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("e1: port %d is in use by pid %d", held.Addr().(*net.TCPAddr).Port, os.Getpid())) {
		t.Errorf("held port: %v", err)
	}
	if strings.Contains(fmt.Sprint(err), "e2: port") {
		t.Errorf("e2 listens on another address and must not conflict: %v", err)
	}
	// An impossible disk requirement fails too.
	env.Vars = vars(free)
	_, err = Module{}.Plan(ctx, env, modules.Args{"fsync_samples": 1, "min_free_disk": "1000T"})
	if err == nil || !strings.Contains(err.Error(), "etcd_min_free_disk") {
		t.Errorf("disk: %v", err)
	}
}
