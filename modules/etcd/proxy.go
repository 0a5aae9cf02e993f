package etcd

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Client hosts: the inventory's etcd_clients group runs a local proxy in
// front of the cluster, so applications there talk to a stable endpoint
// while the members change.
const (
	ClientsGroup     = "etcd_clients"
	ProxyGRPC        = "grpc-proxy"
	ProxyGateway     = "gateway"
	DefaultProxyPort = 23790
	// DefaultProxyListen keeps the proxy local to its host: only local
	// applications use it, and it may then run without TLS.
	DefaultProxyListen      = "127.0.0.1"
	DefaultProxyResolverTTL = 60
	// ProxyUser is the system user the proxy runs as (never root, never
	// etcd: a client host holds no member data).
	ProxyUser = "etcd-proxy"
	// ProxyClientCNPrefix names each grpc-proxy's own client certificate
	// in the controller state dir: etcd-proxy-<host>.
	ProxyClientCNPrefix = "etcd-proxy-"
)

// ProxyModes are the proxy kinds etcd ships (`etcd grpc-proxy` and `etcd
// gateway`; both are still in 3.5, 3.6 and 3.7).
var ProxyModes = []string{ProxyGRPC, ProxyGateway}

// Proxy is one client host's proxy as the inventory describes it.
type Proxy struct {
	Host    string // inventory hostname
	SSHHost string // ansible_host, "" when unset
	Mode    string // grpc-proxy or gateway
	// ListenAddress and Port are where local clients connect.
	ListenAddress string
	Port          int
	// AdvertiseURL is what the grpc-proxy registers under ResolverPrefix.
	AdvertiseURL   string
	Namespace      string // grpc-proxy: key prefix, ending in "/"
	ResolverPrefix string
	ResolverTTL    int
	MetricsURL     string // grpc-proxy --metrics-addr, "" for none
	// TLS is TLS between local clients and a grpc-proxy (the gateway only
	// forwards TCP: its clients do TLS with the members themselves).
	TLS bool
	// Warnings are sound but risky choices, printed by every plan.
	Warnings []string
}

// AutoSync reports whether the proxy follows membership itself: the
// grpc-proxy re-reads the member list every ProxyAutoSync (from 3.5), so a
// changed list needs no restart, only a new start list for its next
// start. The gateway has no such thing: it is restarted.
func (p Proxy) AutoSync(v Version) bool { return p.Mode == ProxyGRPC && v.AtLeast(3, 5) }

// ProxyAutoSync is how often a grpc-proxy re-reads the member list.
const ProxyAutoSync = "30s"

// Listen is the proxy's host:port.
func (p Proxy) Listen() string {
	return net.JoinHostPort(p.ListenAddress, strconv.Itoa(p.Port))
}

// URL is what a local client puts in --endpoints: TLS to a grpc-proxy
// that terminates it, and TLS end to end through a gateway to a TLS
// cluster.
func (p Proxy) URL(clusterTLS bool) string {
	scheme := "http"
	if p.TLS || (p.Mode == ProxyGateway && clusterTLS) {
		scheme = "https"
	}
	return scheme + "://" + p.Listen()
}

// SANs are the names the grpc-proxy's own server certificate carries.
func (p Proxy) SANs() []string {
	return dedupe([]string{p.ListenAddress, p.Host, p.SSHHost, "localhost", "127.0.0.1"}, "0.0.0.0", "::")
}

// CertName names the proxy's own certificates in the controller state
// dir. The client certificate's CN itself is empty: grpc-proxy refuses a
// backend certificate with a CN (etcd would take the CN as the user of
// every request), since it forwards its clients' credentials instead.
func (p Proxy) CertName() string { return ProxyClientCNPrefix + p.Host }

// Proxy returns the proxy on client host h.
func (c *Cluster) Proxy(h string) (*Proxy, error) {
	for i := range c.Proxies {
		if c.Proxies[i].Host == h {
			return &c.Proxies[i], nil
		}
	}
	return nil, fmt.Errorf("host %s is not in inventory group %q", h, ClientsGroup)
}

