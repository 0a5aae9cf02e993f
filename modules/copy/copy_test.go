package copy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/diff"
	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/moduletest"
)

const key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n"

func TestPlanApply(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("owner changes need root")
	}
	tests := []struct {
		name      string
		args      modules.Args // dest relative to the test root
		actions   []string
		diff      string // rendered diffs, root written as R
		wantMode  os.FileMode
		wantOwner int
		wantData  string
	}{
		{"new file", modules.Args{"dest": "new.conf", "content": "a\n"},
			[]string{"+ R/new.conf: file, 2 bytes, mode 0644"},
			"--- R/new.conf\n+++ R/new.conf\n@@ -0,0 +1 @@\n+a\n", 0o644, 0, "a\n"},
		{"new secret file is 0600", modules.Args{"dest": "key.pem", "content": key},
			[]string{"+ R/key.pem: file, 76 bytes, mode 0600"},
			"--- R/key.pem (empty)\n+++ R/key.pem (" + short(key) + ")\n", 0o600, 0, key},
		{"new file mode and owner", modules.Args{"dest": "new.conf", "content": "a\n", "mode": 0o640, "owner": "1234"},
			[]string{"+ R/new.conf: file, 2 bytes, mode 0640"}, "", 0o640, 1234, "a\n"},
		{"content change keeps mode and owner", modules.Args{"dest": "etcd.conf", "content": "x=1\ny=3\n"},
			[]string{"~ R/etcd.conf: content"},
			"--- R/etcd.conf\n+++ R/etcd.conf\n@@ -1,2 +1,2 @@\n x=1\n-y=2\n+y=3\n", 0o640, 1234, "x=1\ny=3\n"},
		{"content and mode", modules.Args{"dest": "etcd.conf", "content": "x=1\n", "mode": "0600"},
			[]string{"~ R/etcd.conf: content, mode 0640->0600"}, "", 0o600, 1234, "x=1\n"},
		{"mode only", modules.Args{"dest": "etcd.conf", "content": "x=1\ny=2\n", "mode": "u=rw,go="},
			[]string{"~ R/etcd.conf: mode 0640->0600"}, "", 0o600, 1234, "x=1\ny=2\n"},
		{"same content no change", modules.Args{"dest": "etcd.conf", "content": "x=1\ny=2\n", "owner": "1234"}, nil, "", 0o640, 1234, "x=1\ny=2\n"},
		{"force no keeps content", modules.Args{"dest": "etcd.conf", "content": "other\n", "force": false, "group": "99"},
			[]string{"~ R/etcd.conf: group 1234->99"}, "", 0o640, 1234, "x=1\ny=2\n"},
		{"through symlink", modules.Args{"dest": "link.conf", "content": "x=1\n"},
			[]string{"~ R/etcd.conf: content"}, "", 0o640, 1234, "x=1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			existing := filepath.Join(root, "etcd.conf")
			must(t, os.WriteFile(existing, []byte("x=1\ny=2\n"), 0o600))
			must(t, os.Chown(existing, 1234, 1234))
			must(t, os.Chmod(existing, 0o640))
			must(t, os.Symlink("etcd.conf", filepath.Join(root, "link.conf")))
			args := modules.Args{}
			for k, v := range tt.args {
				args[k] = v
			}
			args["dest"] = filepath.Join(root, tt.args["dest"].(string))
			m := Module{}
			c, got := moduletest.CheckPlan(t, m, root, args)
			if want := strings.Join(tt.actions, "\n"); got != want {
				t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
			}
			if tt.diff != "" {
				var rendered string
				for _, d := range c.Diffs {
					rendered += strings.ReplaceAll(diff.Render(d), root, "R")
				}
				if rendered != tt.diff {
					t.Errorf("diff:\n%s\nwant:\n%s", rendered, tt.diff)
				}
			}
			if !c.Empty() {
				moduletest.ApplyChanged(t, m, c)
			}
			dest, _ := filepath.EvalSymlinks(args["dest"].(string))
			st, err := hostfile.State(dest)
			must(t, err)
			if st.Perm() != tt.wantMode || st.UID != tt.wantOwner || string(st.Content) != tt.wantData {
				t.Errorf("after apply: mode %v uid %d content %q; want %v %d %q", st.Perm(), st.UID, st.Content, tt.wantMode, tt.wantOwner, tt.wantData)
			}
			moduletest.PlansNothing(t, m, root, args)
		})
	}
}

func TestBackup(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "f")
	must(t, os.WriteFile(dest, []byte("old\n"), 0o640))
	args := modules.Args{"dest": dest, "content": "new\n", "backup": true}
	c, err := Module{}.Plan(context.Background(), &modules.Env{}, args)
	must(t, err)
	res, err := Module{}.Apply(context.Background(), &modules.Env{}, c)
	must(t, err)
	b, _ := res.Data["backup_file"].(string)
	got, err := os.ReadFile(b)
	if err != nil || string(got) != "old\n" || !strings.HasPrefix(b, dest+".") || !strings.HasSuffix(b, "~") {
		t.Errorf("backup %q = %q, %v", b, got, err)
	}
	if fi, _ := os.Stat(b); fi == nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("backup mode %v", fi)
	}
}

