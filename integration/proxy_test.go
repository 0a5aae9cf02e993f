package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/internal/etcdstatus"
	"github.com/etcdplay/etcdplay/modules"
)

// The proxy tests run real `etcd grpc-proxy` and `etcd gateway` processes
// under systemd on lab client hosts, in front of a real 3-member TLS
// cluster, and check what they forward with etcd's own client and etcdctl.
//
// Lab hosts share the machine's network namespace, so each proxy listens
// on its own host's 127.0.X.N (still loopback: no TLS needed locally).

// clientInventory writes an inventory with members in group etcd and
// client hosts in etcd_clients (each listening on its own address, with
// its vars), and returns its path.
func (m *mlab) clientInventory(file string, members []node, clients []node, clientVars map[string]map[string]any) string {
	m.t.Helper()
	hosts := func(nodes []node, extra map[string]map[string]any) map[string]any {
		out := map[string]any{}
		for _, n := range nodes {
			h := map[string]any{"ansible_host": n.Addr, "ansible_user": "root", "ansible_ssh_private_key_file": m.Lab.KeyFile}
			for k, v := range extra[n.Name] {
				h[k] = v
			}
			out[n.Name] = h
		}
		return out
	}
	children := map[string]any{"etcd": map[string]any{"hosts": hosts(members, nil)}}
	if len(clients) > 0 {
		vars := map[string]map[string]any{}
		for _, c := range clients {
			vars[c.Name] = map[string]any{"etcd_proxy_listen_address": c.Addr}
			for k, v := range clientVars[c.Name] {
				vars[c.Name][k] = v
			}
		}
		children["etcd_clients"] = map[string]any{"hosts": hosts(clients, vars)}
	}
	inv := map[string]any{"all": map[string]any{
		// The lab's disks are shared by every test running at once: the
		// fsync preflight measures the machine, not etcdplay.
		"vars":     map[string]any{"etcd_release_url": m.url, "etcd_max_fsync_latency": "2s"},
		"children": children,
	}}
	data, err := yaml.Marshal(inv)
	if err != nil {
		m.t.Fatal(err)
	}
	p := filepath.Join(m.Lab.Dir, file)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		m.t.Fatal(err)
	}
	return p
}

// newProxyLab is a lab of 3 members and one client host running a
// grpc-proxy (listening on its own loopback address, so plain locally),
// with the inventory saying so; the harness runs against it.
func newProxyLab(t *testing.T, name string, block int) (m *mlab, members []node, proxy node) {
	t.Helper()
	m = newMLab(t, name, block, 4)
	all := m.nodes()
	members, proxy = all[:3], all[3]
	m.Inventory = m.clientInventory(name+".yml", members, []node{proxy}, nil)
	return m, members, proxy
}

// endpoints are the members' client URLs in scheme.
func endpoints(scheme string, members []node) []string {
	out := make([]string, len(members))
	for i, n := range members {
		out[i] = scheme + "://" + n.Addr + ":2379"
	}
	return out
}

