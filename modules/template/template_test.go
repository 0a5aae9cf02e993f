package template

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	gotemplate "text/template"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/internal/hostfile/hostfiletest"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/moduletest"
)

func render(vars map[string]any) func(name, text string) (string, error) {
	return func(name, text string) (string, error) {
		t, err := gotemplate.New(name).Option("missingkey=error").Parse(text)
		if err != nil {
			return "", err
		}
		var sb strings.Builder
		err = t.Execute(&sb, vars)
		return sb.String(), err
	}
}

func TestResolveLookupOrder(t *testing.T) {
	base := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(base, "templates"), 0o755))
	must(t, os.WriteFile(filepath.Join(base, "templates", "a.tmpl"), []byte("templates/ {{.name}}\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "a.tmpl"), []byte("base {{.name}}\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "b.tmpl"), []byte("base b {{.name}}\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "bad.tmpl"), []byte("{{.nope}}\n"), 0o644))
	old := Builtin
	Builtin = fstest.MapFS{
		"a.tmpl": {Data: []byte("builtin a\n")},
		"c.tmpl": {Data: []byte("builtin c {{.name}}\n")},
	}
	defer func() { Builtin = old }()
	rc := &modules.ResolveContext{BaseDir: base, Host: "etcd1", Render: render(map[string]any{"name": "etcd1"})}

	tests := []struct {
		src, want, from, err string
	}{
		{"a.tmpl", "templates/ etcd1\n", filepath.Join(base, "templates", "a.tmpl"), ""},
		{"b.tmpl", "base b etcd1\n", filepath.Join(base, "b.tmpl"), ""},
		{"c.tmpl", "builtin c etcd1\n", "builtin:c.tmpl", ""},
		{"missing.tmpl", "", "", "no built-in template missing.tmpl"},
		{"bad.tmpl", "", "", "nope"},
	}
	for _, tt := range tests {
		out, err := Module{}.Resolve(modules.Args{"src": tt.src, "dest": "/etc/x"}, rc)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.src, err, tt.err)
			}
			continue
		}
		must(t, err)
		must(t, Module{}.Validate(out))
		if out[ArgContent] != tt.want || out["_src"] != tt.from {
			t.Errorf("%s: got %q from %v, want %q from %s", tt.src, out[ArgContent], out["_src"], tt.want, tt.from)
		}
	}
}

func TestBuiltinTemplatesEmbedded(t *testing.T) {
	ents, err := Builtin.(interface {
		ReadDir(string) ([]os.DirEntry, error)
	}).ReadDir(".")
	if err != nil || len(ents) == 0 {
		t.Fatalf("no built-in templates: %v", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".tmpl") {
			t.Errorf("unexpected embedded file %s", e.Name())
		}
	}
}

func TestPlanApplyIdempotent(t *testing.T) {
	base := t.TempDir()
	must(t, os.WriteFile(filepath.Join(base, "unit.tmpl"), []byte("[Service]\nUser={{.user}}\nLimitNOFILE={{.nofile}}\n"), 0o644))
	hostDir := t.TempDir()
	dest := filepath.Join(hostDir, "etcd.service")
	vars := map[string]any{"user": "etcd", "nofile": 40000}
	args := modules.Args{"src": "unit.tmpl", "dest": dest, "mode": "0644"}

	for i, wantChange := range []bool{true, false} {
		rc := &modules.ResolveContext{BaseDir: base, Render: render(vars)}
		out, err := Module{}.Resolve(args, rc)
		must(t, err)
		must(t, Module{}.Validate(out))
		snap := hostfiletest.Snapshot(t, hostDir)
		c, err := Module{}.Plan(context.Background(), &modules.Env{Check: true}, out)
		must(t, err)
		if hostfiletest.Snapshot(t, hostDir) != snap {
			t.Fatal("Plan changed the host")
		}
		if c.Empty() == wantChange {
			t.Fatalf("round %d: plan %v, want change %v", i, c.Actions, wantChange)
		}
		if !c.Empty() {
			if _, err := (Module{}).Apply(context.Background(), &modules.Env{}, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err := hostfile.State(dest)
	must(t, err)
	if string(st.Content) != "[Service]\nUser=etcd\nLimitNOFILE=40000\n" || st.Perm() != 0o644 {
		t.Errorf("written %q mode %v", st.Content, st.Perm())
	}

	// A variable change shows up as a diff of the rendered file.
	vars["nofile"] = 65536
	out, err := Module{}.Resolve(args, &modules.ResolveContext{BaseDir: base, Render: render(vars)})
	must(t, err)
	c, err := Module{}.Plan(context.Background(), &modules.Env{}, out)
	must(t, err)
	if len(c.Diffs) != 1 || !strings.Contains(c.Diffs[0].After, "LimitNOFILE=65536") || c.Actions[0].Detail != "content" {
		t.Errorf("plan after var change: %+v", c)
	}
}

func TestValidate(t *testing.T) {
	tests := []moduletest.ArgCase{
		{Args: modules.Args{"dest": "/x", ArgContent: "a"}, WantArg: ""},
		{Args: modules.Args{"dest": "/x"}, WantArg: "src"},
		{Args: modules.Args{"dest": "/x", "src": "a.tmpl"}, WantArg: "src"},
		{Args: modules.Args{ArgContent: "a"}, WantArg: "dest"},
		{Args: modules.Args{"dest": "/x", ArgContent: "a", "mdoe": "0644"}, WantArg: "mdoe"},
	}
	moduletest.CheckValidate(t, Module{}, tests)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
