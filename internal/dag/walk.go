package dag

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
)

// NodeError is how Walk reports a failed vertex: errors.Is/As see through it
// to the error run returned.
type NodeError struct {
	ID  string
	Err error
}

func (e *NodeError) Error() string { return e.ID + ": " + e.Err.Error() }
func (e *NodeError) Unwrap() error { return e.Err }

// Walk runs every vertex once all its dependencies have run successfully,
// at most forks at a time (forks < 1 means 1), in the manner of cmd/go's
// action runner: a fixed pool of workers fed from a ready queue ordered by
// insertion, so with forks == 1 the order is the stable TopoOrder.
//
// When run fails for a vertex, none of its transitive dependents run:
// skipped(id, cause) is called once for each, where cause is the error of
// the failed vertex at the root (not a chain). When ctx is cancelled no new
// vertex starts; those not started are reported skipped with ctx.Err().
// run is called from worker goroutines concurrently; skipped is only called
// from Walk's own goroutine, never concurrently with itself. skipped may be
// nil.
//
// Walk returns the failed vertices' errors joined (each a *NodeError), plus
// ctx.Err() when cancellation skipped anything; nil when all ran fine. A
// cyclic graph is refused before anything runs (*CycleError).
func (g *Graph[T]) Walk(ctx context.Context, forks int,
	run func(ctx context.Context, id string, v T) error,
	skipped func(id string, cause error)) error {
	if err := g.cycleErr(); err != nil {
		return err
	}
	if forks < 1 {
		forks = 1
	}
	if skipped == nil {
		skipped = func(string, error) {}
	}
	n := len(g.ids)
	type result struct {
		i   int
		err error
	}
	jobs := make(chan int)
	results := make(chan result)
	workers := min(forks, n)
	for range workers {
		go func() {
			for i := range jobs {
				results <- result{i, g.runOne(ctx, i, run)}
			}
		}()
	}
	defer close(jobs)

	// All state below is owned by this goroutine alone.
	pending := make([]int, n)
	done := make([]bool, n) // ran, or was skipped
	var ready readyQueue
	for i := range g.ids {
		pending[i] = len(g.deps[i])
		if pending[i] == 0 {
			ready.push(i)
		}
	}
	var errs []error
	finished, running := 0, 0
	// skipFrom marks every not-yet-finished transitive dependent of i as
	// skipped because of cause.
	skipFrom := func(i int, cause error) {
		stack := append([]int(nil), g.rdeps[i]...)
		for len(stack) > 0 {
			j := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if done[j] {
				continue
			}
			done[j] = true
			finished++
			skipped(g.ids[j], cause)
			stack = append(stack, g.rdeps[j]...)
		}
	}
	cancelled := false
	for finished < n {
		if !cancelled && ctx.Err() != nil {
			cancelled = true
		}
		for !cancelled && running < forks && ready.Len() > 0 {
			i := ready.pop()
			if done[i] {
				continue
			}
			select {
			case jobs <- i:
				running++
			case <-ctx.Done():
				// Put it back: it is reported with the other unstarted ones.
				ready.push(i)
				cancelled = true
			}
		}
		if running == 0 {
			if cancelled {
				break
			}
			// Nothing is running or ready but vertices remain: they are
			// all skipped and already counted, so this cannot happen in an
			// acyclic graph.
			panic("dag: walk stalled")
		}
		var r result
		if cancelled {
			r = <-results
		} else {
			select {
			case r = <-results:
			case <-ctx.Done():
				cancelled = true
				continue
			}
		}
		running--
		done[r.i] = true
		finished++
		if r.err != nil {
			errs = append(errs, &NodeError{ID: g.ids[r.i], Err: r.err})
			skipFrom(r.i, r.err)
			continue
		}
		for _, j := range g.rdeps[r.i] {
			if pending[j]--; pending[j] == 0 && !done[j] {
				ready.push(j)
			}
		}
	}
	if cancelled {
		cause := ctx.Err()
		skippedAny := false
		for i := range g.ids {
			if !done[i] {
				done[i] = true
				skippedAny = true
				skipped(g.ids[i], cause)
			}
		}
		if skippedAny {
			errs = append(errs, cause)
		}
	}
	return errors.Join(errs...)
}

// runOne turns a panic in run into that vertex's error, so one bad vertex
// cannot take the whole walk (and the process) down.
func (g *Graph[T]) runOne(ctx context.Context, i int, run func(context.Context, string, T) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return run(ctx, g.ids[i], g.vals[i])
}

// readyQueue is a min-heap of vertex indices: the earliest inserted ready
// vertex goes first.
type readyQueue []int

func (q readyQueue) Len() int           { return len(q) }
func (q readyQueue) Less(a, b int) bool { return q[a] < q[b] }
func (q readyQueue) Swap(a, b int)      { q[a], q[b] = q[b], q[a] }
func (q *readyQueue) Push(x any)        { *q = append(*q, x.(int)) }
func (q *readyQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}
func (q *readyQueue) push(i int) { heap.Push(q, i) }
func (q *readyQueue) pop() int   { return heap.Pop(q).(int) }
