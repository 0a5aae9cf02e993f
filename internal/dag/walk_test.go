package dag

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder collects what Walk did.
type recorder struct {
	mu      sync.Mutex
	ran     []string
	skipped map[string]error
}

func (r *recorder) run(fail map[string]error) func(context.Context, string, int) error {
	return func(_ context.Context, id string, _ int) error {
		r.mu.Lock()
		r.ran = append(r.ran, id)
		r.mu.Unlock()
		return fail[id]
	}
}

func (r *recorder) skip(id string, cause error) {
	if r.skipped == nil {
		r.skipped = map[string]error{}
	}
	if _, twice := r.skipped[id]; twice {
		panic("skipped twice: " + id)
	}
	r.skipped[id] = cause
}

func TestWalkSerialOrderIsTopoOrder(t *testing.T) {
	g := build(t, "c b a d e", "a>b", "b>c", "a>d", "d>e")
	var r recorder
	if err := g.Walk(context.Background(), 1, r.run(nil), r.skip); err != nil {
		t.Fatal(err)
	}
	want, _ := g.TopoOrder()
	if !reflect.DeepEqual(r.ran, want) {
		t.Errorf("ran %v, want %v", r.ran, want)
	}
	if len(r.skipped) != 0 {
		t.Errorf("skipped %v", r.skipped)
	}
}

func TestWalkRespectsDeps(t *testing.T) {
	// A wide, layered graph: every vertex must start after its deps ended.
	g := New[int]()
	for l := range 4 {
		for i := range 10 {
			_ = g.Add(fmt.Sprintf("l%d.%d", l, i), l)
			if l > 0 {
				_ = g.Connect(fmt.Sprintf("l%d.%d", l-1, i), fmt.Sprintf("l%d.%d", l, i))
				_ = g.Connect(fmt.Sprintf("l%d.%d", l-1, (i+1)%10), fmt.Sprintf("l%d.%d", l, i))
			}
		}
	}
	var mu sync.Mutex
	ended := map[string]bool{}
	err := g.Walk(context.Background(), 7, func(_ context.Context, id string, _ int) error {
		mu.Lock()
		for _, d := range g.Deps(id) {
			if !ended[d] {
				mu.Unlock()
				return fmt.Errorf("%s started before its dep %s ended", id, d)
			}
		}
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		ended[id] = true
		mu.Unlock()
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ended) != 40 {
		t.Errorf("ran %d of 40", len(ended))
	}
}

func TestWalkParallelismBound(t *testing.T) {
	for _, forks := range []int{1, 3, 8, 50} {
		t.Run(fmt.Sprint("forks=", forks), func(t *testing.T) {
			g := New[int]()
			for i := range 30 {
				_ = g.Add(fmt.Sprint(i), i)
			}
			want := int32(min(forks, 30))
			var cur, peak atomic.Int32
			// The first vertices to start hold at the gate until the
			// pool is full, so the peak is reached however slow the
			// machine is; then the gate opens for all.
			gate := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- g.Walk(context.Background(), forks, func(context.Context, string, int) error {
					n := cur.Add(1)
					for {
						p := peak.Load()
						if n <= p || peak.CompareAndSwap(p, n) {
							break
						}
					}
					<-gate
					cur.Add(-1)
					return nil
				}, nil)
			}()
			deadline := time.Now().Add(5 * time.Second)
			for cur.Load() < want && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond) // room for a wrongly started extra one
			if got := peak.Load(); got != want {
				t.Errorf("peak concurrency %d, want %d", got, want)
			}
			close(gate)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := peak.Load(); got != want {
				t.Errorf("peak concurrency after the gate %d, want %d", got, want)
			}
		})
	}
}

func TestWalkFailureSkipsDependents(t *testing.T) {
	// root -> a -> b -> d ; root -> c -> d ; x independent; a fails.
	g := build(t, "root a b c d x", "root>a", "a>b", "b>d", "root>c", "c>d")
	boom := errors.New("boom")
	var r recorder
	err := g.Walk(context.Background(), 4, r.run(map[string]error{"a": boom}), r.skip)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom inside", err)
	}
	var ne *NodeError
	if !errors.As(err, &ne) || ne.ID != "a" {
		t.Errorf("NodeError = %+v", ne)
	}
	sort.Strings(r.ran)
	if got := strings.Join(r.ran, " "); got != "a c root x" {
		t.Errorf("ran %q", got)
	}
	if len(r.skipped) != 2 || r.skipped["b"] != boom || r.skipped["d"] != boom {
		t.Errorf("skipped %v, want b and d with the root cause", r.skipped)
	}
}

