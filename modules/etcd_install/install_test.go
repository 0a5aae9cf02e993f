package etcd_install

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/klauspost/compress/zstd"
)

func tarball(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func runModule(t *testing.T, name string, args modules.Args, check bool) (*modules.Change, error) {
	t.Helper()
	m, ok := modules.LookupHostSide(name)
	if !ok {
		t.Fatalf("no host-side module %s", name)
	}
	res, err := modules.Run(context.Background(), name, m, &modules.Env{Host: "h", Check: check}, args, nil)
	return res.Change, err
}

func TestInstallRefusesTamperedTarball(t *testing.T) {
	root := t.TempDir()
	bins := map[string]string{"etcd": "real etcd", "etcdctl": "real etcdctl", "etcdutl": "real etcdutl"}
	tb := filepath.Join(root, "etcd.tar.gz")
	// The uploaded tarball carries another etcd than the controller verified.
	os.WriteFile(tb, tarball(t, map[string]string{"etcd-v3.6.16-linux-amd64/etcd": "evil", "etcd-v3.6.16-linux-amd64/etcdctl": "real etcdctl", "etcd-v3.6.16-linux-amd64/etcdutl": "real etcdutl"}), 0o600)
	args := InstallArgs{Version: "v3.6.16", Tarball: tb, InstallRoot: filepath.Join(root, "opt"), BinDir: filepath.Join(root, "bin"),
		SHA256: map[string]string{"etcd": sum(bins["etcd"]), "etcdctl": sum(bins["etcdctl"]), "etcdutl": sum(bins["etcdutl"])}}.Args()
	_, err := runModule(t, "etcd_install", args, false)
	if err == nil || !strings.Contains(err.Error(), "refusing to install") {
		t.Fatalf("got %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "opt")); len(entries) != 0 {
		t.Errorf("left behind: %v", entries)
	}
	if _, err := os.Lstat(filepath.Join(root, "bin", "etcd")); !os.IsNotExist(err) {
		t.Error("linked a refused release")
	}

	// The right tarball installs; an upgrade switches the links and keeps
	// the old release's directory.
	os.WriteFile(tb, tarball(t, map[string]string{"etcd-v3.6.16-linux-amd64/etcd": bins["etcd"], "etcd-v3.6.16-linux-amd64/etcdctl": bins["etcdctl"], "etcd-v3.6.16-linux-amd64/etcdutl": bins["etcdutl"]}), 0o600)
	if _, err := runModule(t, "etcd_install", args, false); err != nil {
		t.Fatal(err)
	}
	if c, err := runModule(t, "etcd_install", args, true); err != nil || !c.Empty() {
		t.Fatalf("not idempotent: %v %v", c, err)
	}
	up := map[string]string{"etcd": "etcd 3.7", "etcdctl": "etcdctl 3.7", "etcdutl": "etcdutl 3.7"}
	os.WriteFile(tb, tarball(t, map[string]string{"etcd-v3.7.3-linux-amd64/etcd": up["etcd"], "etcd-v3.7.3-linux-amd64/etcdctl": up["etcdctl"], "etcd-v3.7.3-linux-amd64/etcdutl": up["etcdutl"]}), 0o600)
	args2 := InstallArgs{Version: "v3.7.3", Tarball: tb, InstallRoot: filepath.Join(root, "opt"), BinDir: filepath.Join(root, "bin"),
		SHA256: map[string]string{"etcd": sum(up["etcd"]), "etcdctl": sum(up["etcdctl"]), "etcdutl": sum(up["etcdutl"])}}.Args()
	c, err := runModule(t, "etcd_install", args2, false)
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.ReplaceAll(strings.Join(actions(c), "\n"), root, "R"); !strings.Contains(s, "~ R/bin/etcd: link R/opt/v3.6.16/etcd -> R/opt/v3.7.3/etcd") {
		t.Errorf("upgrade plan:\n%s", s)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "bin", "etcd")); string(b) != "etcd 3.7" {
		t.Errorf("bin/etcd is %q", b)
	}
	if _, err := os.Stat(filepath.Join(root, "opt", "v3.6.16", "etcd")); err != nil {
		t.Error("the previous release was removed (a rollback needs it)")
	}
}

func TestFileSet(t *testing.T) {
	root := t.TempDir()
	s := Set{
		Dirs: []Dir{{Path: filepath.Join(root, "etc/etcd/pki"), Mode: "0700"}},
		Files: []File{
			{Path: filepath.Join(root, "etc/etcd/pki/ca.crt"), Content: "CERT\n", Mode: "0644"},
			{Path: filepath.Join(root, "etc/etcd/pki/server.key"), Content: "KEY\n", Mode: "0600", Secret: true},
		},
	}
	c, err := runModule(t, "etcd_files", s.Args(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Diffs) != 2 || c.Diffs[1].After != "sha256:"+sum("KEY\n") || !c.Diffs[1].Secret || c.Diffs[0].After != "CERT\n" {
		t.Errorf("diffs: %+v", c.Diffs)
	}
	for p, want := range map[string]os.FileMode{"etc/etcd/pki": 0o700, "etc/etcd/pki/ca.crt": 0o644, "etc/etcd/pki/server.key": 0o600} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v", p, fi, err)
		}
	}
	if c, err := runModule(t, "etcd_files", s.Args(), true); err != nil || !c.Empty() {
		t.Fatalf("second plan: %v %v", c, err)
	}
	os.Chmod(filepath.Join(root, "etc/etcd/pki/server.key"), 0o644)
	c, err = runModule(t, "etcd_files", s.Args(), false)
	if err != nil || len(c.Actions) != 1 || !strings.Contains(c.Actions[0].String(), "mode 0644->0600") || len(c.Diffs) != 0 {
		t.Errorf("mode repair: %v %v %v", actions(c), c.Diffs, err)
	}

	// A user that an earlier task would create is fine in a plan, not in
	// an apply.
	s.Files[0].Owner = "etcdplay-no-such-user"
	c, err = runModule(t, "etcd_files", s.Args(), true)
	if err != nil || !strings.Contains(strings.Join(actions(c), "\n"), "owner etcdplay-no-such-user (not created yet)") {
		t.Errorf("plan with a missing user: %v %v", actions(c), err)
	}
	if _, err := runModule(t, "etcd_files", s.Args(), false); err == nil {
		t.Error("apply with a missing user succeeded")
	}
}

