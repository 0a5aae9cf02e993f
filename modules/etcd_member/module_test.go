package etcd_member

import (
	"errors"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd_config"
	tmplmod "github.com/etcdplay/etcdplay/modules/template"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		args modules.Args
		bad  string // offending argument, "" when valid
	}{
		{modules.Args{}, ""},
		{modules.Args{"remove": "etcd4,etcd5", "timeout": "90s"}, ""},
		{modules.Args{"replace": []any{"etcd3"}, "preflight": true}, ""},
		{modules.Args{"remvoe": "etcd4"}, "remvoe"},
		{modules.Args{"timeout": "soon"}, "timeout"},
		{modules.Args{"preflight": "maybe"}, "preflight"},
	}
	for _, tt := range tests {
		err := Module{}.Validate(tt.args)
		var ae *modules.ArgError
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case tt.bad != "" && (!errors.As(err, &ae) || ae.Arg != tt.bad):
			t.Errorf("%v: got %v, want an error about %q", tt.args, err, tt.bad)
		}
	}
}

func TestNamesSplitsCommas(t *testing.T) {
	got := names(modules.Args{"remove": []any{"etcd4, etcd5", "etcd6"}}, "remove")
	if strings.Join(got, "|") != "etcd4|etcd5|etcd6" {
		t.Errorf("got %q", got)
	}
	if got := names(modules.Args{"remove": ""}, "remove"); len(got) != 0 {
		t.Errorf("empty string: got %q", got)
	}
}

// TestJoinConfig checks the joiner's etcd.yaml: state existing, and an
// initial-cluster of exactly the members in the list (itself by its
// inventory name, though it has no name in the list before it starts).
func TestJoinConfig(t *testing.T) {
	c := model(t, 3)
	name, text, err := tmplmod.Load("", etcd_config.DefaultTemplate)
	if err != nil {
		t.Fatal(err)
	}
	p := &payload{Cluster: c, TmplName: name, TmplText: text, Opts: etcd_config.Options{State: "existing"}}
	list := []*etcdserverpb.Member{
		{ID: 1, Name: "etcd1", PeerURLs: []string{"https://127.0.1.1:2380"}},
		{ID: 7, PeerURLs: []string{"https://127.0.1.2:2380"}, IsLearner: true},
	}
	out, err := joinConfig(p, &c.Members[1], 7, list)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`name: "etcd2"`,
		`initial-cluster: "etcd1=https://127.0.1.1:2380,etcd2=https://127.0.1.2:2380"`,
		`initial-cluster-state: existing`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("joiner config lacks %s:\n%s", want, out)
		}
	}
	// Another member that never started cannot be named: refuse.
	list = append(list, &etcdserverpb.Member{ID: 9, PeerURLs: []string{"https://127.0.1.9:2380"}})
	if _, err := joinConfig(p, &c.Members[1], 7, list); err == nil || !strings.Contains(err.Error(), "never started") {
		t.Errorf("unnamed foreign member: %v", err)
	}
}
