// Package etcd_binary is the etcd_binary module: it fetches the etcd release
// tarball once on the controller, verifies it against the release's
// SHA256SUMS, caches it, and installs it on each host through the host-side
// etcd_install module, uploading only when the host lacks the release.
package etcd_binary

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/klauspost/compress/zstd"
)

// Release is a verified release tarball in the controller's cache.
type Release struct {
	Path   string            // the cached tarball
	SHA256 string            // the tarball's digest, as SHA256SUMS lists it
	Files  map[string]string // etcd, etcdctl, etcdutl -> hex SHA-256
	// Repack holds the same three binaries as a zstd tar (repackFormat):
	// 41% fewer bytes on the wire than upstream's gzip, which hosts
	// decompress about three times faster (66-89 ms against 231). Hosts
	// check each binary against Files, so the repack is trusted no more
	// than the upload itself.
	Repack string
}

// HostName is the release's file name on a host while it is being
// installed.
func (r *Release) HostName() string { return filepath.Base(r.Repack) }

// ErrChecksum is returned (wrapped) when a download does not match
// SHA256SUMS.
var ErrChecksum = errors.New("checksum mismatch")

// httpClient is shared; a release download may take minutes on a slow
// mirror, so only connecting is bounded tightly (by the dialer's default)
// and the whole request by the caller's context plus this ceiling.
var httpClient = &http.Client{Timeout: 15 * time.Minute}

// fetches makes concurrent hosts share one download per cache file: the
// first caller fetches, the rest wait for its result (a process-wide
// singleflight; results are not kept, the cache on disk is).
var fetches = struct {
	sync.Mutex
	m map[string]*fetchCall
}{m: map[string]*fetchCall{}}

type fetchCall struct {
	done chan struct{}
	rel  *Release
	err  error
}

// Fetch returns the verified release for c, downloading it into
// <stateDir>/cache/<version>/ unless a verified copy is there already, or
// in the controller's user cache (see fromShared).
func Fetch(ctx context.Context, c *etcd.Cluster, stateDir string, logf func(string, ...any)) (*Release, error) {
	key := filepath.Join(c.CacheDir(stateDir), c.Tarball())
	fetches.Lock()
	if call, ok := fetches.m[key]; ok {
		fetches.Unlock()
		select {
		case <-call.done:
			return call.rel, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	call := &fetchCall{done: make(chan struct{})}
	fetches.m[key] = call
	fetches.Unlock()

	call.rel, call.err = fetch(ctx, c, stateDir, logf)
	if call.err == nil {
		toShared(call.rel)
	}
	fetches.Lock()
	delete(fetches.m, key)
	fetches.Unlock()
	close(call.done)
	return call.rel, call.err
}

func fetch(ctx context.Context, c *etcd.Cluster, stateDir string, logf func(string, ...any)) (*Release, error) {
	dir := c.CacheDir(stateDir)
	tarPath := filepath.Join(dir, c.Tarball())
	sumsPath := filepath.Join(dir, "SHA256SUMS")
	if logf == nil {
		logf = func(string, ...any) {}
	}

	// A cached tarball is trusted only if it still matches the cached
	// SHA256SUMS; anything else (truncated, corrupt, edited) is fetched again.
	if sums, err := os.ReadFile(sumsPath); err == nil {
		if want, err := sumFor(sums, c.Tarball()); err == nil {
			if idx, ok := readIndex(tarPath); ok && idx.TarballSHA256 == want && idx.fresh(tarPath) {
				// Unchanged since verified (size, mtime, ctime, inode): no
				// need to hash 20+ MB again on every run.
				return idx.release(tarPath), nil
			}
			if got, err := hostfile.FileSumHex(tarPath); err == nil && got == want {
				return withFiles(tarPath, want)
			} else if err == nil {
				logf("cached %s does not match SHA256SUMS, downloading again", tarPath)
			}
		}
	}

	sums, err := get(ctx, c.SumsURL())
	if err != nil {
		return nil, err
	}
	want, err := sumFor(sums, c.Tarball())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.SumsURL(), err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if rel, ok := fromShared(want, tarPath); ok {
		logf("%s from the controller's cache (verified against %s)", c.Tarball(), c.SumsURL())
		if err := hostfile.WriteAtomic(sumsPath, sums, 0o644, -1, -1); err != nil {
			return nil, err
		}
		return rel, nil
	}
	logf("downloading %s", c.TarballURL())
	got, err := download(ctx, c.TarballURL(), tarPath)
	if err != nil {
		return nil, err
	}
	if got != want {
		os.Remove(tarPath)
		return nil, fmt.Errorf("%s: %w: got sha256 %s, %s lists %s; nothing was installed", c.TarballURL(), ErrChecksum, got, c.SumsURL(), want)
	}
	if err := hostfile.WriteAtomic(sumsPath, sums, 0o644, -1, -1); err != nil {
		return nil, err
	}
	return withFiles(tarPath, want)
}

func get(ctx context.Context, url string) ([]byte, error) {
	body, err := open(ctx, url)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	return b, nil
}

func open(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w (check etcd_release_url, or point it at a reachable mirror)", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: %s (check etcd_version and etcd_release_url)", url, resp.Status)
	}
	return resp.Body, nil
}

// download streams url into dst, returning its digest. dst only appears
// once complete.
func download(ctx context.Context, url, dst string) (string, error) {
	body, err := open(ctx, url)
	if err != nil {
		return "", err
	}
	defer body.Close()
	sum, err := writeHashed(dst, body)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", url, err)
	}
	return sum, nil
}

