package etcd_proxy

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/hostprobe"
)

// flags are the mode's options beyond --endpoints and --listen-addr, in a
// fixed order so the rendered unit is stable.
func flags(c *etcd.Cluster, px etcd.Proxy) []string {
	if px.Mode == etcd.ProxyGateway {
		// A dead member is retried after this long; etcd's default of a
		// minute leaves a third of the new connections failing for that
		// minute after a member goes down.
		return []string{"--retry-delay=5s"}
	}
	pki := func(f string) string { return path.Join(etcd.ProxyPKIDir, f) }
	// The advertise URL is also where the grpc-proxy's own HTTP gateway
	// (/health, /v3 JSON) dials it: left to its default, 127.0.0.1:23790,
	// that would be some other process on a host with two proxies.
	adv := px.AdvertiseURL
	if adv == "" {
		adv = px.DialAddr()
	}
	out := []string{"--data-dir=" + etcd.ProxyHome, "--advertise-client-url=" + adv}
	if px.AutoSync(c.Version) {
		out = append(out, "--endpoints-auto-sync-interval="+etcd.ProxyAutoSync)
	}
	if c.TLS {
		out = append(out, "--cert="+pki("client.crt"), "--key="+pki("client.key"), "--cacert="+pki("ca.crt"))
	}
	if px.TLS {
		out = append(out, "--cert-file="+pki("server.crt"), "--key-file="+pki("server.key"), "--trusted-ca-file="+pki("ca.crt"))
	}
	if px.Namespace != "" {
		out = append(out, "--namespace="+px.Namespace)
	}
	if px.ResolverPrefix != "" {
		out = append(out, "--resolver-prefix="+px.ResolverPrefix, "--resolver-ttl="+strconv.Itoa(px.ResolverTTL))
	}
	if px.MetricsURL != "" {
		out = append(out, "--metrics-addr="+px.MetricsURL)
	}
	return out
}

