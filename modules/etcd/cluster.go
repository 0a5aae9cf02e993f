// Package etcd is the cluster model every etcd module shares: who the
// members are, how they are reached, which release and tuning they run and
// where their files live, all derived from inventory variables. It does no
// network I/O, so the compiler can build and validate it before any
// connection (modules/etcd/etcdclient talks to the cluster); the only
// files it reads or writes are etcd_tune's record in the state dir.
package etcd

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Defaults of the variable contract (docs/variables.md).
const (
	Group                 = "etcd"
	DefaultVersion        = "v3.6.16"
	DefaultReleaseURL     = "https://github.com/etcd-io/etcd/releases/download"
	DefaultClusterName    = "etcd"
	DefaultClientPort     = 2379
	DefaultPeerPort       = 2380
	DefaultDataDir        = "/var/lib/etcd"
	DefaultHeartbeat      = 100  // ms, etcd's default
	DefaultElection       = 1000 // ms, etcd's default
	DefaultQuota          = 2 << 30
	DefaultMaxRequest     = 1572864 // 1.5 MiB, etcd's default
	DefaultSnapshotCount  = 10000   // etcd 3.6's default
	DefaultCompactionMode = "periodic"
	// Keep one hour of history: enough for watchers to resume after a
	// blip, small enough that the backend does not grow unbounded when
	// no kube-apiserver compacts for us.
	DefaultCompactionRetention = "1h"
	DefaultLogLevel            = "info"
	DefaultArch                = "amd64"
	DefaultCertRenewBefore     = 30 * 24 * time.Hour
	DefaultCertValidity        = 365 * 24 * time.Hour
	DefaultCAValidity          = 10 * 365 * 24 * time.Hour
	DefaultClientCertName      = "client"
	// EtcdplayClientCN is the client certificate etcdplay itself uses.
	EtcdplayClientCN = "etcdplay"
	// PeerCN is the CN of every member's peer certificate, and the only
	// CN the peer port accepts (peer-transport-security allowed-cn): a
	// client certificate from the same CA cannot pose as a member. One CN
	// for all members, so a joiner needs no change on the others.
	PeerCN = "etcd-peer"
	// maxElectionMs is etcd's own upper bound (embed.Config.Validate).
	maxElectionMs = 50000
)

// Member is one host of the etcd group as etcd sees it.
type Member struct {
	Host    string // inventory hostname
	Name    string // etcd member name (etcd_name)
	Address string // address etcd advertises (etcd_address)
	// ListenAddress is the IP etcd binds (etcd_listen_address): Address
	// when that is an IP, else 0.0.0.0, since etcd binds IPs only.
	ListenAddress string
	SSHHost       string // ansible_host, "" when unset
	ClientPort    int
	PeerPort      int
	ClientURL     string // advertised
	PeerURL       string // advertised
	// ListenClientURL and ListenPeerURL are what etcd binds.
	ListenClientURL string
	ListenPeerURL   string
	MetricsURL      string   // etcd_metrics_url, "" for none
	ExtraSANs       []string // etcd_extra_sans
}

// SANs lists every name and address the member's server and peer
// certificates must carry, deduplicated, in a stable order. localhost and
// 127.0.0.1 are always there: local clients use them, and on a shared
// loopback (the lab) peer traffic leaves from 127.0.0.1.
func (m Member) SANs() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append([]string{m.Address, m.Name, m.Host, m.SSHHost}, append(m.ExtraSANs, "localhost", "127.0.0.1")...) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Tuning holds the performance knobs the seeds tune.
type Tuning struct {
	HeartbeatInterval int  // ms
	HeartbeatAuto     bool // etcd_heartbeat_interval: auto (etcd_tune measures RTT)
	ElectionTimeout   int  // ms
	QuotaBackendBytes int64
	MaxRequestBytes   int64
	SnapshotCount     int
	// AutoCompactionMode is periodic or revision; an empty retention or
	// "0" disables auto compaction.
	AutoCompactionMode      string
	AutoCompactionRetention string
	IonicePriority          int // best-effort class priority, 0 (highest) .. 7
}