// GatewaySANs are the gateway listen addresses the members' server
// certificates must carry: a gateway hands the client's TLS to a member
// untouched, so the client checks the member's certificate against the
// gateway's address.
func (c *Cluster) GatewaySANs() []string {
	var out []string
	for _, p := range c.Proxies {
		if p.Mode == ProxyGateway {
			out = append(out, p.ListenAddress)
		}
	}
	return dedupe(out, "0.0.0.0", "::")
}

// MemberSANs are m's SANs plus the gateways'.
func (c *Cluster) MemberSANs(m Member) []string {
	return dedupe(append(m.SANs(), c.GatewaySANs()...))
}

func dedupe(in []string, drop ...string) []string {
	seen := map[string]bool{"": true}
	for _, d := range drop {
		seen[d] = true
	}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// readProxies reads the etcd_clients group. A missing group is no proxy.
func (c *Cluster) readProxies(vars map[string]any, errs *[]error) {
	hosts := groupHosts(vars, ClientsGroup)
	hostvars, _ := vars["hostvars"].(map[string]any)
	members := map[string]bool{}
	for _, m := range c.Members {
		members[m.Host] = true
	}
	listens := map[string]string{}
	for _, h := range hosts {
		hv, _ := hostvars[h].(map[string]any)
		if hv == nil {
			hv = map[string]any{}
		}
		r := varReader{vars: hv, host: h, errs: errs}
		if members[h] {
			r.fail("groups", "%s is in both %q and %q: a client host runs a proxy in front of the cluster, a member serves clients itself; take it out of one group", h, Group, ClientsGroup)
			continue
		}
		p := Proxy{Host: h, SSHHost: r.str("ansible_host", "")}
		p.Mode = r.str("etcd_proxy_mode", ProxyGRPC)
		if !oneOf(p.Mode, ProxyModes) {
			r.fail("etcd_proxy_mode", "%q must be %s", p.Mode, strings.Join(ProxyModes, " or "))
		}
		p.ListenAddress = r.str("etcd_proxy_listen_address", DefaultProxyListen)
		ip := net.ParseIP(p.ListenAddress)
		if ip == nil {
			r.fail("etcd_proxy_listen_address", "%q must be an IP address of the host (the proxy binds IPs only)", p.ListenAddress)
		}
		p.Port = r.integer("etcd_proxy_port", DefaultProxyPort)
		if p.Port < 1 || p.Port > 65535 {
			r.fail("etcd_proxy_port", "%d is not a TCP port", p.Port)
		}
		key := p.SSHHost + "|" + p.Listen()
		if other, dup := listens[key]; dup && ip != nil {
			r.fail("etcd_proxy_port", "%s is also where the proxy of %s listens on the same machine", p.Listen(), other)
		}
		listens[key] = h

		grpcOnly := map[string]bool{}
		p.Namespace = r.str("etcd_proxy_namespace", "")
		if p.Namespace != "" {
			grpcOnly["etcd_proxy_namespace"] = true
			if !strings.HasSuffix(p.Namespace, "/") {
				r.fail("etcd_proxy_namespace", "%q must end with \"/\" (%q): without it the prefix also matches every key that merely starts with it, such as %q", p.Namespace, p.Namespace+"/", p.Namespace+"-other/key")
			}
		}
		p.ResolverPrefix = r.str("etcd_proxy_resolver_prefix", "")
		p.ResolverTTL = r.integer("etcd_proxy_resolver_ttl", 0)
		if p.ResolverPrefix != "" {
			grpcOnly["etcd_proxy_resolver_prefix"] = true
			if p.ResolverTTL == 0 {
				p.ResolverTTL = DefaultProxyResolverTTL
			}
		} else if p.ResolverTTL != 0 {
			r.fail("etcd_proxy_resolver_ttl", "is set but etcd_proxy_resolver_prefix is not: the TTL is that of the registration under the prefix")
		}
		if p.ResolverTTL < 0 {
			r.fail("etcd_proxy_resolver_ttl", "%d must be a positive number of seconds", p.ResolverTTL)
		}
		p.AdvertiseURL = r.str("etcd_proxy_advertise_url", "")
		if p.AdvertiseURL != "" {
			grpcOnly["etcd_proxy_advertise_url"] = true
		} else if p.ResolverPrefix != "" {
			adv := p.ListenAddress
			if ip != nil && ip.IsUnspecified() {
				adv = p.SSHHost
			}
			p.AdvertiseURL = net.JoinHostPort(adv, strconv.Itoa(p.Port))
		}
		p.MetricsURL = r.str("etcd_proxy_metrics_url", "")
		if p.MetricsURL != "" {
			grpcOnly["etcd_proxy_metrics_url"] = true
			if u, err := url.Parse(p.MetricsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" {
				r.fail("etcd_proxy_metrics_url", "%q must be an http:// URL with a port, such as http://127.0.0.1:23791", p.MetricsURL)
			}
		}
		loopback := ip != nil && ip.IsLoopback()
		p.TLS = r.boolean("etcd_proxy_tls", !loopback && p.Mode == ProxyGRPC && c.TLS)
		if r.has("etcd_proxy_tls") && p.TLS {
			grpcOnly["etcd_proxy_tls"] = true
		}
		if p.TLS && !c.TLS {
			r.fail("etcd_proxy_tls", "is on but the cluster runs without TLS (etcd_tls: false): the proxy's certificates come from the cluster CA")
		}
		if p.Mode == ProxyGRPC && !p.TLS && !loopback && ip != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("etcd_proxy_tls is off on %s, which is not a loopback address: anyone who reaches it reads and writes the cluster with the proxy's certificate", p.ListenAddress))
		}
		if p.Mode == ProxyGateway {
			for _, v := range []string{"etcd_proxy_namespace", "etcd_proxy_resolver_prefix", "etcd_proxy_advertise_url", "etcd_proxy_metrics_url", "etcd_proxy_tls"} {
				if grpcOnly[v] {
					r.fail(v, "the gateway has no such option: it forwards TCP and nothing else; use etcd_proxy_mode: %s", ProxyGRPC)
				}
			}
		}
		c.Proxies = append(c.Proxies, p)
	}
}