// joinEndpoints is the --endpoints value: the members' client URLs for the
// grpc-proxy (its client speaks TLS to https ones), bare host:port for the
// gateway, which only opens TCP connections.
func joinEndpoints(px etcd.Proxy, urls []string) string {
	out := make([]string, 0, len(urls))
	for _, u := range urls {
		if px.Mode == etcd.ProxyGateway {
			if p, err := url.Parse(u); err == nil && p.Host != "" {
				u = p.Host
			}
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

// liveEndpoints are the client URLs of the started voting members, from
// the cluster itself: the inventory can lag behind a replace-node or a
// member added by hand, and a proxy pointed at a removed member keeps
// failing a share of its clients' requests. Under --check on a cluster
// that is not up yet (a first site.yml), the inventory's are used.
func liveEndpoints(ctx context.Context, env *modules.Env, c *etcd.Cluster) ([]string, string, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	scheme := "http://"
	if c.TLS {
		scheme = "https://"
	}
	cli, err := etcdclient.NewClient(cctx, c, env.StateDir, etcdclient.Dialer(c, env))
	if err == nil {
		defer cli.Close()
		var resp *clientv3.MemberListResponse
		if resp, err = cli.MemberList(cctx); err == nil {
			var out []string
			for _, m := range resp.Members {
				if m.IsLearner || m.Name == "" || len(m.ClientURLs) == 0 {
					continue // not serving yet
				}
				// The cluster's own scheme only: half way through
				// enable-tls.yml a member serves http and https, and the
				// http URLs go away at its end.
				for _, u := range m.ClientURLs {
					if strings.HasPrefix(u, scheme) {
						out = append(out, u)
					}
				}
			}
			if len(out) > 0 {
				return out, "the live member list", nil
			}
			err = fmt.Errorf("the member list has no started voting member")
		}
	}
	if env.Check {
		return c.Endpoints(), "the inventory (the cluster does not answer yet: " + err.Error() + ")", nil
	}
	return nil, "", fmt.Errorf("read the member list (the proxies' endpoints): %w; run site.yml for the members first", err)
}

// preflight checks that the proxy can bind its listen address on the host.
func preflight(ctx context.Context, h modules.Host, px etcd.Proxy) error {
	f, err := hostprobe.Ask(ctx, h, hostprobe.Query{Addrs: true})
	if err != nil {
		return err
	}
	if !hasAddr(f.Addrs, px.ListenAddress) {
		return &etcd.VarError{Var: "etcd_proxy_listen_address", Host: px.Host,
			Msg: fmt.Sprintf("%s is not an address of %s (it has %s)", px.ListenAddress, px.Host, strings.Join(f.Addrs, ", "))}
	}
	return nil
}

// hasAddr reports whether ip can be bound on a host with the given
// interface addresses (CIDR form): one of them, a wildcard, or inside a
// loopback network (Linux answers the whole 127.0.0.0/8 on lo).
func hasAddr(addrs []string, ip string) bool {
	want := net.ParseIP(ip)
	if want == nil {
		return false
	}
	if want.IsUnspecified() {
		return true
	}
	for _, a := range addrs {
		got, n, err := net.ParseCIDR(a)
		if err != nil {
			continue
		}
		if got.Equal(want) || (got.IsLoopback() && n.Contains(want)) {
			return true
		}
	}
	return false
}

// unitPlan is what a present/started Plan hands to Apply.
type unitPlan struct {
	fileArgs modules.Args // etcd_files': the endpoints file
	hostArgs modules.Args // etcd_service's, run in the agent
	proxy    etcd.Proxy
	cluster  *etcd.Cluster
	wait     bool // started: wait until it serves
	timeout  time.Duration
}

func planUnit(ctx context.Context, env *modules.Env, c *etcd.Cluster, px etcd.Proxy, args modules.Args, state string) (*modules.Change, error) {
	fail := func(err error) (*modules.Change, error) {
		return nil, fmt.Errorf("etcd_proxy on %s: %w", env.Host, err)
	}
	eps, from, err := liveEndpoints(ctx, env, c)
	if err != nil {
		return fail(err)
	}
	unit, err := renderUnit(args.Str("base_dir", ""), args.Str("template", DefaultTemplate), c, px, env.Vars)
	if err != nil {
		return fail(err)
	}
	list := joinEndpoints(px, eps)
	env.Logf("%s forwards to %s (from %s)", px.Mode, list, from)
	timeout, _ := args.Duration("timeout", defaultTimeout)
	p := &unitPlan{proxy: px, cluster: c, wait: state == "started", timeout: timeout}
	p.fileArgs = etcd_install.Set{
		Dirs: []etcd_install.Dir{{Path: etcd.ProxyConfigDir, Mode: "0755", Owner: "root", Group: "root"}},
		Files: []etcd_install.File{{Path: etcd.ProxyEndpointsFile, Mode: "0644", Owner: "root", Group: "root",
			Content: etcd.ProxyEndpointsContent(list)}},
	}.Args()
	p.hostArgs = modules.Args{
		"state":     state,
		"unit":      unit,
		"unit_path": etcd.ProxyUnitPath,
		"name":      etcd.ProxyUnit,
		"user":      etcd.ProxyUser,
		"group":     etcd.ProxyUser,
		"home":      etcd.ProxyHome,
		"shell":     "/usr/sbin/nologin",
		"dirs":      []any{etcd.ProxyHome},
	}
	ch := &modules.Change{Payload: p}
	files, err := env.Remote.Plan(ctx, "etcd_files", p.fileArgs)
	if err != nil {
		return fail(err)
	}
	if files.Status == modules.StatusFailed {
		return fail(fmt.Errorf("%s", files.Msg))
	}
	if files.Change != nil {
		ch.Actions = append(ch.Actions, files.Change.Actions...)
		ch.Diffs = append(ch.Diffs, files.Change.Diffs...)
	}
	res, err := env.Remote.Plan(ctx, "etcd_service", p.hostArgs)
	if err != nil {
		return fail(err)
	}
	if res.Status == modules.StatusFailed {
		return fail(fmt.Errorf("%s", res.Msg))
	}
	if res.Change != nil {
		ch.Actions = append(ch.Actions, res.Change.Actions...)
		ch.Diffs = append(ch.Diffs, res.Change.Diffs...)
	}
	return ch, nil
}

func applyUnit(ctx context.Context, env *modules.Env, ch *modules.Change, p *unitPlan) (*modules.Result, error) {
	w, err := env.Writer(env.Host)
	if err != nil {
		return nil, fmt.Errorf("etcd_proxy: %w", err)
	}
	// The endpoints first: the unit reads them when it starts.
	for _, step := range []struct {
		module string
		args   modules.Args
	}{{"etcd_files", p.fileArgs}, {"etcd_service", p.hostArgs}} {
		res, err := w.Apply(ctx, step.module, step.args)
		if err != nil {
			return nil, fmt.Errorf("etcd_proxy on %s: %w", env.Host, err)
		}
		if res.Status == modules.StatusFailed {
			return res, fmt.Errorf("etcd_proxy on %s: %s", env.Host, res.Msg)
		}
	}
	if p.wait {
		if err := waitServing(ctx, env, w, p.cluster, p.proxy, p.timeout); err != nil {
			return nil, fmt.Errorf("etcd_proxy on %s: %w", env.Host, err)
		}
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch}, nil
}