func actions(c *modules.Change) []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, a := range c.Actions {
		out = append(out, a.String())
	}
	return out
}

// TestEachBinary: the binaries of a release archive are the regular files
// of its top-level directory named in etcd.Binaries, in upstream's tar.gz
// or the controller's zstd repack alike; an archive without one of them
// is refused, naming what it lacks.
func TestEachBinary(t *testing.T) {
	const dir = "etcd-v3.6.16-linux-amd64/"
	whole := map[string]string{dir + "etcd": "e", dir + "etcdctl": "c", dir + "etcdutl": "u",
		dir + "README.md": "docs", dir + "Documentation/etcd": "not a binary", "etcd": "not in the directory"}
	zst := func(gz []byte) []byte {
		r, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w, _ := zstd.NewWriter(&buf)
		if _, err := io.Copy(w, r); err != nil {
			t.Fatal(err)
		}
		w.Close()
		return buf.Bytes()
	}
	without := func(name string) map[string]string {
		m := maps.Clone(whole)
		delete(m, name)
		return m
	}
	for _, tt := range []struct {
		name    string
		archive []byte
		want    string // the binaries seen, or the error
	}{
		{"upstream gzip", tarball(t, whole), "etcd=e etcdctl=c etcdutl=u"},
		{"zstd repack", zst(tarball(t, whole)), "etcd=e etcdctl=c etcdutl=u"},
		{"no etcdutl", tarball(t, without(dir+"etcdutl")), "has no etcdutl in its top-level directory"},
		{"not an archive", []byte("<html>404</html>"), "gzip: invalid header"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "release")
			if err := os.WriteFile(p, tt.archive, 0o600); err != nil {
				t.Fatal(err)
			}
			var seen []string
			err := EachBinary(p, func(h *tar.Header, r io.Reader) error {
				b, err := io.ReadAll(r)
				seen = append(seen, filepath.Base(h.Name)+"="+string(b))
				return err
			})
			// The archive's order is the tar writer's (a map's, here):
			// which binaries came, not their order, is the contract.
			sort.Strings(seen)
			got := strings.Join(seen, " ")
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
