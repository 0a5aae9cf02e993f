package tmpl

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func data() map[string]any {
	return map[string]any{
		"inventory_hostname": "etcd1",
		"port":               2379,
		"ratio":              0.5,
		"enabled":            true,
		"name":               "Etcd One",
		"peers":              []any{"etcd1", "etcd2"},
		"labels":             map[string]any{"tier": "db"},
		"empty":              "",
		"nothing":            nil,
		"groups":             map[string]any{"etcd": []any{"etcd1", "etcd2"}},
		"hostvars": map[string]any{
			"etcd1": map[string]any{"ansible_host": "127.0.1.1"},
			"etcd2": map[string]any{"ansible_host": "127.0.1.2"},
		},
		"multi": "a\nb",
	}
}

func TestValue(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"plain text", "plain text"},
		{"{{ .port }}", 2379},
		{"{{.port}}", 2379},
		{"{{- .port -}}", 2379},
		{"{{ port }}", 2379},
		{"{{ .ratio }}", 0.5},
		{"{{ .enabled }}", true},
		{"{{ .peers }}", []any{"etcd1", "etcd2"}},
		{"{{ peers }}", []any{"etcd1", "etcd2"}},
		{"{{ .labels }}", map[string]any{"tier": "db"}},
		{"{{ .nothing }}", nil},
		{"port {{ .port }}", "port 2379"},
		{" {{ .port }}", " 2379"},
		{"{{ .port }}{{ .port }}", "23792379"},
		{"{{ .groups.etcd }}", []any{"etcd1", "etcd2"}},
		{"{{ groups.etcd | join \",\" }}", "etcd1,etcd2"},
		{"{{ hostvars.etcd2.ansible_host }}", "127.0.1.2"},
		{`{{ hostvar "etcd2" "ansible_host" }}`, "127.0.1.2"},
		{"{{ index .groups.etcd 1 }}", "etcd2"},
		{"{{ len .peers }}", 2},
		{`{{ .missing | default "d" }}`, "d"},
		{`{{ missing | default 7 }}`, 7},
		{`{{ missing.deep | default 7 }}`, 7},
		{`{{ default "d" .missing }}`, "d"},
		{`{{ .empty | default "d" }}`, "d"},
		{`{{ .nothing | default "d" }}`, "d"},
		{`{{ .port | default 1 }}`, 2379},
		{`{{ "2380" | int }}`, 2380},
		{`{{ .port | string }}`, "2379"},
		{`{{ .name | lower }}`, "etcd one"},
		{`{{ .name | upper }}`, "ETCD ONE"},
		{`{{ "  x " | trim }}`, "x"},
		{`{{ "a,b" | split "," }}`, []any{"a", "b"}},
		{`{{ .name | replace " " "-" }}`, "Etcd-One"},
		{`{{ .name | quote }}`, "'Etcd One'"},
		{`{{ "it's" | quote }}`, `'it'"'"'s'`},
		{`{{ "/var/lib/etcd" | quote }}`, "/var/lib/etcd"},
		{`{{ "hi" | b64enc }}`, "aGk="},
		{`{{ "aGk=" | b64dec }}`, "hi"},
		{`{{ "abc" | sha256 }}`, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{`{{ .labels | toJson }}`, `{"tier":"db"}`},
		{`{{ .peers | toYaml }}`, "- etcd1\n- etcd2"},
		{`{{ .multi | indent 2 }}`, "  a\n  b"},
		{`{{ range .peers }}{{ . }};{{ end }}`, "etcd1;etcd2;"},
		{`{{ if eq inventory_hostname "etcd1" }}first{{ else }}other{{ end }}`, "first"},
		{`{{ if .enabled }}on{{ end }}`, "on"},
		{`{{ $p := .port }}{{ $p }}`, "2379"},
		{`{{ collect "etcd" "ansible_host" }}`, []any{"127.0.1.1", "127.0.1.2"}},
		{`{{ list 1 "a" }}`, []any{1, "a"}},
	}
	for _, tt := range tests {
		got, err := Value("v", tt.in, data())
		if err != nil {
			t.Errorf("Value(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Value(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestString(t *testing.T) {
	got, err := String("s", "{{ .port }}", data())
	if err != nil || got != "2379" {
		t.Errorf("String = %q, %v", got, err)
	}
	got, err = String("s", "{{ .peers }}", data())
	if err != nil || got != "[etcd1 etcd2]" {
		t.Errorf("String list = %q, %v", got, err)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		in, msg, undefined string
		syntax             bool
	}{
		{"{{ .nope }}", `undefined variable "nope"`, "nope", false},
		{"x {{ nope }} y", `undefined variable "nope"`, "nope", false},
		{"{{ .labels.nope }}", `undefined variable "labels.nope"`, "labels.nope", false},
		{"{{ hostvars.etcd9.ansible_host }}", `undefined variable "hostvars.etcd9"`, "hostvars.etcd9", false},
		{"{{ .nope | upper }}", `undefined variable "nope"`, "nope", false},
		{"{{ if .nope }}x{{ end }}", `undefined variable "nope"`, "nope", false},
		{"{{ .port ", "template syntax: unclosed action", "", true},
		{"{{ if .x }}", "template syntax: unexpected EOF", "", true},
		{"a\n{{ end }}", "template syntax (line 2): unexpected {{end}}", "", true},
		{"{{ joinn \",\" .peers }}", `unknown function "joinn" (did you mean "join"?)`, "", true},
		{"{{ .peers | jion \",\" }}", `unknown function "jion" (did you mean "join"?)`, "", true},
		{`{{ "x" | int }}`, `error calling int: int: "x" is not an integer`, "", false},
		{`{{ collect "etcd" "nope" }}`, `undefined variable "hostvars.etcd1.nope"`, "hostvars.etcd1.nope", false},
		{`{{ collect "nogroup" "x" }}`, `undefined variable "groups.nogroup"`, "groups.nogroup", false},
		{`{{ hostvar "etcd2" "nope" }}`, `undefined variable "hostvars.etcd2.nope"`, "hostvars.etcd2.nope", false},
	}
	for _, tt := range tests {
		_, err := Value("f", tt.in, data())
		var te *Error
		if !errors.As(err, &te) {
			t.Errorf("Value(%q): err %v is not *Error", tt.in, err)
			continue
		}
		if te.Msg != tt.msg || te.Undefined != tt.undefined || te.Syntax != tt.syntax || te.Name != "f" {
			t.Errorf("Value(%q): got %+v\nwant msg %q undefined %q syntax %v", tt.in, te, tt.msg, tt.undefined, tt.syntax)
		}
		if errors.Is(err, ErrUndefined) != (tt.undefined != "") {
			t.Errorf("Value(%q): errors.Is(ErrUndefined) wrong", tt.in)
		}
	}
}

func TestCheck(t *testing.T) {
	if err := Check("c", "{{ .anything.at.all }} {{ whatever }}"); err != nil {
		t.Errorf("Check should not need data: %v", err)
	}
	if err := Check("c", "{{ .x "); err == nil {
		t.Error("Check missed a syntax error")
	}
}

func TestRender(t *testing.T) {
	in := map[string]any{
		"dest":  "/etc/{{ .inventory_hostname }}.conf",
		"port":  "{{ .port }}",
		"list":  []any{"{{ .peers }}", 3, "x{{ .port }}"},
		"inner": map[string]any{"on": "{{ .enabled }}"},
		"raw":   5,
	}
	got, err := Render("args", in, data())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"dest":  "/etc/etcd1.conf",
		"port":  2379,
		"list":  []any{[]any{"etcd1", "etcd2"}, 3, "x2379"},
		"inner": map[string]any{"on": true},
		"raw":   5,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Render = %#v", got)
	}
	if in["port"] != "{{ .port }}" {
		t.Error("Render modified its input")
	}
	_, err = Render("args", map[string]any{"a": []any{"ok", map[string]any{"b": "{{ .nope }}"}}}, data())
	var te *Error
	if !errors.As(err, &te) || te.Name != "args.a[1].b" {
		t.Errorf("Render error = %v (%+v), want named args.a[1].b", err, te)
	}
}

// TestConcurrentRender renders the same cached texts from many goroutines
// with different data (run with -race).
func TestConcurrentRender(t *testing.T) {
	texts := []string{"{{ .n }}", "{{ .n | int }}", "n={{ n }}", `{{ hostvar "h" "x" }}`}
	done := make(chan error)
	for i := range 8 {
		go func() {
			d := map[string]any{"n": i, "hostvars": map[string]any{"h": map[string]any{"x": i}}}
			for range 200 {
				for _, tx := range texts {
					v, err := Value("c", tx, d)
					if err != nil {
						done <- err
						return
					}
					if s := fmt.Sprint(v); s != fmt.Sprint(i) && s != fmt.Sprintf("n=%d", i) {
						done <- fmt.Errorf("%s rendered %v for %d", tx, v, i)
						return
					}
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