func TestWalkTwoFailuresJoined(t *testing.T) {
	g := build(t, "a b c", "a>c", "b>c")
	ea, eb := errors.New("ea"), errors.New("eb")
	var r recorder
	err := g.Walk(context.Background(), 2, r.run(map[string]error{"a": ea, "b": eb}), r.skip)
	if !errors.Is(err, ea) || !errors.Is(err, eb) {
		t.Fatalf("err = %v, want both", err)
	}
	if len(r.skipped) != 1 || (r.skipped["c"] != ea && r.skipped["c"] != eb) {
		t.Errorf("skipped = %v, want c once", r.skipped)
	}
}

func TestWalkPanicIsNodeError(t *testing.T) {
	g := build(t, "a b", "a>b")
	var r recorder
	err := g.Walk(context.Background(), 2, func(context.Context, string, int) error { panic("oops") }, r.skip)
	if err == nil || !strings.Contains(err.Error(), "a: panic: oops") {
		t.Fatalf("err = %v", err)
	}
	if _, ok := r.skipped["b"]; !ok {
		t.Error("b not skipped")
	}
}

func TestWalkCancel(t *testing.T) {
	// a chain of 20: cancel while the third runs.
	g := New[int]()
	for i := range 20 {
		_ = g.Add(fmt.Sprint(i), i)
		if i > 0 {
			_ = g.Connect(fmt.Sprint(i-1), fmt.Sprint(i))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var r recorder
	err := g.Walk(ctx, 4, func(ctx context.Context, id string, v int) error {
		r.mu.Lock()
		r.ran = append(r.ran, id)
		r.mu.Unlock()
		if v == 2 {
			cancel()
		}
		return nil
	}, r.skip)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := strings.Join(r.ran, " "); got != "0 1 2" {
		t.Errorf("ran %q, want 0 1 2", got)
	}
	if len(r.skipped) != 17 {
		t.Errorf("skipped %d, want 17", len(r.skipped))
	}
	for id, c := range r.skipped {
		if !errors.Is(c, context.Canceled) {
			t.Errorf("%s skipped with %v", id, c)
		}
	}
}

func TestWalkCancelledBeforeStart(t *testing.T) {
	g := build(t, "a b c")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var r recorder
	err := g.Walk(ctx, 2, r.run(nil), r.skip)
	if !errors.Is(err, context.Canceled) || len(r.ran) != 0 || len(r.skipped) != 3 {
		t.Errorf("err %v ran %v skipped %v", err, r.ran, r.skipped)
	}
}

func TestWalkCancelWaitsForRunning(t *testing.T) {
	// In-flight vertices finish (they see ctx cancelled) before Walk returns.
	g := build(t, "a b c d", "a>d", "b>d", "c>d")
	ctx, cancel := context.WithCancel(context.Background())
	var inflight atomic.Int32
	var r recorder
	started := make(chan struct{}, 3)
	go func() {
		for range 3 {
			<-started
		}
		cancel()
	}()
	err := g.Walk(ctx, 3, func(ctx context.Context, id string, _ int) error {
		inflight.Add(1)
		defer inflight.Add(-1)
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, r.skip)
	if inflight.Load() != 0 {
		t.Error("Walk returned with vertices still running")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(r.skipped) != 1 || !errors.Is(r.skipped["d"], context.Canceled) {
		t.Errorf("skipped %v", r.skipped)
	}
}

func TestWalkCycleRefused(t *testing.T) {
	g := build(t, "a b c", "a>b", "b>c", "c>b")
	ran := false
	err := g.Walk(context.Background(), 2, func(context.Context, string, int) error { ran = true; return nil }, nil)
	if !errors.Is(err, ErrCycle) || ran {
		t.Fatalf("err = %v, ran = %v", err, ran)
	}
	if !strings.Contains(err.Error(), "b -> c -> b") {
		t.Errorf("message %q does not name the cycle", err)
	}
}

func TestWalkEmpty(t *testing.T) {
	if err := New[int]().Walk(context.Background(), 0, nil, nil); err != nil {
		t.Fatal(err)
	}
}
