package etcd

import (
	"strings"
	"testing"
)

func TestCheckJump(t *testing.T) {
	v := func(s string) Version {
		x, err := ParseVersion(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	tests := []struct {
		from, to string
		want     string // in the reason, or in the error when refused
		refused  bool
	}{
		{"v3.6.15", "v3.6.16", "patch upgrade within 3.6", false},
		{"v3.6.16", "v3.6.15", "patch downgrade within 3.6", false},
		{"v3.5.35", "v3.6.16", "one minor up (3.5 -> 3.6); the cluster runs v3.5.35, at least v3.5.26", false},
		{"v3.5.26", "v3.6.0", "one minor up", false},
		{"v3.6.16", "v3.7.3", "one minor up (3.6 -> 3.7)", false},
		{"v3.5.21", "v3.6.16", "upgrade to v3.5.26 or a later 3.5 patch first", true},
		{"v3.5.35", "v3.7.3", "upgrade to the latest v3.6.x first", true},
		{"v3.4.30", "v3.6.16", "upgrade to the latest v3.5.x first", true},
		{"v3.7.3", "v3.6.16", "ask for it with -e allow_downgrade=true", true},
	}
	for _, tt := range tests {
		why, err := CheckJump(v(tt.from), v(tt.to))
		got := why
		if err != nil {
			got = err.Error()
		}
		if (err != nil) != tt.refused || !strings.Contains(got, tt.want) {
			t.Errorf("%s -> %s: %q (refused %v), want %q (refused %v)", tt.from, tt.to, got, err != nil, tt.want, tt.refused)
		}
	}
}

func TestCheckDowngrade(t *testing.T) {
	for _, tt := range []struct {
		from, to, want string
		refused        bool
	}{
		{"v3.7.3", "v3.6.16", "one minor down (3.7 -> 3.6) through etcd's downgrade API", false},
		{"v3.6.16", "v3.5.35", "one minor down (3.6 -> 3.5)", false},
		{"v3.7.3", "v3.5.35", "downgrade to the latest v3.6.x first", true},
		{"v3.5.35", "v3.4.30", "downgrade API exists from 3.6 on", true},
	} {
		from, _ := ParseVersion(tt.from)
		to, _ := ParseVersion(tt.to)
		why, err := CheckDowngrade(from, to)
		got := why
		if err != nil {
			got = err.Error()
		}
		if (err != nil) != tt.refused || !strings.Contains(got, tt.want) {
			t.Errorf("%s -> %s: %q, want %q (refused %v)", tt.from, tt.to, got, tt.want, tt.refused)
		}
	}
}
