package mirror

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/hostfile"
)

// fakeRelease lays out a release of version in cache with tiny "binaries",
// through the same writer Build uses.
func fakeRelease(t *testing.T, cache, version string) {
	t.Helper()
	rel := "etcd-" + version + "-linux-amd64"
	src := filepath.Join(t.TempDir(), rel)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range Binaries {
		if err := os.WriteFile(filepath.Join(src, b), []byte("#!/bin/sh\necho "+b+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(cache, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(dir, TarballName(version))
	if err := writeTarball(tgz, filepath.Dir(src), rel); err != nil {
		t.Fatal(err)
	}
	sum, err := hostfile.FileSumHex(tgz)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sum+"  "+TarballName(version)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTarballLayoutMatchesUpstream(t *testing.T) {
	cache := t.TempDir()
	fakeRelease(t, cache, "v9.9.9")
	names := tarNames(t, TarballPath(cache, "v9.9.9"))
	want := "etcd-v9.9.9-linux-amd64/ etcd-v9.9.9-linux-amd64/etcd etcd-v9.9.9-linux-amd64/etcdctl etcd-v9.9.9-linux-amd64/etcdutl"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("tarball entries = %s\nwant %s", got, want)
	}
	if err := verify(filepath.Join(cache, "v9.9.9"), "v9.9.9"); err != nil {
		t.Errorf("verify fresh release: %v", err)
	}
}

func TestVerifyRejectsDamage(t *testing.T) {
	for name, damage := range map[string]func(dir string) error{
		"truncated tarball": func(dir string) error {
			return os.Truncate(filepath.Join(dir, TarballName("v9.9.9")), 10)
		},
		"no SHA256SUMS": func(dir string) error {
			return os.Remove(filepath.Join(dir, "SHA256SUMS"))
		},
		"SHA256SUMS for another file": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte("00  etcd-v1.0.0-linux-amd64.tar.gz\n"), 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			cache := t.TempDir()
			fakeRelease(t, cache, "v9.9.9")
			dir := filepath.Join(cache, "v9.9.9")
			if err := damage(dir); err != nil {
				t.Fatal(err)
			}
			if err := verify(dir, "v9.9.9"); err == nil {
				t.Error("verify accepted a damaged release")
			}
		})
	}
}

func TestBuildRejectsBadVersion(t *testing.T) {
	for _, v := range []string{"3.6.16", "v3.6", "v3.6.16/../x", ""} {
		if _, err := Build(context.Background(), v, t.TempDir()); !errors.Is(err, ErrBadVersion) {
			t.Errorf("Build(%q): err = %v, want ErrBadVersion", v, err)
		}
	}
}

func TestServeOnlyReleaseFiles(t *testing.T) {
	cache := t.TempDir()
	fakeRelease(t, cache, "v9.9.9")
	if err := os.WriteFile(filepath.Join(cache, "v9.9.9.lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	url, stop, err := Serve(cache)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("url %s is not on 127.0.0.1", url)
	}
	for path, want := range map[string]int{
		"/v9.9.9/" + TarballName("v9.9.9"): 200,
		"/v9.9.9/SHA256SUMS":               200,
		"/v9.9.9/nope":                     404,
		"/v9.9.9.lock":                     404,
		"/base/etc/passwd":                 404,
		"/v9.9.9/../v9.9.9/SHA256SUMS":     404,
		"/":                                404,
	} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestBuildRealRelease builds (or reuses from the cache) a real etcd
// release, downloads it from the mirror as a deployment would, checks it
// against SHA256SUMS and runs the etcd binary in it.
func TestBuildRealRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds etcd from the module proxy (minutes when not cached); skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cache := DefaultCacheDir()
	const v = "v3.6.16"
	// Two callers at once: the lock makes one build and the other reuse.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Build(ctx, v, cache)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	url, stop, err := Serve(cache)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	sums := get(t, url+"/"+v+"/SHA256SUMS")
	tgz := get(t, url+"/"+v+"/"+TarballName(v))
	h := sha256.Sum256(tgz)
	want, err := sumFor(sums, TarballName(v))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h[:]); got != want {
		t.Fatalf("downloaded tarball sha256 %s, SHA256SUMS says %s", got, want)
	}
	dir := t.TempDir()
	tarball := filepath.Join(dir, TarballName(v))
	if err := os.WriteFile(tarball, tgz, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("tar", "-xzf", tarball, "-C", dir).Run(); err != nil {
		t.Fatal(err)
	}
	for _, b := range Binaries {
		args := []string{"version"}
		if b == "etcd" {
			args = []string{"--version"}
		}
		out, err := exec.Command(filepath.Join(dir, "etcd-"+v+"-linux-amd64", b), args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "version: 3.6.16") && !strings.Contains(string(out), "Version: 3.6.16") {
			t.Errorf("%s %v: %q, %v; want version 3.6.16", b, args, out, err)
		}
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}