// Where a client host's proxy lives. Its own directory tree and user: a
// client host can also be something else's member, or run other etcd
// tooling, without the proxy's key in reach of either.
const (
	ProxyConfigDir = "/etc/etcd-proxy"
	// ProxyEndpointsFile holds the member list the proxy starts with
	// (ETCD_PROXY_ENDPOINTS, read by the unit).
	ProxyEndpointsFile = "/etc/etcd-proxy/endpoints.env"
	ProxyPKIDir        = "/etc/etcd-proxy/pki"
	ProxyHome          = "/var/lib/etcd-proxy"
	ProxyUnit          = "etcd-proxy.service"
	ProxyUnitPath      = "/etc/systemd/system/etcd-proxy.service"
)

// ProxyEndpointsContent is the endpoints file for a start list.
func ProxyEndpointsContent(list string) string {
	return "# Managed by etcdplay from the live member list: the members the proxy starts with.\nETCD_PROXY_ENDPOINTS=" + list + "\n"
}

// ParseProxyEndpoints reads an endpoints file back: the members as
// host:port, whatever scheme the list carries.
func ParseProxyEndpoints(content string) []string {
	var out []string
	for _, line := range strings.Split(content, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "ETCD_PROXY_ENDPOINTS=")
		if !ok {
			continue
		}
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				if u, err := url.Parse(e); err == nil && u.Host != "" {
					e = u.Host
				}
				out = append(out, e)
			}
		}
	}
	return out
}

// DialAddr is where a client on the host reaches the proxy: its listen
// address, or loopback for a wildcard.
func (px Proxy) DialAddr() string {
	ip := net.ParseIP(px.ListenAddress)
	if ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(px.Port))
	}
	return px.Listen()
}