// Cluster is the whole cluster as the inventory describes it.
type Cluster struct {
	Name       string // etcd_cluster_name: names the controller state dir
	Token      string // etcd_cluster_token
	Version    Version
	ReleaseURL string
	Arch       string
	TLS        bool
	EnableV2   bool
	DataDir    string
	WALDir     string
	Tuning
	LogLevel   string
	LogOutputs []string
	// ExtraConfig are raw etcd.yaml keys (etcd_extra_config) merged into
	// the rendered config; keys the version no longer has are refused.
	ExtraConfig map[string]any

	CertRenewBefore time.Duration
	CertValidity    time.Duration
	CAValidity      time.Duration
	ClientCertNames []string // user client certificates (CNs)
	// CACertFile and CAKeyFile are a user-supplied CA on the controller
	// (etcd_ca_cert, etcd_ca_key); empty means etcdplay keeps its own.
	CACertFile string
	CAKeyFile  string

	Members []Member
	// Proxies are the client hosts' proxies (group etcd_clients).
	Proxies []Proxy
	Paths   HostPaths
}

var (
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	logLevels = []string{"debug", "info", "warn", "error", "panic", "fatal"}
	arches    = []string{"amd64", "arm64", "ppc64le", "s390x"}
)

// FromVars builds and validates the cluster model from one host's variables
// (with the facts groups and hostvars). Per-member values come from each
// member's hostvars, cluster-wide values from vars. Every problem found is
// reported, each a *VarError naming the variable and host.
func FromVars(vars map[string]any) (*Cluster, error) {
	return fromVars(clusterVars(vars))
}