// proxyClient is etcd's client through a proxy at addr:23790.
func (m *mlab) proxyClient(addr string, tls bool) *clientv3.Client {
	m.t.Helper()
	cfg := clientv3.Config{Endpoints: []string{"http://" + addr + ":23790"}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if tls {
		cfg.Endpoints = []string{"https://" + addr + ":23790"}
		cfg.TLS = m.ClientTLS(m.t)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { cli.Close() })
	return cli
}

var endpointsRE = regexp.MustCompile(`(?m)^ETCD_PROXY_ENDPOINTS=(\S+)$`)

// proxyEndpoints are the members the proxy on host starts with, as
// host:port, sorted.
func (m *mlab) proxyEndpoints(host string) []string {
	m.t.Helper()
	env := string(m.HostFile(m.t, host, "/etc/etcd-proxy/endpoints.env"))
	sub := endpointsRE.FindStringSubmatch(env)
	if sub == nil {
		m.t.Fatalf("no ETCD_PROXY_ENDPOINTS on %s:\n%s", host, env)
	}
	var out []string
	for _, e := range strings.Split(sub[1], ",") {
		out = append(out, strings.TrimPrefix(e, "https://"))
	}
	sort.Strings(out)
	return out
}

// memberEndpoints are the live members' client URLs as host:port, sorted.
func (m *mlab) memberEndpoints(addr string) []string {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := m.client(addr).MemberList(ctx)
	if err != nil {
		m.t.Fatal(err)
	}
	var out []string
	for _, x := range resp.Members {
		for _, u := range x.ClientURLs {
			out = append(out, strings.TrimPrefix(u, "https://"))
		}
	}
	sort.Strings(out)
	return out
}

// serverWatchers sums etcd_debugging_mvcc_watcher_total over the members:
// the watchers the cluster itself serves.
func (m *mlab) serverWatchers(addrs ...string) int {
	m.t.Helper()
	tr := &http.Transport{TLSClientConfig: m.ClientTLS(m.t)}
	defer tr.CloseIdleConnections()
	re := regexp.MustCompile(`(?m)^etcd_debugging_mvcc_watcher_total (\d+)`)
	total := 0
	for _, a := range addrs {
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + a + ":2379/metrics")
		if err != nil {
			m.t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sub := re.FindSubmatch(body)
		if sub == nil {
			m.t.Fatalf("no etcd_debugging_mvcc_watcher_total in %s/metrics", a)
		}
		n, _ := strconv.Atoi(string(sub[1]))
		total += n
	}
	return total
}

// TestClientProxies: 3 members, a grpc-proxy (namespaced) and a gateway on
// two client hosts, all from one site.yml. Then a scale-out while a client
// writes through the grpc-proxy: the proxies follow the member list.
func TestClientProxies(t *testing.T) {
	m := newMLab(t, "it-proxy", 70, 7)
	all := m.nodes()
	members, spare, grpcHost, gwHost, tlsHost := all[:3], all[3], all[4], all[5], all[6]
	vars := func() map[string]map[string]any {
		return map[string]map[string]any{
			grpcHost.Name: {"etcd_proxy_namespace": "/app/", "etcd_proxy_metrics_url": "http://" + grpcHost.Addr + ":23791"},
			gwHost.Name:   {"etcd_proxy_mode": "gateway"},
			tlsHost.Name:  {"etcd_proxy_tls": true},
		}
	}
	clients := []node{grpcHost, gwHost, tlsHost}
	three := m.clientInventory("three.yml", members, clients, vars())

	check := m.apply(three, "site.yml", "--check", "--diff")
	if check.Code != 0 {
		t.Fatalf("site.yml --check: exit %d\n%s\n%s", check.Code, check.Summary(), runLogs(check))
	}
	if _, diffs := check.Planned(grpcHost.Name); !hasDiff(diffs, "/etc/systemd/system/etcd-proxy.service") {
		t.Errorf("--check --diff shows no proxy unit for %s: %v", grpcHost.Name, diffPaths(diffs))
	}

	m.mustApply(three, "site.yml")
	m.healthy(nodeAddrs(members)...)
	for _, c := range clients {
		if got, want := m.proxyEndpoints(c.Name), m.memberEndpoints(members[0].Addr); !sameList(got, want) {
			t.Errorf("%s forwards to %v, members are %v", c.Name, got, want)
		}
		props := m.UnitProps(t, c.Name, "etcd-proxy.service", "ActiveState", "User")
		if props["ActiveState"] != "active" || props["User"] != "etcd-proxy" {
			t.Errorf("%s: etcd-proxy.service %v, want active as etcd-proxy", c.Name, props)
		}
	}

	// status lists the proxies, healthy and in step with the members.
	senv := *m.Env
	senv.Inventory = three
	so := senv.Etcdplay(t, "status", "-o", "json")
	var rep etcdstatus.Report
	if err := json.Unmarshal([]byte(so.Stdout), &rep); err != nil || so.Code != 0 {
		t.Fatalf("status: exit %d, %v\n%s\n%s", so.Code, err, so.Stdout, so.Stderr)
	}
	if len(rep.Proxies) != 3 {
		t.Errorf("status lists proxies %+v, want 3", rep.Proxies)
	}
	for _, p := range rep.Proxies {
		if !p.Healthy || !p.InStep || len(p.Endpoints) != 3 {
			t.Errorf("status: proxy %+v, want healthy and in step with the 3 members", p)
		}
	}

	// etcdctl on the client host, through its local grpc-proxy: the key
	// lands under the namespace on the cluster; a watch sees a put.
	ctx := context.Background()
	ctl := "/usr/local/bin/etcdctl --endpoints=http://" + grpcHost.Addr + ":23790 "
	if out, err := m.Lab.Run(ctx, grpcHost.Name, ctl+"put greeting hello && "+ctl+"get greeting --print-value-only"); err != nil || !strings.Contains(out, "hello") {
		t.Fatalf("etcdctl through the grpc-proxy: %v\n%s", err, out)
	}
	m.mustRead(map[string]string{"/app/greeting": "hello"}, nodeAddrs(members)...)
	if out, err := m.Lab.Run(ctx, grpcHost.Name, "timeout 10 "+ctl+"watch w1 > /tmp/watch.out 2>&1 & sleep 2; "+ctl+"put w1 seen; sleep 1; cat /tmp/watch.out"); err != nil || !strings.Contains(out, "seen") {
		t.Errorf("etcdctl watch through the grpc-proxy saw nothing: %v\n%s", err, out)
	}

	// N watchers on one key through the grpc-proxy are one watcher on the
	// cluster.
	before := m.serverWatchers(nodeAddrs(members)...)
	const n = 10
	wctx, stopWatch := context.WithCancel(ctx)
	for i := 0; i < n; i++ {
		m.proxyClient(grpcHost.Addr, false).Watch(wctx, "coalesced")
	}
	time.Sleep(2 * time.Second)
	delta := m.serverWatchers(nodeAddrs(members)...) - before
	t.Logf("%d watchers through the grpc-proxy: %d more watchers on the members", n, delta)
	if delta != 1 {
		t.Errorf("%d watchers through the grpc-proxy made %d watchers on the members, want 1 (coalesced)", n, delta)
	}
	stopWatch()

	// The gateway forwards TCP to the members' TLS port: the client does
	// TLS with a member, with its own certificate.
	gw := m.proxyClient(gwHost.Addr, true)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if _, err := gw.Put(cctx, "via-gateway", "yes"); err != nil {
		t.Errorf("put through the gateway: %v", err)
	}
	cancel()
	m.mustRead(map[string]string{"via-gateway": "yes"}, nodeAddrs(members)...)

	// A grpc-proxy serving local clients over TLS takes only clients with
	// a certificate of the cluster CA.
	cctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	if _, err := m.proxyClient(tlsHost.Addr, true).Put(cctx, "via-tls-proxy", "yes"); err != nil {
		t.Errorf("put through the TLS grpc-proxy: %v", err)
	}
	cancel()
	anon := m.ClientTLS(t).Clone()
	anon.Certificates = nil
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + tlsHost.Addr + ":23790"}, TLS: anon, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel = context.WithTimeout(ctx, 3*time.Second)
	if _, err := cli.Get(cctx, "via-tls-proxy"); err == nil {
		t.Errorf("the TLS grpc-proxy served a client without a certificate")
	}
	cancel()
	cli.Close()

	if o := m.mustApply(three, "site.yml"); o.Changed() != 0 {
		t.Errorf("second site.yml changed %d: %v", o.Changed(), planActions(o))
	}

	// Scale-out while a client writes through the grpc-proxy. The
	// grpc-proxy follows the member list itself: it gets the new start
	// list and keeps running; the gateway is restarted.
	pid := func(h string) string { return m.UnitProps(t, h, "etcd-proxy.service", "MainPID")["MainPID"] }
	grpcPID, gwPID := pid(grpcHost.Name), pid(gwHost.Name)
	four := m.clientInventory("four.yml", append(members[:3:3], spare), clients, vars())
	wl := harness.StartWriteLoop(m.proxyClient(grpcHost.Addr, false), "during-scale-out", 20*time.Millisecond, 900*time.Millisecond)
	out := m.mustApply(four, "scale-out.yml")
	st := wl.Stop()
	t.Logf("scale-out 3 -> 4 through the grpc-proxy: %s", st)
	if st.OK == 0 || st.MaxGap >= time.Second {
		t.Errorf("writes through the grpc-proxy during scale-out: %s (want the longest gap below the 1s election timeout)", st)
	}
	want := m.memberEndpoints(members[0].Addr)
	if len(want) != 4 {
		t.Fatalf("members after scale-out: %v", want)
	}
	for _, c := range clients {
		if got := m.proxyEndpoints(c.Name); !sameList(got, want) {
			t.Errorf("after scale-out %s forwards to %v, members are %v", c.Name, got, want)
		}
	}
	plan := strings.Join(planActions(out), "\n")
	if !strings.Contains(plan, "restart etcd-proxy.service on "+gwHost.Name) || pid(gwHost.Name) == gwPID {
		t.Errorf("scale-out did not restart the gateway (pid %s -> %s): %s", gwPID, pid(gwHost.Name), plan)
	}
	if strings.Contains(plan, "restart etcd-proxy.service on "+grpcHost.Name) || pid(grpcHost.Name) != grpcPID {
		t.Errorf("scale-out restarted the grpc-proxy (pid %s -> %s), which follows the member list itself: %s", grpcPID, pid(grpcHost.Name), plan)
	}
	// The grpc-proxy's own sync: within its auto-sync interval (30s) it
	// connects to the new member (the process is the only one ss can name
	// from the client host's PID namespace).
	deadline := time.Now().Add(45 * time.Second)
	for {
		out, err := m.Lab.Run(ctx, grpcHost.Name, "ss -Htnp state established dst "+spare.Addr+":2379")
		if err == nil && strings.Contains(out, `"etcd"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the grpc-proxy on %s never connected to the new member %s: %v\n%s", grpcHost.Name, spare.Addr, err, out)
		}
		time.Sleep(time.Second)
	}
	if o := m.mustApply(four, "site.yml"); o.Changed() != 0 {
		t.Errorf("site.yml after scale-out changed %d: %v", o.Changed(), planActions(o))
	}

	// A member dies and is replaced on a new host while the client keeps
	// writing through the grpc-proxy.
	dead := members[1]
	handLeadershipAway(t, m.Env, "https://"+dead.Addr+":2379", "https://"+members[0].Addr+":2379")
	wl = harness.StartWriteLoop(m.proxyClient(grpcHost.Addr, false), "during-replace", 20*time.Millisecond, 900*time.Millisecond)
	if err := m.Lab.Kill(dead.Name); err != nil {
		t.Fatal(err)
	}
	newHost, err := m.Lab.AddHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	moved := m.clientInventory("moved.yml", []node{members[0], {dead.Name, newHost.Addr}, members[2], spare}, clients, vars())
	m.mustApply(moved, "replace-node.yml", "-e", "node="+dead.Name)
	st = wl.Stop()
	t.Logf("%s dead and replaced at %s, through the grpc-proxy: %s", dead.Name, newHost.Addr, st)
	if st.OK == 0 || st.MaxGap >= time.Second {
		t.Errorf("writes through the grpc-proxy during replace-node: %s (want the longest gap below the 1s election timeout)", st)
	}
	want = m.memberEndpoints(members[0].Addr)
	if len(want) != 4 || !slices.Contains(want, newHost.Addr+":2379") {
		t.Fatalf("members after replace-node: %v", want)
	}
	for _, c := range clients {
		if got := m.proxyEndpoints(c.Name); !sameList(got, want) {
			t.Errorf("after replace-node %s starts with %v, members are %v", c.Name, got, want)
		}
	}
	cctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	if _, err := m.proxyClient(gwHost.Addr, true).Put(cctx, "via-gateway", "after-replace"); err != nil {
		t.Errorf("put through the gateway after replace-node: %v", err)
	}
	cancel()
}

// TestClientProxyBadInput: a client host that is also a member, a
// namespace without its trailing slash and a listen address the host does
// not have are refused, naming the variable, and change nothing.
func TestClientProxyBadInput(t *testing.T) {
	m := newMLab(t, "it-proxybad", 71, 2)
	all := m.nodes()
	cases := []struct {
		name    string
		members []node
		vars    map[string]any
		want    []string
		code    int
	}{
		{"member too", all, nil, []string{"etcd_clients", "is in both"}, 4},
		{"namespace without slash", all[:1], map[string]any{"etcd_proxy_namespace": "/app"}, []string{"namespace-without-slash.yml:", "etcd_proxy_namespace", `must end with "/"`}, 4},
		{"listen address not on the host", all[:1], map[string]any{"etcd_proxy_listen_address": "198.51.100.77"}, []string{"listen-address-not-on-the-host.yml:", "etcd_proxy_listen_address", "198.51.100.77 is not an address of etcd2"}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv := m.clientInventory(strings.ReplaceAll(tc.name, " ", "-")+".yml", tc.members, all[1:], map[string]map[string]any{all[1].Name: tc.vars})
			before := m.CheckSnapshot(t)
			o := m.apply(inv, "clients.yml")
			text := o.Stdout + o.Stderr
			if o.Code != tc.code {
				t.Errorf("exit %d, want %d\n%s", o.Code, tc.code, text)
			}
			t.Logf("exit %d: %s", o.Code, badFirstLine(text, tc.want[0]))
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			m.Unchanged(t, before, "bad input")
		})
	}
}

func hasDiff(diffs []modules.FileDiff, path string) bool {
	for _, d := range diffs {
		if d.Path == path {
			return true
		}
	}
	return false
}

func diffPaths(diffs []modules.FileDiff) []string {
	var out []string
	for _, d := range diffs {
		out = append(out, d.Path)
	}
	return out
}
