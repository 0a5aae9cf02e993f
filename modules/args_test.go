package modules

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSpecCheck(t *testing.T) {
	noSpace := func(s string) error {
		if strings.Contains(s, " ") {
			return errors.New("has a space")
		}
		return nil
	}
	spec := Spec{
		"path":  {Kind: String, Required: true},
		"mode":  {Kind: String},
		"state": {Kind: String, OneOf: []string{"file", "directory"}},
		"force": {Kind: Bool},
		"count": {Kind: Int},
		"items": {Kind: List},
		"wait":  {Kind: Duration},
		"name":  {Kind: String, Valid: noSpace},
	}
	for _, tc := range []struct {
		name    string
		args    Args
		wantArg string
		hint    string
	}{
		{"ok", Args{"path": "/x", "mode": 420, "force": "yes", "count": "3", "items": []any{"a"}}, "", ""},
		{"typo", Args{"path": "/x", "mdoe": "0644"}, "mdoe", "mode"},
		{"missing", Args{"mode": "0644"}, "path", ""},
		{"not one of", Args{"path": "/x", "state": "link"}, "state", ""},
		{"bad bool", Args{"path": "/x", "force": "perhaps"}, "force", ""},
		{"bad int", Args{"path": "/x", "count": 1.5}, "count", ""},
		{"bad list", Args{"path": "/x", "items": "a"}, "items", ""},
		{"unrelated name", Args{"path": "/x", "zzzzzzzz": 1}, "zzzzzzzz", ""},
		{"durations", Args{"path": "/x", "wait": "1m30s"}, "", ""},
		{"seconds", Args{"path": "/x", "wait": 90}, "", ""},
		{"not a duration", Args{"path": "/x", "wait": "soon"}, "wait", ""},
		{"zero seconds", Args{"path": "/x", "wait": 0}, "wait", ""},
		{"negative duration", Args{"path": "/x", "wait": "-1s"}, "wait", ""},
		{"valid", Args{"path": "/x", "name": "a"}, "", ""},
		{"not valid", Args{"path": "/x", "name": "a b"}, "name", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := spec.Check(tc.args)
			if tc.wantArg == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ae *ArgError
			if !errors.As(err, &ae) {
				t.Fatalf("want *ArgError for %q, got %v", tc.wantArg, err)
			}
			if ae.Arg != tc.wantArg || ae.Hint != tc.hint {
				t.Errorf("got arg %q hint %q, want %q %q (%v)", ae.Arg, ae.Hint, tc.wantArg, tc.hint, err)
			}
		})
	}
}

func TestArgsGetters(t *testing.T) {
	a := Args{"s": "v", "n": float64(7), "b": "no", "l": []any{"x", 2}, "one": "y"}
	if a.Str("s", "") != "v" || a.Str("missing", "d") != "d" {
		t.Error("Str")
	}
	if a.Int("n", 0) != 7 || a.Int("missing", 9) != 9 {
		t.Error("Int")
	}
	if a.Bool("b", true) || !a.Bool("missing", true) {
		t.Error("Bool")
	}
	if got := a.Strings("l"); len(got) != 2 || got[1] != "2" {
		t.Errorf("Strings list: %v", got)
	}
	if got := a.Strings("one"); len(got) != 1 || got[0] != "y" {
		t.Errorf("Strings scalar: %v", got)
	}
}

func TestArgsDuration(t *testing.T) {
	a := Args{"s": 90, "d": "2m", "bad": "soon"}
	for _, tc := range []struct {
		name string
		want time.Duration
		err  string
	}{
		{"s", 90 * time.Second, ""},
		{"d", 2 * time.Minute, ""},
		{"absent", time.Hour, ""},
		{"bad", 0, `argument "bad": "soon" is not a duration (e.g. 60s, 2m, or seconds)`},
	} {
		got, err := a.Duration(tc.name, time.Hour)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && err.Error() != tc.err {
			t.Errorf("Duration(%q) = %v, %v; want %v, %q", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"mode", "mdoe", 2}, {"kitten", "sitting", 3}, {"etcd", "etcd", 0}} {
		if got := EditDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}
