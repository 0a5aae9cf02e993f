package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/moduletest"
)

// setup builds a small tree: f (0644 file), d/ (0755 dir with d/x), l -> f.
func setup(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "f"), []byte("data\n"), 0o644))
	must(t, os.Mkdir(filepath.Join(root, "d"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "d", "x"), nil, 0o644))
	must(t, os.Symlink("f", filepath.Join(root, "l")))
	return root
}

func TestPlanApplyIdempotent(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("owner changes need root")
	}
	tests := []struct {
		name    string
		args    modules.Args // paths relative to the test root
		actions []string     // expected plan, root written as R
		check   func(t *testing.T, root string)
	}{
		{"new nested directory", modules.Args{"path": "a/b", "state": "directory", "mode": "0750", "owner": "1234"},
			[]string{"+ R/a: directory", "+ R/a/b: directory"},
			func(t *testing.T, root string) {
				for _, p := range []string{"a", "a/b"} {
					wantState(t, filepath.Join(root, p), os.ModeDir|0o750, 1234)
				}
			}},
		{"directory mode from YAML int", modules.Args{"path": "d", "state": "directory", "mode": 0o700},
			[]string{"~ R/d: mode 0755->0700"}, nil},
		{"existing directory no change", modules.Args{"path": "d", "state": "directory"}, nil, nil},
		{"recurse owner and mode", modules.Args{"path": "d", "state": "directory", "recurse": true, "owner": "1234", "mode": "u=rwX,g=rX,o="},
			[]string{"~ R/d: mode 0755->0750, owner root->1234", "~ R/d/x: mode 0644->0640, owner root->1234"}, nil},
		{"file mode", modules.Args{"path": "f", "mode": "0600"}, []string{"~ R/f: mode 0644->0600"}, nil},
		{"file group", modules.Args{"path": "f", "state": "file", "group": "2345"}, []string{"~ R/f: group root->2345"}, nil},
		{"file through symlink", modules.Args{"path": "l", "state": "file", "mode": "0640"}, []string{"~ R/f: mode 0644->0640"},
			func(t *testing.T, root string) { wantState(t, filepath.Join(root, "f"), 0o640, 0) }},
		{"touch new", modules.Args{"path": "t", "state": "touch", "mode": "0600"}, []string{"+ R/t: file"},
			func(t *testing.T, root string) { wantState(t, filepath.Join(root, "t"), 0o600, 0) }},
		{"touch existing keeps content", modules.Args{"path": "f", "state": "touch"}, nil, nil},
		{"absent file", modules.Args{"path": "f", "state": "absent"}, []string{"- R/f"},
			func(t *testing.T, root string) { wantGone(t, filepath.Join(root, "f")) }},
		{"absent dir", modules.Args{"path": "d", "state": "absent"}, []string{"- R/d"},
			func(t *testing.T, root string) { wantGone(t, filepath.Join(root, "d")) }},
		{"absent missing", modules.Args{"path": "nothing", "state": "absent"}, nil, nil},
		{"new link", modules.Args{"path": "l2", "state": "link", "src": "f"}, []string{"+ R/l2: link -> f"},
			func(t *testing.T, root string) { wantLink(t, filepath.Join(root, "l2"), "f") }},
		{"retarget link", modules.Args{"path": "l", "state": "link", "src": "d"}, []string{"~ R/l: link f -> d"},
			func(t *testing.T, root string) { wantLink(t, filepath.Join(root, "l"), "d") }},
		{"same link", modules.Args{"path": "l", "src": "f"}, nil, nil},
		{"force file to link", modules.Args{"path": "f", "state": "link", "src": "d", "force": true}, []string{"~ R/f: replace file with link -> d"},
			func(t *testing.T, root string) { wantLink(t, filepath.Join(root, "f"), "d") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := setup(t)
			args := absArgs(root, tt.args)
			m := Module{}
			c, got := moduletest.CheckPlan(t, m, root, args)
			if want := strings.Join(tt.actions, "\n"); got != want {
				t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
			}
			if c.Empty() {
				return
			}
			moduletest.ApplyChanged(t, m, c)
			if tt.check != nil {
				tt.check(t, root)
			}
			moduletest.PlansNothing(t, m, root, args)
		})
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		name string
		args modules.Args
		want string
	}{
		{"file absent", modules.Args{"path": "missing", "state": "file"}, "is absent"},
		{"file is dir", modules.Args{"path": "d", "state": "file"}, "is a directory"},
		{"directory over file", modules.Args{"path": "f", "state": "directory"}, "not a directory"},
		{"link over file", modules.Args{"path": "f", "state": "link", "src": "d"}, "force: yes"},
		{"link over dir", modules.Args{"path": "d", "state": "link", "src": "f", "force": true}, "is a directory"},
		{"directory under file", modules.Args{"path": "f/sub", "state": "directory"}, "not a directory"},
		{"unknown owner", modules.Args{"path": "f", "owner": "no-such-user-etcdplay"}, "no-such-user-etcdplay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := setup(t)
			_, err := Module{}.Plan(context.Background(), &modules.Env{}, absArgs(root, tt.args))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []moduletest.ArgCase{
		{Args: modules.Args{"path": "/x", "state": "directory", "mode": "0755"}, WantArg: ""},
		{Args: modules.Args{"dest": "/x", "state": "absent"}, WantArg: ""},
		{Args: modules.Args{"path": "/x", "state": "link", "src": "/y"}, WantArg: ""},
		{Args: modules.Args{"state": "directory"}, WantArg: "path"},
		{Args: modules.Args{"path": "rel"}, WantArg: "path"},
		{Args: modules.Args{"path": "/x", "dest": "/y"}, WantArg: "path"},
		{Args: modules.Args{"path": "/x", "state": "dir"}, WantArg: "state"},
		{Args: modules.Args{"path": "/x", "mode": "0899"}, WantArg: "mode"},
		{Args: modules.Args{"path": "/x", "state": "link"}, WantArg: "src"},
		{Args: modules.Args{"path": "/x", "state": "file", "src": "/y"}, WantArg: "src"},
		{Args: modules.Args{"path": "/x", "state": "file", "recurse": true}, WantArg: "recurse"},
		{Args: modules.Args{"path": "/", "state": "absent"}, WantArg: "path"},
		{Args: modules.Args{"path": "/x", "ownr": "root"}, WantArg: "ownr"},
	}
	moduletest.CheckValidate(t, Module{}, tests)
}

func absArgs(root string, a modules.Args) modules.Args {
	out := modules.Args{}
	for k, v := range a {
		if k == "path" {
			v = filepath.Join(root, v.(string))
		}
		out[k] = v
	}
	return out
}

func wantState(t *testing.T, p string, mode os.FileMode, uid int) {
	t.Helper()
	st, err := hostfile.State(p)
	must(t, err)
	if st.Mode != mode || st.UID != uid {
		t.Errorf("%s: mode %v uid %d, want %v uid %d", p, st.Mode, st.UID, mode, uid)
	}
}

func wantGone(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("%s still exists (%v)", p, err)
	}
}

func wantLink(t *testing.T, p, target string) {
	t.Helper()
	got, err := os.Readlink(p)
	if err != nil || got != target {
		t.Errorf("%s -> %q (%v), want %q", p, got, err, target)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
