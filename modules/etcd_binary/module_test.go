package etcd_binary

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/etcdplay/etcdplay/internal/localhost"
	"github.com/etcdplay/etcdplay/modules"
	_ "github.com/etcdplay/etcdplay/modules/etcd_install"
)

const version = "v3.6.16"

// fakeRelease builds a tarball laid out like upstream's, with small shell
// scripts standing in for the binaries.
func fakeRelease(t *testing.T, tag string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	top := "etcd-" + version + "-linux-amd64/"
	must(t, tw.WriteHeader(&tar.Header{Name: top, Typeflag: tar.TypeDir, Mode: 0o755}))
	for _, n := range []string{"etcd", "etcdctl", "etcdutl", "README.md"} {
		body := []byte(fmt.Sprintf("#!/bin/sh\necho %s %s %s\n", n, version, tag))
		must(t, tw.WriteHeader(&tar.Header{Name: top + n, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body))}))
		_, err := tw.Write(body)
		must(t, err)
	}
	must(t, tw.Close())
	must(t, gz.Close())
	return buf.Bytes()
}

type mirror struct {
	*httptest.Server
	tarball   []byte
	sums      string
	downloads atomic.Int32
}

func newMirror(t *testing.T, tarball []byte, listed []byte) *mirror {
	m := &mirror{tarball: tarball}
	sum := sha256.Sum256(listed)
	m.sums = hex.EncodeToString(sum[:]) + "  etcd-" + version + "-linux-amd64.tar.gz\n" +
		strings.Repeat("0", 64) + "  etcd-" + version + "-linux-arm64.tar.gz\n"
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/" + version + "/SHA256SUMS":
			fmt.Fprint(w, m.sums)
		case "/" + version + "/etcd-" + version + "-linux-amd64.tar.gz":
			m.downloads.Add(1)
			w.Write(m.tarball)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(m.Close)
	return m
}

type fixture struct {
	state, root string
	args        modules.Args
}

func newFixture(t *testing.T) fixture {
	// The controller's user cache (see fromShared), one per test.
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	root := t.TempDir()
	return fixture{state: t.TempDir(), root: root, args: modules.Args{
		"install_root": filepath.Join(root, "opt/etcd"),
		"bin_dir":      filepath.Join(root, "usr/local/bin"),
		"upload_dir":   filepath.Join(root, "var/tmp/etcdplay"),
	}}
}

func (f fixture) env(host, url string) *modules.Env {
	vars := map[string]any{
		"etcd_release_url": url,
		"groups":           map[string]any{"etcd": []any{"etcd1", "etcd2", "etcd3"}},
		"hostvars": map[string]any{
			"etcd1": map[string]any{"ansible_host": "127.0.1.1"},
			"etcd2": map[string]any{"ansible_host": "127.0.1.2"},
			"etcd3": map[string]any{"ansible_host": "127.0.1.3"},
		},
	}
	return &modules.Env{Host: host, Vars: vars, Remote: localhost.New(host), StateDir: f.state}
}

// run runs the module through the one driver, with env.Remote (a
// localhost.Host) as the writer Apply gets.
func run(t *testing.T, env *modules.Env, args modules.Args) (*modules.Change, error) {
	t.Helper()
	w := map[string]modules.HostWriter{env.Host: env.Remote.(*localhost.Host)}
	res, err := modules.Run(context.Background(), "etcd_binary", Module{}, env, args, w)
	return res.Change, err
}

