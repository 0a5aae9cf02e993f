package etcdstatus

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// Proxy is one client host's proxy: what it forwards to, and whether that
// is the cluster's member list.
type Proxy struct {
	Host    string `json:"host"`
	Mode    string `json:"mode"`
	Address string `json:"address"` // what local clients connect to
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
	// Endpoints are the members it starts with (its endpoints file), as
	// host:port.
	Endpoints []string `json:"endpoints"`
	// InStep reports whether Endpoints are the started voting members.
	InStep bool `json:"in_step"`
}

// ProxyHost opens a read-only handle on a client host (its SSH connection).
type ProxyHost func(ctx context.Context, host string) (modules.Host, error)

// proxies looks at every client host's proxy in parallel: its endpoints
// file, and one read through it from its own host.
func proxies(ctx context.Context, c *etcd.Cluster, stateDir string, open ProxyHost, members []Member) []Proxy {
	var want []string
	for _, m := range members {
		if !m.Started || m.IsLearner {
			continue
		}
		for _, u := range m.ClientURLs {
			if p, err := url.Parse(u); err == nil {
				want = append(want, p.Host)
			}
		}
	}
	sort.Strings(want)
	out := make([]Proxy, len(c.Proxies))
	var wg sync.WaitGroup
	for i, px := range c.Proxies {
		out[i] = Proxy{Host: px.Host, Mode: px.Mode, Address: px.URL(c.TLS)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &out[i]
			h, err := open(ctx, px.Host)
			if err != nil {
				p.Error = err.Error()
				return
			}
			var buf bytes.Buffer
			if err := h.Download(ctx, etcd.ProxyEndpointsFile, &buf); err != nil {
				p.Error = fmt.Sprintf("read %s: %v", etcd.ProxyEndpointsFile, err)
				return
			}
			p.Endpoints = etcd.ParseProxyEndpoints(buf.String())
			got := slices.Clone(p.Endpoints)
			sort.Strings(got)
			p.InStep = len(want) > 0 && slices.Equal(got, want)
			if err := etcdclient.ProxyServing(ctx, c, px, stateDir, h); err != nil {
				p.Error = err.Error()
				return
			}
			p.Healthy = true
		}()
	}
	wg.Wait()
	return out
}

// proxyWarnings are the proxies an operator should look at.
func proxyWarnings(ps []Proxy) []string {
	var out []string
	for _, p := range ps {
		switch {
		case !p.Healthy:
			out = append(out, fmt.Sprintf("the %s on %s does not serve: %s", p.Mode, p.Host, p.Error))
		case !p.InStep:
			out = append(out, fmt.Sprintf("the %s on %s starts with %s, which is not the member list: run playbooks/clients.yml", p.Mode, p.Host, strings.Join(p.Endpoints, ",")))
		}
	}
	return out
}
