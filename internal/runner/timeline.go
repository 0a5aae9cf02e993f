package runner

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Span is where one step of a run spent its time: the connections, or
// one task over every host it ran on, in seconds from the run's start.
// Steps that ran side by side overlap.
type Span struct {
	Play  string  `json:"play,omitempty"`
	What  string  `json:"what"` // "connect", or the task's title
	Start float64 `json:"start_seconds"`
	End   float64 `json:"end_seconds"`
	Hosts int     `json:"hosts"`
}

// Seconds is how long the step took from its first host's start to its
// last host's end.
func (s Span) Seconds() float64 { return s.End - s.Start }

// timeline gathers spans as nodes finish. Skipped nodes take no time and
// are left out.
type timeline struct {
	start time.Time
	mu    sync.Mutex
	spans []*Span
	index map[[2]string]*Span
}

func newTimeline(start time.Time) *timeline {
	return &timeline{start: start, index: map[[2]string]*Span{}}
}

// add widens the step's span to [began, ended] and counts one host more.
func (t *timeline) add(play, what string, began, ended time.Time) {
	b, e := began.Sub(t.start).Seconds(), ended.Sub(t.start).Seconds()
	t.mu.Lock()
	defer t.mu.Unlock()
	k := [2]string{play, what}
	s := t.index[k]
	if s == nil {
		s = &Span{Play: play, What: what, Start: b, End: e}
		t.index[k] = s
		t.spans = append(t.spans, s)
	}
	s.Start, s.End = min(s.Start, b), max(s.End, e)
	s.Hosts++
}

// spans are the steps by when they started (in the order first seen
// when they started together).
func (t *timeline) list() []Span {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Span, len(t.spans))
	for i, s := range t.spans {
		out[i] = *s
	}
	slices.SortStableFunc(out, func(a, b Span) int { return cmp.Compare(a.Start, b.Start) })
	return out
}
