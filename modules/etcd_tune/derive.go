package etcd_tune

import (
	"fmt"
	"sort"
	"time"
)

// percentile returns the p-th percentile (0..100) of samples by the
// nearest-rank method: with few samples, p99 is the slowest one, which is
// the honest answer.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(p/100*float64(len(s)) + 0.999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// clockSample is one read of a host's clock through the agent: the
// controller's clock before the request and after the reply, and the
// host's clock in between.
type clockSample struct {
	Sent, Received time.Time // controller
	Host           time.Time
}

// offset estimates host clock minus controller clock from the sample with
// the shortest round trip (as NTP does), and its error bound (half that
// round trip).
func offset(samples []clockSample) (off, uncertainty time.Duration, ok bool) {
	best := -1
	for i, s := range samples {
		if best < 0 || s.Received.Sub(s.Sent) < samples[best].Received.Sub(samples[best].Sent) {
			best = i
		}
	}
	if best < 0 {
		return 0, 0, false
	}
	s := samples[best]
	rtt := s.Received.Sub(s.Sent)
	mid := s.Sent.Add(rtt / 2)
	return s.Host.Sub(mid), rtt / 2, true
}

// skewSpread is how far apart the hosts' clocks are, given each host's
// offset from the controller: what etcd itself cares about (it warns about
// peers more than 1s apart). uncertainty is the worst-case error.
func skewSpread(offsets map[string]time.Duration, unc map[string]time.Duration) (spread, uncertainty time.Duration, ahead, behind string) {
	first := true
	var hi, lo time.Duration
	for h, o := range offsets {
		if first || o > hi || (o == hi && h < ahead) {
			hi, ahead = o, h
		}
		if first || o < lo || (o == lo && h < behind) {
			lo, behind = o, h
		}
		first = false
	}
	return hi - lo, unc[ahead] + unc[behind], ahead, behind
}

// Timing is a heartbeat interval and election timeout in milliseconds.
type Timing struct {
	Heartbeat int `json:"heartbeat_interval"`
	Election  int `json:"election_timeout"`
}

const (
	minHeartbeatMs = 100   // etcd's default; lower buys nothing on a LAN
	maxElectionMs  = 50000 // etcd refuses longer election timeouts
	stepMs         = 10    // round the heartbeat up to this
)

// deriveTiming applies etcd's tuning guide: the heartbeat interval about
// the largest round trip between members (never below etcd's default of
// 100ms), the election timeout ten times the heartbeat.
func deriveTiming(maxRTT time.Duration) (Timing, error) {
	ms := int((maxRTT + time.Millisecond - 1) / time.Millisecond)
	hb := max(minHeartbeatMs, (ms+stepMs-1)/stepMs*stepMs)
	t := Timing{Heartbeat: hb, Election: 10 * hb}
	if t.Election > maxElectionMs {
		return t, fmt.Errorf("round trip between members is %s: a heartbeat that long needs an election timeout above etcd's limit of %dms; members this far apart should not share a cluster", maxRTT.Round(time.Millisecond), maxElectionMs)
	}
	return t, nil
}

// stable keeps the previous timing when the new one is within 25%: a
// noisy measurement must not rewrite etcd.yaml (and restart every member)
// on each apply.
func stable(prev *Timing, next Timing) Timing {
	if prev == nil || prev.Heartbeat <= 0 {
		return next
	}
	lo, hi := prev.Heartbeat*3/4, prev.Heartbeat*5/4
	if next.Heartbeat >= lo && next.Heartbeat <= hi {
		return *prev
	}
	return next
}
