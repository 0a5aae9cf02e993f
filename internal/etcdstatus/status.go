// Package etcdstatus is the library behind `etcdplay status`: for every
// member, what `etcdctl endpoint status`, `endpoint health`, `member list`
// and `alarm list` would print, collected over TLS with the etcdplay client
// certificate (through the SSH connections when the client port is not
// reachable), rendered as tables or JSON.
package etcdstatus

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// Report is one look at a cluster.
type Report struct {
	Cluster   string     `json:"cluster"`
	Time      time.Time  `json:"time"`
	Endpoints []Endpoint `json:"endpoints"`
	Members   []Member   `json:"members"`
	Alarms    []Alarm    `json:"alarms"`
	Healthy   bool       `json:"healthy"`
	Problems  []string   `json:"problems,omitempty"`
	Leader    string     `json:"leader,omitempty"` // member name
	// Certificates are the served, CA and client certificates with their
	// expiry; Warnings the ones to act on (they do not make the cluster
	// unhealthy).
	Certificates []Certificate `json:"certificates,omitempty"`
	// Proxies are the client hosts' proxies (inventory group etcd_clients).
	Proxies  []Proxy  `json:"proxies,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Endpoint is one member seen through its own client URL.
type Endpoint struct {
	Endpoint    string `json:"endpoint"`
	Name        string `json:"name"`
	Host        string `json:"host"`
	ID          string `json:"id,omitempty"` // hex, as etcdctl prints it
	Version     string `json:"version,omitempty"`
	DBSize      int64  `json:"db_size"`
	DBSizeInUse int64  `json:"db_size_in_use"`
	// Fragmented is the share of the db file that is free pages
	// (1 - in use / size), what a defrag would give back, in percent.
	Fragmented       int      `json:"fragmented_percent"`
	IsLeader         bool     `json:"is_leader"`
	IsLearner        bool     `json:"is_learner"`
	RaftTerm         uint64   `json:"raft_term"`
	RaftIndex        uint64   `json:"raft_index"`
	RaftAppliedIndex uint64   `json:"raft_applied_index"`
	Healthy          bool     `json:"healthy"`
	Took             string   `json:"took"`
	Error            string   `json:"error,omitempty"`
	Errors           []string `json:"errors,omitempty"`
}

// Member is one entry of the member list.
type Member struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Started     bool     `json:"started"`
	PeerURLs    []string `json:"peer_urls"`
	ClientURLs  []string `json:"client_urls"`
	IsLearner   bool     `json:"is_learner"`
	InInventory bool     `json:"in_inventory"`
}

// Alarm is one raised alarm.
type Alarm struct {
	MemberID string `json:"member_id"`
	Member   string `json:"member"`
	Alarm    string `json:"alarm"`
}

// Options select what to look at.
type Options struct {
	Members      []string      // inventory hosts or member names; empty = all
	ProbeTimeout time.Duration // per member; default 3s
	// ProxyHost reaches client hosts; nil leaves the proxies out.
	ProxyHost ProxyHost
}

// Collect looks at every (selected) member in parallel. Unreachable
// members are part of the report, not an error; an error means the look
// itself was impossible (no client certificate, unknown member).
func Collect(ctx context.Context, c *etcd.Cluster, stateDir string, dial etcdclient.DialFunc, opt Options) (*Report, error) {
	h, err := etcdclient.CheckHealth(ctx, c, stateDir, dial, etcdclient.CheckOptions{Members: opt.Members, ProbeTimeout: opt.ProbeTimeout})
	if err != nil {
		return nil, err
	}
	members := c.Members
	if len(opt.Members) > 0 {
		if members, err = c.Select(opt.Members); err != nil {
			return nil, err
		}
	}
	timeout := opt.ProbeTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	now := time.Now()
	r := fromHealth(c, h, now)
	r.Certificates = certificates(ctx, c, stateDir, dial, members, timeout)
	r.Warnings = judge(r.Certificates, now, c.CertRenewBefore, c.CertValidity)
	if opt.ProxyHost != nil && len(c.Proxies) > 0 {
		pctx, cancel := context.WithTimeout(ctx, 2*timeout)
		r.Proxies = proxies(pctx, c, stateDir, opt.ProxyHost, r.Members)
		cancel()
		r.Warnings = append(r.Warnings, proxyWarnings(r.Proxies)...)
	}
	return r, nil
}

func fromHealth(c *etcd.Cluster, h *etcdclient.Health, now time.Time) *Report {
	r := &Report{Cluster: c.Name, Time: now.UTC(), Problems: h.Problems()}
	r.Healthy = len(r.Problems) == 0
	if l, ok := h.Leader(); ok {
		r.Leader = l.Name
	}
	for _, m := range h.Members {
		e := Endpoint{
			Endpoint: m.Endpoint, Name: m.Name, Host: m.Host, Version: m.Version,
			DBSize: m.DBSize, DBSizeInUse: m.DBSizeInUse, IsLeader: m.IsLeader(), IsLearner: m.IsLearner,
			RaftTerm: m.RaftTerm, RaftIndex: m.RaftIndex, RaftAppliedIndex: m.RaftAppliedIndex,
			Healthy: m.Healthy, Took: m.Took.Round(time.Millisecond / 10).String(), Error: m.Error, Errors: m.Errors,
		}
		if m.ID != 0 {
			e.ID = fmt.Sprintf("%x", m.ID)
		}
		if m.DBSize > 0 {
			e.Fragmented = int(100 * (m.DBSize - m.DBSizeInUse) / m.DBSize)
		}
		r.Endpoints = append(r.Endpoints, e)
	}
	names := map[string]bool{}
	for _, m := range c.Members {
		names[m.Name] = true
	}
	byID := map[uint64]string{}
	for _, m := range h.List {
		byID[m.ID] = m.Name
		r.Members = append(r.Members, Member{
			ID: fmt.Sprintf("%x", m.ID), Name: m.Name, Started: m.Name != "",
			PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner,
			InInventory: names[m.Name],
		})
	}
	sort.Slice(r.Members, func(i, j int) bool { return r.Members[i].Name < r.Members[j].Name })
	for _, a := range h.Alarms {
		r.Alarms = append(r.Alarms, Alarm{MemberID: fmt.Sprintf("%x", a.MemberID), Member: byID[a.MemberID], Alarm: a.Alarm.String()})
	}
	return r
}