func TestInstallThenNoop(t *testing.T) {
	tb := fakeRelease(t, "a")
	m := newMirror(t, tb, tb)
	f := newFixture(t)

	// Check mode: says what it would do, installs nothing.
	env := f.env("etcd1", m.URL)
	env.Check = true
	c, err := run(t, env, f.args)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, a := range c.Actions {
		lines = append(lines, a.String())
	}
	got := strings.ReplaceAll(strings.Join(lines, "\n"), f.root, "ROOT")
	for _, want := range []string{
		"+ ROOT/var/tmp/etcdplay/etcd-v3.6.16-linux-amd64.etcdplay.tar.zst: upload the binaries of etcd-v3.6.16-linux-amd64.tar.gz",
		"+ ROOT/opt/etcd/v3.6.16: install etcd v3.6.16 (etcd, etcdctl, etcdutl)",
		"+ ROOT/usr/local/bin/etcdctl: link -> ROOT/opt/etcd/v3.6.16/etcdctl",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("check plan lacks %q:\n%s", want, got)
		}
	}
	if _, err := os.Stat(filepath.Join(f.root, "opt")); !os.IsNotExist(err) {
		t.Fatalf("check mode touched the host: %v", err)
	}

	// Apply installs.
	env = f.env("etcd1", m.URL)
	if _, err := run(t, env, f.args); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"etcd", "etcdctl", "etcdutl"} {
		link := filepath.Join(f.root, "usr/local/bin", b)
		target, err := os.Readlink(link)
		if err != nil || target != filepath.Join(f.root, "opt/etcd", version, b) {
			t.Errorf("%s -> %q, %v", link, target, err)
		}
		fi, err := os.Stat(link)
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", b, fi, err)
		}
	}
	if _, err := os.Stat(filepath.Join(f.root, "opt/etcd", version, "README.md")); !os.IsNotExist(err) {
		t.Error("only the three binaries belong in the install dir")
	}
	if _, err := os.Stat(filepath.Join(f.root, "var/tmp/etcdplay/etcd-v3.6.16-linux-amd64.etcdplay.tar.zst")); !os.IsNotExist(err) {
		t.Error("uploaded tarball left behind")
	}

	// A second run changes nothing and uploads nothing.
	env = f.env("etcd1", m.URL)
	host := env.Remote.(*localhost.Host)
	c, err = run(t, env, f.args)
	if err != nil || !c.Empty() {
		t.Fatalf("second run: %v %v", c.Actions, err)
	}
	if up := host.Uploads(); len(up) != 0 {
		t.Errorf("no-op run uploaded %v", up)
	}
	if n := m.downloads.Load(); n != 1 {
		t.Errorf("downloaded %d times, want once", n)
	}

	// A binary changed on the host is reinstalled; a link is re-pointed.
	must(t, os.WriteFile(filepath.Join(f.root, "opt/etcd", version, "etcd"), []byte("tampered"), 0o755))
	must(t, os.Remove(filepath.Join(f.root, "usr/local/bin/etcdutl")))
	env = f.env("etcd1", m.URL)
	c, err = run(t, env, f.args)
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(c.Actions); !strings.Contains(s, "reinstall etcd v3.6.16 (etcd differ") || !strings.Contains(s, "etcdutl: link") {
		t.Errorf("repair plan: %s", s)
	}
	b, _ := os.ReadFile(filepath.Join(f.root, "opt/etcd", version, "etcd"))
	if !bytes.Contains(b, []byte("echo etcd")) {
		t.Errorf("etcd not restored: %q", b)
	}
}

func TestChecksumMismatchInstallsNothing(t *testing.T) {
	m := newMirror(t, fakeRelease(t, "served"), fakeRelease(t, "listed"))
	f := newFixture(t)
	_, err := run(t, f.env("etcd1", m.URL), f.args)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), m.URL+"/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz") {
		t.Fatalf("want a checksum error naming the URL, got %v", err)
	}
	assertNothingInstalled(t, f)
	if _, err := os.Stat(filepath.Join(f.state, "cache", version, "etcd-v3.6.16-linux-amd64.tar.gz")); !os.IsNotExist(err) {
		t.Error("a tarball that failed verification stayed in the cache")
	}
}

func TestUnreachableInstallsNothing(t *testing.T) {
	m := newMirror(t, nil, nil)
	url := m.URL
	m.Close() // nothing listens there any more
	f := newFixture(t)
	_, err := run(t, f.env("etcd1", url), f.args)
	if err == nil || !strings.Contains(err.Error(), url+"/v3.6.16/SHA256SUMS") {
		t.Fatalf("want an error naming the URL, got %v", err)
	}
	assertNothingInstalled(t, f)

	// A missing release (404) is as clear.
	m2 := newMirror(t, nil, nil)
	_, err = run(t, f.env("etcd1", m2.URL+"/nope"), f.args)
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), m2.URL+"/nope/v3.6.16/SHA256SUMS") {
		t.Fatalf("want a 404 naming the URL, got %v", err)
	}
}

func TestCorruptCacheIsFetchedAgain(t *testing.T) {
	f, m, tb := installedOnce(t)
	cached := filepath.Join(f.state, "cache", version, "etcd-v3.6.16-linux-amd64.tar.gz")
	shared := filepath.Join(os.Getenv("XDG_CACHE_HOME"), "etcdplay", "releases", hex.EncodeToString(sha256Of(tb)), "etcd-v3.6.16-linux-amd64.tar.gz")
	for _, tt := range []struct {
		corrupt   []string
		downloads int32
	}{
		{[]string{cached}, 1},         // repaired from the user cache
		{[]string{cached, shared}, 2}, // both corrupt: fetched again
	} {
		for _, p := range tt.corrupt {
			must(t, os.WriteFile(p, tb[:len(tb)/2], 0o600))
		}
		if _, err := run(t, f.env("etcd2", m.URL), f.args); err != nil {
			t.Fatal(err)
		}
		if n := m.downloads.Load(); n != tt.downloads {
			t.Errorf("%d corrupt: downloads = %d, want %d", len(tt.corrupt), n, tt.downloads)
		}
		b, _ := os.ReadFile(cached)
		if !bytes.Equal(b, tb) {
			t.Errorf("%d corrupt: cache not repaired", len(tt.corrupt))
		}
	}
}

