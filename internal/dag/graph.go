// Package dag is a generic directed acyclic graph and a parallel walker over
// it. It knows nothing of playbooks or hosts: vertices are string ids with a
// value of any type, and an edge from -> to means "to depends on from".
package dag

import (
	"errors"
	"fmt"
	"slices"
)

// ErrCycle is wrapped by the error TopoOrder and Walk return for a cyclic
// graph; the message names the cycle.
var ErrCycle = errors.New("dependency cycle")

// Graph is a set of vertices kept in insertion order, and edges between
// them. It is not safe for concurrent mutation; Walk only reads it.
type Graph[T any] struct {
	ids  []string
	idx  map[string]int
	vals []T
	// deps[i] and rdeps[i] hold vertex indices in the order the edges were
	// connected. A vertex with few deps is deduplicated by scanning them;
	// edge[[2]int{from,to}] holds the edges of those with many (a play's
	// first task after the previous play's last, host by host).
	deps  [][]int
	rdeps [][]int
	edge  map[[2]int]bool
}

// manyDeps is where a vertex's deps are indexed in edge rather than
// scanned: most vertices have one or two, and a map entry per edge was
// most of a large playbook's compile time.
const manyDeps = 32

// New returns an empty graph.
func New[T any]() *Graph[T] {
	return &Graph[T]{idx: map[string]int{}, edge: map[[2]int]bool{}}
}

// Add inserts a vertex. Ids are unique.
func (g *Graph[T]) Add(id string, v T) error {
	if _, dup := g.idx[id]; dup {
		return fmt.Errorf("dag: duplicate node %q", id)
	}
	g.idx[id] = len(g.ids)
	g.ids = append(g.ids, id)
	g.vals = append(g.vals, v)
	g.deps = append(g.deps, nil)
	g.rdeps = append(g.rdeps, nil)
	return nil
}

// Grow makes room for n more vertices, so a compiler that knows how many
// it will add does not copy the graph's tables as they fill.
func (g *Graph[T]) Grow(n int) {
	if n <= 0 {
		return
	}
	g.ids = slices.Grow(g.ids, n)
	g.vals = slices.Grow(g.vals, n)
	g.deps = slices.Grow(g.deps, n)
	g.rdeps = slices.Grow(g.rdeps, n)
	if len(g.idx) == 0 {
		g.idx = make(map[string]int, n)
	}
}

// Connect adds an edge: to depends on from. Connecting the same pair twice
// is a no-op. A self edge is accepted and reported by Cycle.
func (g *Graph[T]) Connect(from, to string) error {
	f, ok := g.idx[from]
	if !ok {
		return fmt.Errorf("dag: connect %q -> %q: unknown node %q", from, to, from)
	}
	t, ok := g.idx[to]
	if !ok {
		return fmt.Errorf("dag: connect %q -> %q: unknown node %q", from, to, to)
	}
	switch d := g.deps[t]; {
	case len(d) < manyDeps && slices.Contains(d, f):
		return nil
	case len(d) >= manyDeps && g.edge[[2]int{f, t}]:
		return nil
	}
	g.deps[t] = append(g.deps[t], f)
	g.rdeps[f] = append(g.rdeps[f], t)
	switch d := g.deps[t]; {
	case len(d) == manyDeps:
		for _, x := range d {
			g.edge[[2]int{x, t}] = true
		}
	case len(d) > manyDeps:
		g.edge[[2]int{f, t}] = true
	}
	return nil
}

// Len is the number of vertices.
func (g *Graph[T]) Len() int { return len(g.ids) }

// Node returns the value stored under id.
func (g *Graph[T]) Node(id string) (T, bool) {
	i, ok := g.idx[id]
	if !ok {
		var zero T
		return zero, false
	}
	return g.vals[i], true
}

// IDs lists every vertex in insertion order.
func (g *Graph[T]) IDs() []string {
	return append([]string(nil), g.ids...)
}

// Deps lists what id depends on, in the order the edges were added.
func (g *Graph[T]) Deps(id string) []string {
	i, ok := g.idx[id]
	if !ok {
		return nil
	}
	return g.names(g.deps[i])
}

// Dependents lists what depends on id, in the order the edges were added.
func (g *Graph[T]) Dependents(id string) []string {
	i, ok := g.idx[id]
	if !ok {
		return nil
	}
	return g.names(g.rdeps[i])
}

func (g *Graph[T]) names(is []int) []string {
	if len(is) == 0 {
		return nil
	}
	out := make([]string, len(is))
	for k, i := range is {
		out[k] = g.ids[i]
	}
	return out
}

// Cycle returns the ids of one cycle in edge order (each id is a dependency
// of the next, and the last of the first), or nil when the graph is acyclic.
// The search starts from vertices in insertion order, so the answer is
// deterministic.
func (g *Graph[T]) Cycle() []string {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(g.ids))
	var stack []int
	var found []int
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		stack = append(stack, i)
		for _, j := range g.rdeps[i] {
			switch color[j] {
			case grey:
				for k := len(stack) - 1; k >= 0; k-- {
					if stack[k] == j {
						found = append([]int(nil), stack[k:]...)
						return true
					}
				}
			case white:
				if visit(j) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return false
	}
	for i := range g.ids {
		if color[i] == white && visit(i) {
			return g.names(found)
		}
	}
	return nil
}

func (g *Graph[T]) cycleErr() error {
	c := g.Cycle()
	if c == nil {
		return nil
	}
	return &CycleError{IDs: c}
}

// CycleError names the vertices of a cycle; errors.Is(err, ErrCycle) holds.
type CycleError struct{ IDs []string }

func (e *CycleError) Error() string {
	s := ""
	for _, id := range e.IDs {
		s += id + " -> "
	}
	return fmt.Sprintf("%v: %s%s", ErrCycle, s, e.IDs[0])
}

func (e *CycleError) Unwrap() error { return ErrCycle }

// TopoOrder returns every vertex after all its dependencies. Among vertices
// that are ready at the same time, insertion order wins, so the result is
// stable.
func (g *Graph[T]) TopoOrder() ([]string, error) {
	if err := g.cycleErr(); err != nil {
		return nil, err
	}
	pending := make([]int, len(g.ids))
	var ready readyQueue
	for i := range g.ids {
		pending[i] = len(g.deps[i])
		if pending[i] == 0 {
			ready.push(i)
		}
	}
	out := make([]string, 0, len(g.ids))
	for ready.Len() > 0 {
		i := ready.pop()
		out = append(out, g.ids[i])
		for _, j := range g.rdeps[i] {
			if pending[j]--; pending[j] == 0 {
				ready.push(j)
			}
		}
	}
	return out, nil
}
