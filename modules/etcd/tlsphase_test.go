package etcd

import "testing"

func TestPhaseOf(t *testing.T) {
	const h, hs = "http://10.0.0.1:2379", "https://10.0.0.1:2379"
	const p, ps = "http://127.0.1.1:2380", "https://127.0.1.1:2380"
	tests := []struct {
		name         string
		client, peer []string
		want         TLSPhase
	}{
		{"plain cluster", []string{h}, []string{p}, TLSOff},
		{"clients both ways, peers plain", []string{h, hs}, []string{p}, TLSBoth},
		{"peers moved", []string{h, hs}, []string{ps}, TLSPeer},
		{"TLS only", []string{hs}, []string{ps}, TLSOn},
		// A member added by hand with https clients but plain peers is
		// short of the peer switch.
		{"https clients, plain peers", []string{hs}, []string{p}, TLSBoth},
		// Not started yet: no client URLs published.
		{"unstarted with a plain peer", nil, []string{p}, TLSBoth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PhaseOf(tt.client, tt.peer); got != tt.want {
				t.Errorf("PhaseOf(%v, %v) = %s, want %s", tt.client, tt.peer, got, tt.want)
			}
		})
	}
}

func TestAtPhase(t *testing.T) {
	c, err := FromVars(lab(3, map[string]any{"etcd_tls": false}, nil))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		phase                              TLSPhase
		client, listenClient, peer, listen string
	}{
		{TLSOff, "http://127.0.1.2:2379", "http://127.0.1.2:2379", "http://127.0.1.2:2380", "http://127.0.1.2:2380"},
		{TLSBoth, "http://127.0.1.2:2379,https://127.0.1.2:2379", "http://127.0.1.2:2379,https://127.0.1.2:2379", "http://127.0.1.2:2380", "http://127.0.1.2:2380"},
		{TLSPeer, "http://127.0.1.2:2379,https://127.0.1.2:2379", "http://127.0.1.2:2379,https://127.0.1.2:2379", "https://127.0.1.2:2380", "https://127.0.1.2:2380"},
		{TLSOn, "https://127.0.1.2:2379", "https://127.0.1.2:2379", "https://127.0.1.2:2380", "https://127.0.1.2:2380"},
	}
	for _, tt := range tests {
		t.Run(tt.phase.String(), func(t *testing.T) {
			at, err := c.AtPhase("etcd2", tt.phase)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := at.Member("etcd2")
			if !at.TLS || m.ClientURL != tt.client || m.ListenClientURL != tt.listenClient || m.PeerURL != tt.peer || m.ListenPeerURL != tt.listen {
				t.Errorf("TLS %v, client %s (listen %s), peer %s (listen %s)", at.TLS, m.ClientURL, m.ListenClientURL, m.PeerURL, m.ListenPeerURL)
			}
			if o, _ := c.Member("etcd2"); o.ClientURL != "http://127.0.1.2:2379" || c.TLS {
				t.Errorf("AtPhase changed the model it was given: %+v", o)
			}
		})
	}
	if _, err := c.AtPhase("etcd9", TLSOn); err == nil {
		t.Error("AtPhase of a host that is not a member")
	}
	tls := c.WithScheme(true)
	if m, _ := tls.Member("etcd1"); !tls.TLS || m.ClientURL != "https://127.0.1.1:2379" || m.PeerURL != "https://127.0.1.1:2380" {
		t.Errorf("WithScheme(true): %+v", m)
	}
	if back := tls.WithScheme(false); back.Members[0].ClientURL != "http://127.0.1.1:2379" || back.TLS {
		t.Errorf("WithScheme(false): %+v", back.Members[0])
	}
}
