package playbook

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// minChunk is the fewest items worth a goroutine of their own (a
// variable so tests can make every chunk one item).
var minChunk = 256

// inChunks splits [0, n) into contiguous chunks, at most one per CPU, runs
// f on each concurrently and returns f's results in chunk order. Few items
// run inline.
func inChunks[R any](n int, f func(lo, hi int) R) []R {
	k := min(runtime.GOMAXPROCS(0), (n+minChunk-1)/minChunk)
	if k <= 1 {
		return []R{f(0, n)}
	}
	return inOrder(k, func(i int) R { return f(i*n/k, (i+1)*n/k) })
}

// inOrder runs f(0) to f(n-1) on at most one goroutine per CPU, each
// taking the next index as it finishes one, and returns the results in
// index order.
func inOrder[R any](n int, f func(i int) R) []R {
	out := make([]R, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				out[i] = f(i)
			}
		})
	}
	wg.Wait()
	return out
}