// A second state dir (another cluster, a new operator's checkout) takes
// the release from the controller's user cache: no download, no repack,
// and hosts install the same verified binaries.
func TestSecondStateDirUsesUserCache(t *testing.T) {
	f, m, _ := installedOnce(t)
	first, err := os.ReadFile(filepath.Join(f.state, "cache", version, "etcd-v3.6.16-linux-amd64.etcdplay.tar.zst"))
	if err != nil {
		t.Fatal(err)
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	g := newFixture(t) // another state dir and install root
	t.Setenv("XDG_CACHE_HOME", cache)
	installsWithoutDownload(t, g, m, "the second state dir uses the user cache")
	second, err := os.ReadFile(filepath.Join(g.state, "cache", version, "etcd-v3.6.16-linux-amd64.etcdplay.tar.zst"))
	if err != nil || !bytes.Equal(first, second) {
		t.Errorf("the second state dir's repack differs from the first's (err %v)", err)
	}
	if fi, err := os.Stat(filepath.Join(cache, "etcdplay", "releases")); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("user cache of releases has mode %v, want 0700", fi.Mode().Perm())
	}
}

// A user cache entry written by an older build (another repack format)
// still spares the download: its verified tarball is repacked, hosts
// install from the new repack, and the entry is replaced by it.
func TestOlderRepackFormatInUserCache(t *testing.T) {
	_, m, _ := installedOnce(t)
	cache := os.Getenv("XDG_CACHE_HOME")
	entries, _ := filepath.Glob(filepath.Join(cache, "etcdplay", "releases", "*", "files.json"))
	if len(entries) != 1 {
		t.Fatalf("user cache entries: %v", entries)
	}
	var idx filesIndex
	b, _ := os.ReadFile(entries[0])
	must(t, json.Unmarshal(b, &idx))
	idx.RepackFormat = "" // as builds before the format was recorded wrote it
	b, _ = json.Marshal(idx)
	must(t, os.WriteFile(entries[0], b, 0o600))
	repack := filepath.Join(filepath.Dir(entries[0]), "etcd-v3.6.16-linux-amd64.etcdplay.tar.zst")
	must(t, os.WriteFile(repack, []byte("an older repack"), 0o600))

	g := newFixture(t)
	t.Setenv("XDG_CACHE_HOME", cache)
	installsWithoutDownload(t, g, m, "the older entry's tarball is repacked")
	b, _ = os.ReadFile(entries[0])
	if err := json.Unmarshal(b, &idx); err != nil || idx.RepackFormat != repackFormat {
		t.Errorf("user cache entry not replaced: format %q (err %v)", idx.RepackFormat, err)
	}
	if b, _ := os.ReadFile(repack); bytes.Equal(b, []byte("an older repack")) {
		t.Error("user cache still holds the older repack")
	}
}

// The repack is rebuilt from the verified tarball whenever it is not as
// indexed, without downloading again; hosts install from it.
func TestEditedRepackIsRebuilt(t *testing.T) {
	f, m, _ := installedOnce(t)
	repack := filepath.Join(f.state, "cache", version, "etcd-v3.6.16-linux-amd64.etcdplay.tar.zst")
	good, err := os.ReadFile(repack)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(repack, good[:len(good)/2], 0o644))
	must(t, os.RemoveAll(filepath.Join(f.root, "opt")))
	installsWithoutDownload(t, f, m, "the repack is rebuilt from the cached tarball")
}

// installedOnce serves a release from a mirror and installs it on one
// host of a new fixture: the start of every test of the caches.
func installedOnce(t *testing.T) (fixture, *mirror, []byte) {
	t.Helper()
	tb := fakeRelease(t, "a")
	m := newMirror(t, tb, tb)
	f := newFixture(t)
	if _, err := run(t, f.env("etcd1", m.URL), f.args); err != nil {
		t.Fatal(err)
	}
	return f, m, tb
}

// installsWithoutDownload runs etcd_binary on f's host and checks that
// etcd was installed while the mirror served no tarball beyond the
// first; why says where the release should have come from.
func installsWithoutDownload(t *testing.T, f fixture, m *mirror, why string) {
	t.Helper()
	if _, err := run(t, f.env("etcd1", m.URL), f.args); err != nil {
		t.Fatal(err)
	}
	if n := m.downloads.Load(); n != 1 {
		t.Errorf("downloads = %d, want 1 (%s)", n, why)
	}
	b, _ := os.ReadFile(filepath.Join(f.root, "opt/etcd", version, "etcd"))
	if !bytes.Contains(b, []byte("echo etcd")) {
		t.Errorf("etcd not installed (%s): %q", why, b)
	}
}

func TestConcurrentHostsShareOneDownload(t *testing.T) {
	tb := fakeRelease(t, "a")
	m := newMirror(t, tb, tb)
	f := newFixture(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, h := range []string{"etcd1", "etcd2", "etcd3"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := f.env(h, m.URL)
			env.Check = true
			_, errs[i] = run(t, env, f.args)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := m.downloads.Load(); n != 1 {
		t.Errorf("downloads = %d, want 1", n)
	}
}

func assertNothingInstalled(t *testing.T, f fixture) {
	t.Helper()
	for _, p := range []string{"opt", "usr", "var"} {
		if _, err := os.Stat(filepath.Join(f.root, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused install", p)
		}
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestResolveRefusesBadVersion(t *testing.T) {
	f := newFixture(t)
	env := f.env("etcd1", "http://127.0.0.1:1")
	_, err := Module{}.Resolve(modules.Args{"version": "v2.3.8"}, &modules.ResolveContext{Host: "etcd1", Vars: env.Vars})
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("got %v", err)
	}
}
