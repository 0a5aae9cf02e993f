package etcd_service

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/etcdplay/etcdplay/modules/etcd"
)

// A new cluster whose members all start at once loses about a second per
// peer before it can elect a leader: before bootstrapping, each member
// asks every peer whether it already belongs to the cluster (etcd's
// isMemberBootstrapped, one second per peer), and a peer that has bound
// its port but is itself still in that check accepts the connection and
// answers nothing. So a new member starts once the members before it in
// the initial cluster serve their peer port: it then finds those
// answering and the ones after it not yet listening, and both answers are
// immediate. Waiting is bounded by startAfterLimit, after which the member
// starts anyway, as it would have without the wait.

// startAfterLimit bounds the wait for earlier members: about what etcd
// itself would lose to them, so a predecessor that never comes (its host
// is down, or not in this run) costs no more than not waiting.
const startAfterLimit = 3 * time.Second

// peerState is what a peer port says to a connection.
type peerState int

const (
	peerAbsent  peerState = iota // refused: etcd is not running there
	peerSilent                   // accepted but no answer: etcd is still bootstrapping
	peerServing                  // answered
)

// probePeer connects to a member's peer URL and waits up to timeout for an
// answer: this asks whether the port is served, and nothing read is
// trusted or kept. A served port answers a plain HTTP request at once,
// https included: etcd's TLS listener closes a connection whose first
// bytes are no TLS hello (or Go's HTTP server says it wants TLS), and
// either counts. A port that is only bound answers nothing. Plain bytes
// rather than a TLS handshake keep crypto/tls, and 2 MB, out of the lean
// agent that every cold host unpacks and hashes.
func probePeer(ctx context.Context, peerURL string, timeout time.Duration) peerState {
	u, err := url.Parse(peerURL)
	if err != nil || u.Host == "" {
		return peerServing // nothing to wait for; the config check reports a bad URL
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return peerAbsent
		}
		return peerSilent
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	_, err = conn.Write([]byte("GET /version HTTP/1.0\r\n\r\n"))
	if err == nil {
		_, err = conn.Read(make([]byte, 1))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return peerSilent
	}
	return peerServing
}

// waitForPeers returns once every URL answers, or when limit has passed,
// and returns the URLs still not answering then.
func waitForPeers(ctx context.Context, urls []string, limit time.Duration) []string {
	deadline := time.Now().Add(limit)
	pending := urls
	for len(pending) > 0 {
		var next []string
		for _, u := range pending {
			if probePeer(ctx, u, 200*time.Millisecond) != peerServing {
				next = append(next, u)
			}
		}
		pending = next
		if len(pending) == 0 || ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(25 * time.Millisecond):
		}
	}
	return pending
}

// memberDataExists reports whether etcd has bootstrapped in dataDir (its
// member directory exists): such a member restarts from its WAL and
// asks no peer first.
func memberDataExists(dataDir string) bool {
	if dataDir == "" {
		return true
	}
	_, err := os.Stat(etcd.MemberDir(dataDir))
	return !errors.Is(err, os.ErrNotExist)
}
