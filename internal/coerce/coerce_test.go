package coerce

import "testing"

func TestBool(t *testing.T) {
	for _, tc := range []struct {
		in        any
		value, ok bool
	}{
		{true, true, true}, {false, false, true},
		{"yes", true, true}, {" YES ", true, true}, {"on", true, true}, {"y", true, true}, {"True", true, true}, {"1", true, true}, {"t", true, true},
		{"no", false, true}, {"Off", false, true}, {"n", false, true}, {"false", false, true}, {"0", false, true}, {"", false, true}, {"f", false, true},
		{1, true, true}, {0, false, true}, {1.0, true, true}, {int64(0), false, true},
		{2, false, false}, {0.5, false, false}, {"maybe", false, false}, {nil, false, false}, {[]any{}, false, false},
	} {
		v, ok := Bool(tc.in)
		if v != tc.value || ok != tc.ok {
			t.Errorf("Bool(%#v) = %v, %v; want %v, %v", tc.in, v, ok, tc.value, tc.ok)
		}
	}
}

func TestInt(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want int
		ok   bool
	}{
		{3, 3, true}, {int64(-4), -4, true}, {2379.0, 2379, true}, {" 42 ", 42, true}, {"-7", -7, true},
		{1.5, 0, false}, {"1.5", 0, false}, {"x", 0, false}, {true, 0, false}, {nil, 0, false}, {1e300, 0, false},
	} {
		n, ok := Int(tc.in)
		if n != tc.want || ok != tc.ok {
			t.Errorf("Int(%#v) = %d, %v; want %d, %v", tc.in, n, ok, tc.want, tc.ok)
		}
	}
}