// writeHashed writes r to dst atomically (hostfile.WriteAtomicFrom) and
// returns its SHA-256: one pass for a download and for a copy out of the
// user cache alike.
func writeHashed(dst string, r io.Reader) (string, error) {
	h := sha256.New()
	if err := hostfile.WriteAtomicFrom(dst, io.TeeReader(r, h), 0o600, -1, -1); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sumFor finds name in a SHA256SUMS file ("<hex>  <name>" per line, the
// name possibly prefixed with '*' or "./").
func sumFor(sums []byte, name string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(string(sums)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && path.Base(strings.TrimPrefix(f[1], "*")) == name && len(f[0]) == 64 {
			return strings.ToLower(f[0]), nil
		}
	}
	return "", fmt.Errorf("SHA256SUMS has no entry for %s", name)
}

// filesIndex caches the per-binary digests beside the tarball, so a warm
// run does not decompress the release again.
type filesIndex struct {
	TarballSHA256 string            `json:"tarball_sha256"`
	Stamp         string            `json:"stamp"` // the tarball's stat when it was verified
	Files         map[string]string `json:"files"`
	RepackStamp   string            `json:"repack_stamp"`  // the repack's stat when it was written
	RepackFormat  string            `json:"repack_format"` // how it was compressed: a repack of another format is made again
}

// repackFormat names repack's compression. Changing how repack compresses
// means changing this, so caches written by older builds are repacked.
const repackFormat = "zstd-best-window64m"

func readIndex(tarPath string) (filesIndex, bool) {
	var idx filesIndex
	b, err := os.ReadFile(tarPath + ".files.json")
	if err != nil || json.Unmarshal(b, &idx) != nil || len(idx.Files) != len(etcd.Binaries) {
		return idx, false
	}
	return idx, true
}

// fresh says the tarball and its repack are both as they were indexed.
func (idx filesIndex) fresh(tarPath string) bool {
	return idx.Stamp == hostfile.Stamp(tarPath) && idx.repackFresh(tarPath)
}

// repackFresh says the repack is of the current format and as indexed.
func (idx filesIndex) repackFresh(tarPath string) bool {
	return idx.RepackFormat == repackFormat && idx.RepackStamp != "" && idx.RepackStamp == hostfile.Stamp(repackPath(tarPath))
}

func (idx filesIndex) release(tarPath string) *Release {
	return &Release{Path: tarPath, SHA256: idx.TarballSHA256, Files: idx.Files, Repack: repackPath(tarPath)}
}

// repackPath names the repack after the release it came from, so hosts
// and operators can tell which release a staged file is.
func repackPath(tarPath string) string {
	return strings.TrimSuffix(tarPath, ".tar.gz") + ".etcdplay.tar.zst"
}

// withFiles indexes a verified tarball: it hashes the three binaries and
// writes their repack in one pass over the tarball, unless the index
// already holds both for this tarball.
func withFiles(tarPath, sum string) (*Release, error) {
	idxPath := tarPath + ".files.json"
	if idx, ok := readIndex(tarPath); ok && idx.TarballSHA256 == sum && idx.repackFresh(tarPath) {
		if idx.Stamp != hostfile.Stamp(tarPath) {
			idx.Stamp = hostfile.Stamp(tarPath)
			b, _ := json.Marshal(idx)
			if err := hostfile.WriteAtomic(idxPath, b, 0o644, -1, -1); err != nil {
				return nil, err
			}
		}
		return idx.release(tarPath), nil
	}
	files, err := repack(tarPath, repackPath(tarPath))
	if err != nil {
		return nil, err
	}
	idx := filesIndex{TarballSHA256: sum, Stamp: hostfile.Stamp(tarPath), Files: files, RepackStamp: hostfile.Stamp(repackPath(tarPath)), RepackFormat: repackFormat}
	b, _ := json.Marshal(idx)
	if err := hostfile.WriteAtomic(idxPath, b, 0o644, -1, -1); err != nil {
		return nil, err
	}
	return idx.release(tarPath), nil
}

// repack hashes etcd, etcdctl and etcdutl inside the tarball (the
// top-level directory's entries, as upstream lays them out) and writes
// them to dst as a zstd tar under the same names. dst only appears once
// complete.
func repack(tarPath, dst string) (map[string]string, error) {
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	// The best level with a window as large as the release: etcd, etcdctl
	// and etcdutl share most of their code and data, which only a window
	// spanning all three finds. v3.6.16: 13.6 MB against upstream's 23.1
	// (the fastest level: 24.0), decompressed in 62 ms against 106, for
	// 3.3 s of the controller's CPU once per release (the user cache
	// keeps it). Hosts decompress it with a 64 MiB window buffer.
	zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(64<<20))
	if err != nil {
		return nil, err
	}
	defer zw.Close()
	tw := tar.NewWriter(zw)
	dir := strings.TrimSuffix(filepath.Base(tarPath), ".tar.gz")
	files := map[string]string{}
	err = etcd_install.EachBinary(tarPath, func(h *tar.Header, r io.Reader) error {
		name := path.Base(h.Name)
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: path.Join(dir, name), Size: h.Size, Mode: 0o755, ModTime: h.ModTime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		d := sha256.New()
		if _, err := io.Copy(io.MultiWriter(d, tw), r); err != nil {
			return fmt.Errorf("%s: %w", tarPath, err)
		}
		files[name] = hex.EncodeToString(d.Sum(nil))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := out.Sync(); err != nil {
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(out.Name(), dst); err != nil {
		return nil, err
	}
	return files, nil
}
