package etcd

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// TLSPhase is where a member stands on the way from a plain-HTTP cluster
// to the TLS cluster site.yml builds (seed 001, and etcd's own advice: one
// member at a time, each healthy before the next). Each phase is one
// restart of the member; from both on, every member serves https to
// clients, so a TLS client reaches all of them.
type TLSPhase int

const (
	// TLSOff: clients and peers over plain HTTP.
	TLSOff TLSPhase = iota
	// TLSBoth: the client port serves http and https (etcd multiplexes
	// both on one listener); peers still listen on http, but the member
	// has its peer certificate, so it can reach members that moved on.
	TLSBoth
	// TLSPeer: the member's peer URL is https in the member list and it
	// listens for peers over TLS; clients are still served both ways.
	TLSPeer
	// TLSOn: https only, as site.yml renders it with etcd_tls true.
	TLSOn
)

func (p TLSPhase) String() string {
	switch p {
	case TLSOff:
		return "off"
	case TLSBoth:
		return "both"
	case TLSPeer:
		return "peer"
	case TLSOn:
		return "on"
	}
	return fmt.Sprintf("TLSPhase(%d)", int(p))
}

// PhaseOf reads a member's phase from what the member list says of it:
// its advertised client URLs and its peer URLs.
func PhaseOf(clientURLs, peerURLs []string) TLSPhase {
	has := func(urls []string, scheme string) bool {
		for _, u := range urls {
			if strings.HasPrefix(u, scheme+"://") {
				return true
			}
		}
		return false
	}
	peerTLS := has(peerURLs, "https")
	switch {
	case has(clientURLs, "http") && !has(clientURLs, "https") && !peerTLS:
		return TLSOff
	case !peerTLS:
		return TLSBoth
	case has(clientURLs, "http"):
		return TLSPeer
	}
	return TLSOn
}

// AtPhase is a copy of c, with TLS on, whose member host has the URLs
// phase p gives it (comma-separated lists where it serves both, as etcd's
// config file takes them). Only the config of that member is meant to be
// rendered from it: its ClientURL is not a single endpoint.
func (c *Cluster) AtPhase(host string, p TLSPhase) (*Cluster, error) {
	out := *c
	out.TLS = true
	out.Members = append([]Member(nil), c.Members...)
	i := -1
	for j := range out.Members {
		if out.Members[j].Host == host {
			i = j
		}
	}
	if i < 0 {
		return nil, fmt.Errorf("%s is not a member of the etcd group", host)
	}
	m := &out.Members[i]
	addr := strings.Trim(m.Address, "[]")
	url := func(schemes []string, host string, port int) string {
		var urls []string
		for _, s := range schemes {
			urls = append(urls, s+"://"+net.JoinHostPort(host, strconv.Itoa(port)))
		}
		return strings.Join(urls, ",")
	}
	client, peer := []string{"https"}, []string{"https"}
	switch p {
	case TLSOff:
		client, peer = []string{"http"}, []string{"http"}
	case TLSBoth:
		client, peer = []string{"http", "https"}, []string{"http"}
	case TLSPeer:
		client = []string{"http", "https"}
	}
	m.ClientURL = url(client, addr, m.ClientPort)
	m.ListenClientURL = url(client, m.ListenAddress, m.ClientPort)
	m.PeerURL = url(peer, addr, m.PeerPort)
	m.ListenPeerURL = url(peer, m.ListenAddress, m.PeerPort)
	return &out, nil
}

// HTTPSPeerURL is the member's peer URL over TLS.
func (m Member) HTTPSPeerURL() string {
	return "https://" + net.JoinHostPort(strings.Trim(m.Address, "[]"), strconv.Itoa(m.PeerPort))
}

// WithScheme is a copy of c whose members' URLs all use TLS or all plain
// HTTP: the client model that reaches every member in a phase.
func (c *Cluster) WithScheme(tls bool) *Cluster {
	out := *c
	out.TLS = tls
	out.Members = append([]Member(nil), c.Members...)
	from, to := "https://", "http://"
	if tls {
		from, to = to, from
	}
	for i := range out.Members {
		m := &out.Members[i]
		for _, u := range []*string{&m.ClientURL, &m.PeerURL, &m.ListenClientURL, &m.ListenPeerURL} {
			*u = strings.Replace(*u, from, to, 1)
		}
	}
	return &out
}
