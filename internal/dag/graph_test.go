package dag

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// build makes a graph of the named vertices (values are their index) with
// edges written "a>b" (b depends on a).
func build(t *testing.T, ids string, edges ...string) *Graph[int] {
	t.Helper()
	g := New[int]()
	for i, id := range strings.Fields(ids) {
		if err := g.Add(id, i); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range edges {
		from, to, _ := strings.Cut(e, ">")
		if err := g.Connect(from, to); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

func TestAddConnectErrors(t *testing.T) {
	g := New[string]()
	if err := g.Add("a", "A"); err != nil {
		t.Fatal(err)
	}
	if err := g.Add("a", "again"); err == nil || !strings.Contains(err.Error(), `duplicate node "a"`) {
		t.Errorf("duplicate Add: got %v", err)
	}
	if err := g.Connect("a", "zz"); err == nil || !strings.Contains(err.Error(), `unknown node "zz"`) {
		t.Errorf("Connect to unknown: got %v", err)
	}
	if err := g.Connect("yy", "a"); err == nil || !strings.Contains(err.Error(), `unknown node "yy"`) {
		t.Errorf("Connect from unknown: got %v", err)
	}
	if v, ok := g.Node("a"); !ok || v != "A" {
		t.Errorf("Node(a) = %q, %v", v, ok)
	}
	if _, ok := g.Node("zz"); ok {
		t.Error("Node(zz) found")
	}
}

func TestAccessors(t *testing.T) {
	g := build(t, "c a b d", "c>a", "c>b", "a>d", "b>d", "a>d")
	if got, want := g.IDs(), []string{"c", "a", "b", "d"}; !reflect.DeepEqual(got, want) {
		t.Errorf("IDs = %v, want %v", got, want)
	}
	if got, want := g.Deps("d"), []string{"a", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Deps(d) = %v, want %v (duplicate edge must collapse)", got, want)
	}
	if got, want := g.Dependents("c"), []string{"a", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Dependents(c) = %v, want %v", got, want)
	}
	if g.Deps("c") != nil || g.Dependents("d") != nil || g.Deps("nope") != nil {
		t.Error("expected nil for roots/leaves/unknown")
	}
	if g.Len() != 4 {
		t.Errorf("Len = %d", g.Len())
	}
}

func TestTopoOrder(t *testing.T) {
	tests := []struct {
		name  string
		ids   string
		edges []string
		want  string
	}{
		{"no edges keeps insertion order", "x y z", nil, "x y z"},
		{"chain against insertion", "c b a", []string{"a>b", "b>c"}, "a b c"},
		{"diamond", "top l r bottom", []string{"top>l", "top>r", "l>bottom", "r>bottom"}, "top l r bottom"},
		{"ready ties by insertion", "a1 a2 b1 b2", []string{"a1>a2", "b1>b2"}, "a1 a2 b1 b2"},
		{"late root first", "n1 n2 root", []string{"root>n1", "root>n2"}, "root n1 n2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := build(t, tt.ids, tt.edges...).TopoOrder()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("got %v, want %s", got, tt.want)
			}
		})
	}
}

func TestCycle(t *testing.T) {
	tests := []struct {
		name  string
		ids   string
		edges []string
		want  string // "" = acyclic
	}{
		{"acyclic", "a b c", []string{"a>b", "b>c", "a>c"}, ""},
		{"self", "a b", []string{"b>b"}, "b"},
		{"two", "a b", []string{"a>b", "b>a"}, "a b"},
		{"three behind a root", "r a b c", []string{"r>a", "a>b", "b>c", "c>a"}, "a b c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := build(t, tt.ids, tt.edges...)
			got := strings.Join(g.Cycle(), " ")
			if got != tt.want {
				t.Fatalf("Cycle = %q, want %q", got, tt.want)
			}
			_, err := g.TopoOrder()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *CycleError
			if !errors.Is(err, ErrCycle) || !errors.As(err, &ce) {
				t.Fatalf("TopoOrder err = %v, want a CycleError", err)
			}
			first := strings.Fields(tt.want)[0]
			if !strings.HasSuffix(err.Error(), "-> "+first) {
				t.Errorf("cycle message %q should close on %s", err, first)
			}
		})
	}
}

// Connecting the same edge twice is a no-op, for vertices with few deps
// (scanned) and with many (indexed).
func TestConnectDedupsFewAndManyDeps(t *testing.T) {
	for _, n := range []int{3, manyDeps, 3 * manyDeps} {
		g := New[int]()
		_ = g.Add("to", 0)
		for round := 0; round < 2; round++ {
			for i := range n {
				id := fmt.Sprint("from", i)
				if round == 0 {
					_ = g.Add(id, i)
				}
				if err := g.Connect(id, "to"); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got := len(g.Deps("to")); got != n {
			t.Errorf("%d deps connected twice: %d deps", n, got)
		}
		if got := len(g.Dependents("from0")); got != 1 {
			t.Errorf("%d deps connected twice: from0 has %d dependents", n, got)
		}
	}
}
