package tmpl

import (
	"reflect"
	"strings"
	"testing"
)

// Ansible's expressions, as an Ansible playbook writes them, render as
// Ansible renders them.
func TestAnsibleExpressions(t *testing.T) {
	data := map[string]any{
		"etcd_version": "v3.6.16",
		"port":         2379,
		"flag":         "yes",
		"empty":        "",
		"groups":       map[string]any{"etcd": []any{"etcd1", "etcd2"}},
		"h":            "etcd2",
		"hostvars":     map[string]any{"etcd2": map[string]any{"ansible_host": "10.0.0.2"}},
		"names":        []any{"a", "b"},
		"nested":       map[string]any{"x": map[string]any{"y": 1}},
	}
	for _, tt := range []struct {
		text string
		want any
	}{
		{`{{ etcd_version == "v3.6.16" }}`, true},
		{`{{ etcd_version != 'v3.6.16' }}`, false},
		{`{{ port == 2379.0 }}`, true},
		{`{{ port > 1024 and port < 65536 }}`, true},
		{`{{ missing is defined }}`, false},
		{`{{ missing is not defined }}`, true},
		{`{{ missing is undefined }}`, true},
		{`{{ nested.x.y is defined }}`, true},
		{`{{ nested.x.z is defined }}`, false},
		{`{{ missing | default('v3.5.0') }}`, "v3.5.0"},
		{`{{ empty | d("fallback") }}`, "fallback"},
		{`{{ groups['etcd'] | join(',') }}`, "etcd1,etcd2"},
		{`{{ groups["etcd"] | length }}`, 2},
		{`{{ hostvars[h]['ansible_host'] }}`, "10.0.0.2"},
		{`{{ hostvars[h].ansible_host }}`, "10.0.0.2"},
		{`{{ 'a' in names }}`, true},
		{`{{ 'c' not in names }}`, true},
		{`{{ h in groups['etcd'] }}`, true},
		{`{{ flag | bool }}`, true},
		{`{{ not (flag | bool) or missing is defined }}`, false},
		{`{{ etcd_version | upper }}`, "V3.6.16"},
		{`{{ [1, 2] | length }}`, 2},
		{`{{ none is none }}`, true},
		{`https://{{ hostvars[h]['ansible_host'] }}:{{ port }}`, "https://10.0.0.2:2379"},
		// Go template spellings keep working.
		{`{{ .etcd_version | default "x" }}`, "v3.6.16"},
		{`{{ eq .port 2379 }}`, true},
	} {
		got, err := Value("t", tt.text, data)
		if err != nil {
			t.Errorf("%s: %v", tt.text, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.text, got, tt.want)
		}
	}
}

// What does not translate says what etcdplay supports instead; an
// undefined variable is still an error naming it.
func TestAnsibleExpressionErrors(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{`{{ x | to_json }}`, `unknown function "to_json"`},
		{`{{ x | to_json(indent=2) }}`, `read as Ansible's expression: "=" is not supported`},
		{`{{ x is mapping }}`, `test "mapping" is not supported`},
		{`{% if x %}y{% endif %}`, "Jinja statements"},
		{`{{ x == 'a }}`, "unterminated string"},
	} {
		_, err := Value("t", tt.text, map[string]any{"x": 1})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.text, err, tt.want)
		}
	}
	_, err := Value("t", `{{ nope == 'a' }}`, map[string]any{})
	var e *Error
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("undefined in a comparison: %v (%T %v)", err, err, e)
	}
}