func fromVars(vars map[string]any) (*Cluster, error) {
	var errs []error
	r := varReader{vars: vars, errs: &errs}
	c := &Cluster{Paths: DefaultHostPaths()}

	c.Name = r.str("etcd_cluster_name", DefaultClusterName)
	if !nameRE.MatchString(c.Name) {
		r.fail("etcd_cluster_name", "%q must be letters, digits, '.', '_' or '-' (it names a directory)", c.Name)
	}
	c.Token = r.str("etcd_cluster_token", c.Name)
	if strings.ContainsAny(c.Token, " \t\n") {
		r.fail("etcd_cluster_token", "%q must not contain whitespace", c.Token)
	}

	vs := r.str("etcd_version", DefaultVersion)
	if v, err := ParseVersion(vs); err != nil {
		r.fail("etcd_version", "%v", err)
	} else {
		c.Version = v
	}
	c.ReleaseURL = strings.TrimRight(r.str("etcd_release_url", DefaultReleaseURL), "/")
	if u, err := url.Parse(c.ReleaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.fail("etcd_release_url", "%q must be an http:// or https:// URL", c.ReleaseURL)
	}
	c.Arch = r.str("etcd_arch", DefaultArch)
	if !oneOf(c.Arch, arches) {
		r.fail("etcd_arch", "%q is not an etcd release architecture (%s)", c.Arch, strings.Join(arches, ", "))
	}
	c.TLS = r.boolean("etcd_tls", true)
	c.EnableV2 = r.boolean("etcd_enable_v2", false)
	if c.EnableV2 && c.Version.AtLeast(3, 6) {
		r.fail("etcd_enable_v2", "the v2 API was removed in etcd 3.6 (etcd_version %s): drop etcd_enable_v2 or use v3.5", c.Version)
	}
	c.DataDir = c.readDir(r, "etcd_data_dir", DefaultDataDir)
	c.WALDir = c.readDir(r, "etcd_wal_dir", "")
	if c.WALDir != "" && c.WALDir == c.DataDir {
		r.fail("etcd_wal_dir", "%q is etcd_data_dir too: leave etcd_wal_dir unset to keep the WAL in the data dir", c.WALDir)
	}

	c.readTuning(r)

	c.LogLevel = r.str("etcd_log_level", DefaultLogLevel)
	if !oneOf(c.LogLevel, logLevels) {
		r.fail("etcd_log_level", "%q is not one of %s", c.LogLevel, strings.Join(logLevels, ", "))
	}
	c.LogOutputs = r.list("etcd_log_outputs", []string{"stderr"})
	if len(c.LogOutputs) == 0 {
		c.LogOutputs = []string{"stderr"}
	}
	if v, ok := vars["etcd_extra_config"]; ok && v != nil {
		m, isMap := v.(map[string]any)
		if !isMap {
			r.fail("etcd_extra_config", "must be a map of etcd.yaml keys, got %T", v)
		} else {
			c.ExtraConfig = m
			for k := range m {
				if rem := removedIn(k); rem != nil && !c.Version.Less(*rem) {
					r.fail("etcd_extra_config", "etcd %s no longer has the option %q (removed in %s)", c.Version, k, rem)
				}
			}
		}
	}

	c.CertRenewBefore = r.duration("etcd_cert_renew_before", DefaultCertRenewBefore)
	c.CertValidity = r.duration("etcd_cert_validity", DefaultCertValidity)
	c.CAValidity = r.duration("etcd_ca_validity", DefaultCAValidity)
	if c.CertRenewBefore >= c.CertValidity {
		r.fail("etcd_cert_renew_before", "%s must be shorter than etcd_cert_validity %s, or every run re-issues", c.CertRenewBefore, c.CertValidity)
	}
	c.ClientCertNames = r.list("etcd_client_cert_names", []string{DefaultClientCertName})
	for _, n := range c.ClientCertNames {
		if !nameRE.MatchString(n) || n == EtcdplayClientCN || n == PeerCN || strings.HasPrefix(n, ProxyClientCNPrefix) {
			r.fail("etcd_client_cert_names", "%q must be a plain name other than %q and %q, not starting with %q", n, EtcdplayClientCN, PeerCN, ProxyClientCNPrefix)
		}
	}
	c.CACertFile = r.str("etcd_ca_cert", "")
	c.CAKeyFile = r.str("etcd_ca_key", "")
	if (c.CACertFile == "") != (c.CAKeyFile == "") {
		r.fail("etcd_ca_cert", "a supplied CA needs both etcd_ca_cert and etcd_ca_key")
	}

	c.readMembers(vars, &errs)
	c.readProxies(vars, &errs)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// clusterVars are the variables the cluster-wide settings are read from.
// A member reads its own. A client host reads the first member's: the
// cluster's name, version, TLS and CA are the members' whatever the
// client host's groups say (typically they are set for group etcd only),
// or its proxy would look for another cluster's certificates.
func clusterVars(vars map[string]any) map[string]any {
	self, _ := vars["inventory_hostname"].(string)
	members := groupHosts(vars, Group)
	if self == "" || len(members) == 0 || oneOf(self, members) {
		return vars
	}
	hostvars, _ := vars["hostvars"].(map[string]any)
	first, ok := hostvars[members[0]].(map[string]any)
	if !ok {
		return vars
	}
	out := maps.Clone(first)
	for _, k := range []string{"inventory_hostname", "inventory_hostname_short", "group_names", "hostvars", "groups", "play_hosts", "ansible_play_hosts"} {
		if v, ok := vars[k]; ok {
			out[k] = v
		}
	}
	return out
}

func (c *Cluster) readTuning(r varReader) {
	if hb := r.str("etcd_heartbeat_interval", ""); hb == "auto" {
		c.HeartbeatAuto = true
		c.HeartbeatInterval = DefaultHeartbeat
	} else {
		c.HeartbeatInterval = r.integer("etcd_heartbeat_interval", DefaultHeartbeat)
	}
	c.ElectionTimeout = r.integer("etcd_election_timeout", DefaultElection)
	if c.HeartbeatAuto && !r.has("etcd_election_timeout") {
		c.ElectionTimeout = DefaultElection
	}
	switch {
	case c.HeartbeatInterval <= 0:
		r.fail("etcd_heartbeat_interval", "%d must be a positive number of milliseconds or auto", c.HeartbeatInterval)
	case c.ElectionTimeout < 5*c.HeartbeatInterval:
		r.fail("etcd_election_timeout", "%dms must be at least 5 times etcd_heartbeat_interval (%dms); etcd's guide suggests 10 times", c.ElectionTimeout, c.HeartbeatInterval)
	case c.ElectionTimeout > maxElectionMs:
		r.fail("etcd_election_timeout", "%dms is longer than etcd's limit of %dms", c.ElectionTimeout, maxElectionMs)
	}
	c.QuotaBackendBytes = r.size("etcd_quota_backend_bytes", DefaultQuota)
	c.MaxRequestBytes = r.size("etcd_max_request_bytes", DefaultMaxRequest)
	if c.MaxRequestBytes == 0 {
		r.fail("etcd_max_request_bytes", "must be more than 0")
	}
	if c.QuotaBackendBytes != 0 && c.MaxRequestBytes > c.QuotaBackendBytes {
		r.fail("etcd_max_request_bytes", "%d is larger than etcd_quota_backend_bytes %d", c.MaxRequestBytes, c.QuotaBackendBytes)
	}
	c.SnapshotCount = r.integer("etcd_snapshot_count", DefaultSnapshotCount)
	if c.SnapshotCount <= 0 {
		r.fail("etcd_snapshot_count", "%d must be positive", c.SnapshotCount)
	}
	c.AutoCompactionMode = r.str("etcd_auto_compaction_mode", DefaultCompactionMode)
	c.AutoCompactionRetention = r.str("etcd_auto_compaction_retention", DefaultCompactionRetention)
	switch c.AutoCompactionMode {
	case "periodic":
		// etcd reads a bare number as hours, or a Go duration.
		if _, err := strconv.Atoi(c.AutoCompactionRetention); err != nil {
			if _, err := time.ParseDuration(c.AutoCompactionRetention); err != nil {
				r.fail("etcd_auto_compaction_retention", "%q must be a duration such as 1h or 30m (or hours as a number) in periodic mode", c.AutoCompactionRetention)
			}
		}
	case "revision":
		if n, err := strconv.Atoi(c.AutoCompactionRetention); err != nil || n < 0 {
			r.fail("etcd_auto_compaction_retention", "%q must be a number of revisions in revision mode", c.AutoCompactionRetention)
		}
	default:
		r.fail("etcd_auto_compaction_mode", "%q must be periodic or revision", c.AutoCompactionMode)
	}
	c.IonicePriority = r.integer("etcd_ionice_priority", 0)
	if c.IonicePriority < 0 || c.IonicePriority > 7 {
		r.fail("etcd_ionice_priority", "%d must be between 0 (highest) and 7", c.IonicePriority)
	}
}

func (c *Cluster) readMembers(vars map[string]any, errs *[]error) {
	hosts := groupHosts(vars, Group)
	if len(hosts) == 0 {
		*errs = append(*errs, &VarError{Var: "groups", Msg: "inventory group \"etcd\" has no hosts: put the etcd members in a group named etcd"})
		return
	}
	hostvars, _ := vars["hostvars"].(map[string]any)
	hosts = c.ownHosts(vars, hosts, hostvars, errs)
	checkAgreement(hosts, hostvars, errs)
	scheme := "http"
	if c.TLS {
		scheme = "https"
	}
	byName := map[string]string{}
	byEndpoint := map[string]string{}
	for _, h := range hosts {
		hv, _ := hostvars[h].(map[string]any)
		if hv == nil {
			hv = map[string]any{}
		}
		r := varReader{vars: hv, host: h, errs: errs}
		m := Member{Host: h}
		m.Name = r.str("etcd_name", h)
		m.SSHHost = r.str("ansible_host", "")
		m.Address = r.str("etcd_address", m.SSHHost)
		if m.Address == "" {
			m.Address = h
		}
		m.ListenAddress = r.str("etcd_listen_address", "")
		if m.ListenAddress == "" {
			m.ListenAddress = "0.0.0.0"
			if net.ParseIP(strings.Trim(m.Address, "[]")) != nil {
				m.ListenAddress = strings.Trim(m.Address, "[]")
			}
		} else if net.ParseIP(m.ListenAddress) == nil {
			r.fail("etcd_listen_address", "%q must be an IP address (etcd binds IPs only)", m.ListenAddress)
		}
		m.ClientPort = r.integer("etcd_client_port", DefaultClientPort)
		m.PeerPort = r.integer("etcd_peer_port", DefaultPeerPort)
		m.MetricsURL = r.str("etcd_metrics_url", "")
		m.ExtraSANs = r.list("etcd_extra_sans", nil)

		if !nameRE.MatchString(m.Name) {
			r.fail("etcd_name", "%q must be letters, digits, '.', '_' or '-'", m.Name)
		} else if other, dup := byName[m.Name]; dup {
			r.fail("etcd_name", "%q is also the name of %s: member names must be unique", m.Name, other)
		} else {
			byName[m.Name] = h
		}
		if strings.ContainsAny(m.Address, " ,/=") || strings.Trim(m.Address, "[]") == "" {
			r.fail("etcd_address", "%q is not a host name or IP address", m.Address)
		}
		// Collisions are reported once per member: on etcd_address when every
		// port collides with the same member (the usual copy-paste mistake),
		// on the port variable otherwise.
		type collision struct{ name, ep, other string }
		var collisions []collision
		for _, p := range []struct {
			name string
			port int
		}{{"etcd_client_port", m.ClientPort}, {"etcd_peer_port", m.PeerPort}} {
			if p.port < 1 || p.port > 65535 {
				r.fail(p.name, "%d is not a TCP port", p.port)
				continue
			}
			ep := net.JoinHostPort(strings.Trim(m.Address, "[]"), strconv.Itoa(p.port))
			if other, dup := byEndpoint[ep]; dup {
				collisions = append(collisions, collision{p.name, ep, other})
			} else {
				byEndpoint[ep] = h
			}
		}
		switch {
		case len(collisions) == 2 && collisions[0].other == collisions[1].other:
			r.fail("etcd_address", "%s is also the address of %s (client and peer ports collide): each member needs its own etcd_address", m.Address, collisions[0].other)
		default:
			for _, c := range collisions {
				r.fail(c.name, "%s is also used by %s: each member needs its own address:port", c.ep, c.other)
			}
		}
		if m.MetricsURL != "" {
			if u, err := url.Parse(m.MetricsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				r.fail("etcd_metrics_url", "%q must be an http:// or https:// URL such as http://%s:2381", m.MetricsURL, m.Address)
			}
		}
		hostPart := strings.Trim(m.Address, "[]")
		m.ClientURL = scheme + "://" + net.JoinHostPort(hostPart, strconv.Itoa(m.ClientPort))
		m.PeerURL = scheme + "://" + net.JoinHostPort(hostPart, strconv.Itoa(m.PeerPort))
		m.ListenClientURL = scheme + "://" + net.JoinHostPort(m.ListenAddress, strconv.Itoa(m.ClientPort))
		m.ListenPeerURL = scheme + "://" + net.JoinHostPort(m.ListenAddress, strconv.Itoa(m.PeerPort))
		c.Members = append(c.Members, m)
	}
}

// ownHosts narrows the etcd group to this cluster's members: an inventory
// may hold several clusters, told apart by etcd_cluster_name. A play acts
// on one of them: one whose hosts span several would, in its run_once
// steps (preflight, health, membership, restore), act on the first
// host's cluster only, so it is refused before anything runs. A play
// partitioned by etcd_cluster_name (site.yml) is one play per cluster:
// ansible_play_hosts is the partition's hosts.
func (c *Cluster) ownHosts(vars map[string]any, hosts []string, hostvars map[string]any, errs *[]error) []string {
	varsOf := func(h string) map[string]any {
		hv, _ := hostvars[h].(map[string]any)
		return hv
	}
	groups := GroupByCluster(hosts, varsOf)
	if len(groups) == 1 {
		return hosts
	}
	var inPlay []string
	for _, h := range stringList(vars["ansible_play_hosts"]) {
		if oneOf(h, hosts) {
			inPlay = append(inPlay, h)
		}
	}
	if play := GroupByCluster(inPlay, varsOf); len(play) > 1 {
		*errs = append(*errs, &VarError{Var: "etcd_cluster_name", Msg: fmt.Sprintf(
			"the play's hosts belong to %d etcd clusters: %s. This runbook acts on one cluster: --limit it to one cluster's hosts (a group per cluster helps); site.yml, backup.yml and maintenance.yml handle several side by side",
			len(play), ClusterList(play))})
	}
	for _, g := range groups {
		if g.Name == c.Name {
			return g.Hosts
		}
	}
	return nil
}

// ClusterHosts are the hosts of one cluster of an inventory.
type ClusterHosts struct {
	Name  string
	Hosts []string
}

// GroupByCluster groups hosts by their etcd_cluster_name
// (DefaultClusterName when unset or empty), in order of each cluster's
// first host.
func GroupByCluster(hosts []string, varsOf func(host string) map[string]any) []ClusterHosts {
	var out []ClusterHosts
	index := map[string]int{}
	for _, h := range hosts {
		name := DefaultClusterName
		if v, ok := varsOf(h)["etcd_cluster_name"]; ok && v != nil && fmt.Sprint(v) != "" {
			name = fmt.Sprint(v)
		}
		k, ok := index[name]
		if !ok {
			k = len(out)
			index[name] = k
			out = append(out, ClusterHosts{Name: name})
		}
		out[k].Hosts = append(out[k].Hosts, h)
	}
	return out
}

// ClusterList is "blue (etcd1, etcd2); green (etcd3)", for messages.
func ClusterList(groups []ClusterHosts) string {
	parts := make([]string, len(groups))
	for i, g := range groups {
		parts[i] = fmt.Sprintf("%s (%s)", g.Name, strings.Join(g.Hosts, ", "))
	}
	return strings.Join(parts, "; ")
}

// groupHosts reads groups[name] whatever list type the engine used.
func groupHosts(vars map[string]any, name string) []string {
	switch g := vars["groups"].(type) {
	case map[string][]string:
		return g[name]
	case map[string]any:
		return stringList(g[name])
	}
	return nil
}

// stringList reads a list of host names whatever list type the engine used.
func stringList(v any) []string {
	switch l := v.(type) {
	case []string:
		return l
	case []any:
		out := make([]string, 0, len(l))
		for _, e := range l {
			out = append(out, fmt.Sprint(e))
		}
		return out
	}
	return nil
}

// Member returns the member running on inventory host h.
func (c *Cluster) Member(h string) (*Member, error) {
	for i := range c.Members {
		if c.Members[i].Host == h {
			return &c.Members[i], nil
		}
	}
	return nil, fmt.Errorf("host %s is not in inventory group %q", h, Group)
}

// InitialCluster is the initial-cluster value: name=peerURL for every
// member, in inventory order.
func (c *Cluster) InitialCluster() string {
	parts := make([]string, len(c.Members))
	for i, m := range c.Members {
		parts[i] = m.Name + "=" + m.PeerURL
	}
	return strings.Join(parts, ",")
}

// Endpoints are the members' client URLs, in inventory order.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

// Tarball is the release archive name for the cluster's version and arch.
func (c *Cluster) Tarball() string {
	return fmt.Sprintf("etcd-%s-linux-%s.tar.gz", c.Version, c.Arch)
}

// TarballURL and SumsURL are where the release lives (upstream or mirror).
func (c *Cluster) TarballURL() string {
	return c.ReleaseURL + "/" + c.Version.String() + "/" + c.Tarball()
}
func (c *Cluster) SumsURL() string { return c.ReleaseURL + "/" + c.Version.String() + "/SHA256SUMS" }

func oneOf(s string, set []string) bool {
	for _, e := range set {
		if s == e {
			return true
		}
	}
	return false
}

// duration reads "720h", "30m" or day counts such as "30d".
func (r varReader) duration(name string, def time.Duration) time.Duration {
	s := r.str(name, "")
	if s == "" {
		return def
	}
	d, err := ParseDuration(s)
	if err != nil || d <= 0 {
		r.fail(name, "%q must be a positive duration such as 30d or 720h", s)
		return def
	}
	return d
}

// ParseDuration is time.ParseDuration plus a "d" (24h) unit, since
// certificate lifetimes are spoken of in days.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("bad day count %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// systemDirs are directories etcdplay must never take as a data or WAL
// dir: the service setup makes them etcd's, mode 0700, and a restore or
// scale-in moves their contents aside.
var systemDirs = map[string]bool{
	"/": true, "/bin": true, "/boot": true, "/dev": true, "/etc": true, "/home": true,
	"/lib": true, "/lib64": true, "/media": true, "/mnt": true, "/opt": true,
	"/proc": true, "/root": true, "/run": true, "/sbin": true, "/srv": true,
	"/sys": true, "/tmp": true, "/usr": true, "/usr/local": true, "/var": true,
	"/var/lib": true, "/var/log": true, "/var/tmp": true, "/var/cache": true,
	"/etc/etcd": true,
}

// readDir reads a data or WAL dir: absolute, normalised ("/data/etcd/" and
// "/data//etcd" are /data/etcd), never a system directory.
func (c *Cluster) readDir(r varReader, name, def string) string {
	raw := r.str(name, def)
	if raw == "" {
		return ""
	}
	if !path.IsAbs(raw) {
		r.fail(name, "%q must be an absolute path", raw)
		return raw
	}
	d := path.Clean(raw)
	if systemDirs[d] {
		r.fail(name, "%q is a system directory: etcd would own it (mode 0700) and restores would move its contents; use a directory of etcd's own, such as %s", raw, path.Join(d, "etcd"))
	}
	return d
}

// MemberOf is FromVars and the member on host: what a module that
// renders one member's files starts from.
func MemberOf(vars map[string]any, host string) (*Cluster, *Member, error) {
	c, err := FromVars(vars)
	if err != nil {
		return nil, nil, err
	}
	m, err := c.Member(host)
	if err != nil {
		return nil, nil, err
	}
	return c, m, nil
}

// FromVarsAt is FromVars with etcd_version set to version when version is
// not empty (a task's version argument overrides the variable).
func FromVarsAt(vars map[string]any, version string) (*Cluster, error) {
	vars = clusterVars(vars)
	if version != "" {
		vars = maps.Clone(vars)
		if vars == nil {
			vars = map[string]any{}
		}
		vars["etcd_version"] = version
	}
	return fromVars(vars)
}

// Select returns the members named by hosts-or-names (all when empty), or
// an error naming the ones that are not members.
func (c *Cluster) Select(names []string) ([]Member, error) {
	if len(names) == 0 {
		return append([]Member(nil), c.Members...), nil
	}
	var out []Member
	var unknown []string
	for _, n := range names {
		found := false
		for _, m := range c.Members {
			if m.Host == n || m.Name == n {
				out = append(out, m)
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("not members of the etcd group: %s", strings.Join(unknown, ", "))
	}
	return out, nil
}
