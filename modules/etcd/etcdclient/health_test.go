package etcdclient_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// countingDialer dials directly and counts its dials.
func countingDialer() (etcdclient.DialFunc, *atomic.Int32) {
	var dials atomic.Int32
	return func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}, &dials
}

func TestHealthOverTLS(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	ctx := context.Background()

	// Every connection goes through the dialer, as it would through SSH.
	dial, dials := countingDialer()
	h, err := etcdclient.CheckHealth(ctx, tc.Model, tc.StateDir, dial, etcdclient.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Healthy() {
		t.Fatalf("fresh cluster unhealthy: %v", h.Problems())
	}
	if dials.Load() < 3 {
		t.Errorf("dialer used %d times, want every member through it", dials.Load())
	}
	if len(h.List) != 3 {
		t.Errorf("member list has %d members", len(h.List))
	}
	l, ok := h.Leader()
	if !ok || l.ID != tc.ID(tc.LeaderIndex()) {
		t.Errorf("leader %+v ok=%v, want id %x", l, ok, tc.ID(tc.LeaderIndex()))
	}

	// One member down: it is named, with the reason, and the rest stay healthy.
	tc.Stop(1)
	start := time.Now()
	h, err = etcdclient.CheckHealth(ctx, tc.Model, tc.StateDir, dial, etcdclient.CheckOptions{ProbeTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A refused connection is an answer: no waiting out the probe timeout.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("check with a member down took %s", d)
	}
	if got := h.Unhealthy(); len(got) != 1 || got[0] != "etcd2" {
		t.Fatalf("unhealthy = %v, want [etcd2]", got)
	}
	if p := strings.Join(h.Problems(), "; "); !strings.Contains(p, "connection refused") {
		t.Errorf("problem does not say why: %s", p)
	}
	// Only the live members, selected by name: healthy.
	h, err = etcdclient.CheckHealth(ctx, tc.Model, tc.StateDir, dial, etcdclient.CheckOptions{Members: []string{"etcd1", "etcd3"}})
	if err != nil || !h.Healthy() {
		t.Fatalf("selected live members: err=%v problems=%v", err, h.Problems())
	}
	if _, err := etcdclient.CheckHealth(ctx, tc.Model, tc.StateDir, dial, etcdclient.CheckOptions{Members: []string{"nope"}}); err == nil {
		t.Error("unknown member accepted")
	}

	// WaitHealthy times out naming the member, then succeeds once it is back.
	_, err = etcdclient.WaitHealthy(ctx, tc.Model, tc.StateDir, dial, etcdclient.WaitOptions{Timeout: 1500 * time.Millisecond})
	if !errors.Is(err, etcdclient.ErrNotHealthy) || !strings.Contains(err.Error(), "etcd2") {
		t.Fatalf("WaitHealthy err = %v", err)
	}
	go func() { time.Sleep(300 * time.Millisecond); tc.Restart(1) }()
	if _, err := etcdclient.WaitHealthy(ctx, tc.Model, tc.StateDir, dial, etcdclient.WaitOptions{Timeout: 20 * time.Second}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestHealthWithoutClientCert(t *testing.T) {
	c, err := etcd.FromVars(map[string]any{"groups": map[string]any{"etcd": []any{"e1"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = etcdclient.CheckHealth(context.Background(), c, t.TempDir(), nil, etcdclient.CheckOptions{})
	if err == nil || !strings.Contains(err.Error(), "etcd_pki") {
		t.Errorf("err = %v, want a hint to run etcd_pki", err)
	}
}

// A member the inventory does not name is probed through the client URL
// the member list advertises, only when asked, and never counts in
// Problems: etcdplay does not manage it, but a quorum guard must know
// whether it is up.
func TestHealthProbesOutsiders(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	ctx := context.Background()
	inv := *tc.Model
	inv.Members = tc.Model.Members[:2] // etcd3 is outside the inventory
	id3 := tc.ID(2)
	h, err := etcdclient.CheckHealth(ctx, &inv, tc.StateDir, nil, etcdclient.CheckOptions{})
	if err != nil || len(h.Outsiders) != 0 {
		t.Fatalf("not asked: outsiders %+v, err %v", h.Outsiders, err)
	}
	h, err = etcdclient.CheckHealth(ctx, &inv, tc.StateDir, nil, etcdclient.CheckOptions{Outsiders: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Outsiders) != 1 || !h.Outsiders[0].Healthy || h.Outsiders[0].ID != id3 || h.Outsiders[0].Name != "etcd3" {
		t.Fatalf("outsiders = %+v, want etcd3 healthy with id %x", h.Outsiders, id3)
	}
	tc.Stop(2)
	h, err = etcdclient.CheckHealth(ctx, &inv, tc.StateDir, nil, etcdclient.CheckOptions{Outsiders: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Outsiders) != 1 || h.Outsiders[0].Healthy || h.Outsiders[0].ID != id3 || !strings.Contains(h.Outsiders[0].Error, "connection refused") {
		t.Fatalf("outsiders = %+v, want etcd3 down, saying why", h.Outsiders)
	}
	if !h.Healthy() {
		t.Errorf("an outsider down made the inventory's members unhealthy: %v", h.Problems())
	}
}

// TestChecksShareClientsUntilAChange: a check right after another dials
// no member again (the clients of the healthy members were kept), and
// the first check after a change to any host dials every member anew.
// Each member is dialled once per check that makes its client: Status
// goes over the client's own connection.
func TestChecksShareClientsUntilAChange(t *testing.T) {
	tc := etcdtest.Start(t, 3)
	ctx := context.Background()
	dial, dials := countingDialer()
	check := func() int32 {
		t.Helper()
		before := dials.Load()
		h, err := etcdclient.CheckHealth(ctx, tc.Model, tc.StateDir, dial, etcdclient.CheckOptions{})
		if err != nil || !h.Healthy() {
			t.Fatalf("check: err=%v problems=%v", err, h.Problems())
		}
		return dials.Load() - before
	}
	modules.NoteChange() // nothing kept from an earlier test
	if n := check(); n != 3 {
		t.Fatalf("first check dialled %d times, want each member once", n)
	}
	if n := check(); n != 0 {
		t.Errorf("a check with nothing changed since the last dialled %d times, want none", n)
	}
	modules.NoteChange()
	if n := check(); n != 3 {
		t.Errorf("the check after a change dialled %d times, want each member once anew", n)
	}
}