func TestMissingParent(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "no", "such", "f")
	args := modules.Args{"dest": dest, "content": "x"}
	if _, err := (Module{}).Plan(context.Background(), &modules.Env{}, args); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("apply-mode plan: %v", err)
	}
	// Under --check an earlier task would have made the directory.
	c, err := Module{}.Plan(context.Background(), &modules.Env{Check: true}, args)
	if err != nil || c.Empty() {
		t.Errorf("check-mode plan: %v %v", c, err)
	}
}

func TestResolve(t *testing.T) {
	base := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(base, "files"), 0o755))
	must(t, os.WriteFile(filepath.Join(base, "files", "a.conf"), []byte("from files\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "a.conf"), []byte("from base\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "b.conf"), []byte("only base\n"), 0o644))
	bin := []byte{0x7f, 'E', 'L', 'F', 0, 0xff, 0xfe}
	must(t, os.WriteFile(filepath.Join(base, "files", "etcd"), bin, 0o755))
	rc := &modules.ResolveContext{BaseDir: base}

	tests := []struct {
		args    modules.Args
		content string
		dest    string
		err     string
	}{
		{modules.Args{"src": "a.conf", "dest": "/etc/a.conf"}, "from files\n", "/etc/a.conf", ""},
		{modules.Args{"src": "b.conf", "dest": "/etc/"}, "only base\n", "/etc/b.conf", ""},
		{modules.Args{"src": filepath.Join(base, "b.conf"), "dest": "/etc/b"}, "only base\n", "/etc/b", ""},
		{modules.Args{"src": "etcd", "dest": "/usr/local/bin/etcd"}, string(bin), "/usr/local/bin/etcd", ""},
		{modules.Args{"src": "missing.conf", "dest": "/etc/x"}, "", "", "not found"},
		{modules.Args{"src": "files", "dest": "/etc/x"}, "", "", "not found"},
		{modules.Args{"src": "a.conf", "content": "x", "dest": "/etc/x"}, "", "", "together"},
	}
	for _, tt := range tests {
		out, err := Module{}.Resolve(tt.args, rc)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Resolve(%v) err = %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		must(t, err)
		if _, has := out["src"]; has {
			t.Errorf("src left in %v", out)
		}
		must(t, Module{}.Validate(out))
		w, err := parse(out)
		must(t, err)
		if string(w.Content) != tt.content || w.Dest != tt.dest {
			t.Errorf("Resolve(%v): content %q dest %q", tt.args, w.Content, w.Dest)
		}
	}
}

func TestBinaryDiffIsHashed(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "bin")
	must(t, os.WriteFile(dest, []byte{0, 1, 2}, 0o755))
	out, err := Module{}.Resolve(modules.Args{"src": dest, "dest": dest + "2"}, &modules.ResolveContext{})
	must(t, err)
	out["dest"] = dest
	out[ArgContentBase64] = "AAECAw=="
	c, err := Module{}.Plan(context.Background(), &modules.Env{}, out)
	must(t, err)
	if len(c.Diffs) != 1 || !c.Diffs[0].Secret || strings.ContainsRune(c.Diffs[0].After, 0) {
		t.Errorf("binary diff not hashed: %+v", c.Diffs)
	}
}

func TestValidate(t *testing.T) {
	tests := []moduletest.ArgCase{
		{Args: modules.Args{"dest": "/x", "content": ""}, WantArg: ""},
		{Args: modules.Args{"dest": "/x", "content": "a", "mode": "0600", "owner": "root", "backup": true}, WantArg: ""},
		{Args: modules.Args{"content": "a"}, WantArg: "dest"},
		{Args: modules.Args{"dest": "x", "content": "a"}, WantArg: "dest"},
		{Args: modules.Args{"dest": "/x/", "content": "a"}, WantArg: "dest"},
		{Args: modules.Args{"dest": "/x"}, WantArg: "content"},
		{Args: modules.Args{"dest": "/x", "src": "a"}, WantArg: "src"},
		{Args: modules.Args{"dest": "/x", "content": "a", "mode": "rw"}, WantArg: "mode"},
		{Args: modules.Args{"dest": "/x", "contents": "a"}, WantArg: "contents"},
	}
	moduletest.CheckValidate(t, Module{}, tests)
}

func short(s string) string { return diff.Hash(s)[:len("sha256:")+16] + "..." }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLargeFileDiffIsHashed(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "big")
	must(t, os.WriteFile(dest, []byte("small\n"), 0o644))
	big := strings.Repeat("line\n", hostfile.MaxContent/5+1)
	c, err := Module{}.Plan(context.Background(), &modules.Env{}, modules.Args{"dest": dest, "content": big})
	must(t, err)
	if len(c.Diffs) != 1 || !c.Diffs[0].Secret || c.Diffs[0].After != diff.Hash(big) || c.Diffs[0].Before != diff.Hash("small\n") {
		t.Errorf("large diff not hashed: before %q after %.80q", c.Diffs[0].Before, c.Diffs[0].After)
	}
}
