package etcd_binary

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/internal/usercache"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// The controller's user cache keeps verified releases for every state dir
// (releases/<tarball sha256>/: the tarball, its repack and the binaries'
// digests), so a new state dir, another cluster or a CI job on the same
// controller neither downloads nor repacks a release again. The tarball
// is hashed against SHA256SUMS again as it is copied out, and hosts check
// every binary of the repack against the digests, as for the state dir's
// own cache.

// keepSharedReleases is enough for an upgrade (two versions) across a
// few clusters, at about 50 MB each.
const keepSharedReleases = 4

// sharedDir is where the release with tarball digest sum is kept, or ""
// without a user cache.
func sharedDir(sum string) string {
	dir := usercache.Dir()
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "releases", sum)
}

// fromShared copies the release with digest sum from the user cache into
// the state dir's cache at tarPath. ok is false when the user cache does
// not hold it whole, and the caller downloads it as before.
func fromShared(sum, tarPath string) (rel *Release, ok bool) {
	src := sharedDir(sum)
	if src == "" {
		return nil, false
	}
	var idx filesIndex
	b, err := os.ReadFile(filepath.Join(src, "files.json"))
	if err != nil || json.Unmarshal(b, &idx) != nil || idx.TarballSHA256 != sum || len(idx.Files) != len(etcd.Binaries) {
		return nil, false
	}
	if got, err := copyHashed(filepath.Join(src, filepath.Base(tarPath)), tarPath); err != nil || got != sum {
		if err == nil {
			os.Remove(tarPath)
		}
		return nil, false
	}
	now := time.Now()
	_ = os.Chtimes(src, now, now) // most recently used: kept longest
	if idx.RepackFormat != repackFormat {
		// An older build's repack: the verified tarball is still good, so
		// repack it here rather than download it again (toShared then
		// replaces the entry).
		rel, err := withFiles(tarPath, sum)
		return rel, err == nil
	}
	repack := repackPath(tarPath)
	if _, err := copyHashed(filepath.Join(src, filepath.Base(repack)), repack); err != nil {
		return nil, false
	}
	idx.Stamp, idx.RepackStamp = hostfile.Stamp(tarPath), hostfile.Stamp(repack)
	b, _ = json.Marshal(idx)
	if hostfile.WriteAtomic(tarPath+".files.json", b, 0o644, -1, -1) != nil {
		return nil, false
	}
	return idx.release(tarPath), true
}

// toShared publishes a release the state dir's cache has verified and
// repacked. The cache is an optimisation: failing to fill it is not an
// error.
func toShared(rel *Release) {
	dst := sharedDir(rel.SHA256)
	if dst == "" {
		return
	}
	var old filesIndex
	if b, err := os.ReadFile(filepath.Join(dst, "files.json")); err == nil && json.Unmarshal(b, &old) == nil && old.RepackFormat == repackFormat {
		return
	}
	parent := filepath.Dir(dst)
	if os.MkdirAll(parent, 0o700) != nil {
		return
	}
	tmp, err := os.MkdirTemp(parent, "."+rel.SHA256+".part-*")
	if err != nil {
		return
	}
	defer os.RemoveAll(tmp)
	for _, f := range []string{rel.Path, rel.Repack} {
		if _, err := copyHashed(f, filepath.Join(tmp, filepath.Base(f))); err != nil {
			return
		}
	}
	b, _ := json.Marshal(filesIndex{TarballSHA256: rel.SHA256, Files: rel.Files, RepackFormat: repackFormat})
	// files.json last: an entry without it is never used.
	if hostfile.WriteAtomic(filepath.Join(tmp, "files.json"), b, 0o600, -1, -1) != nil {
		return
	}
	if _, err := os.Stat(dst); err == nil {
		// An older format's entry: moved aside whole, so a reader never
		// sees a mix of the two.
		stale := tmp + ".stale"
		if os.Rename(dst, stale) != nil {
			return
		}
		defer os.RemoveAll(stale)
	}
	if os.Rename(tmp, dst) != nil {
		return // another run published it first
	}
	usercache.Prune(parent, "[0-9a-f]*", keepSharedReleases, dst)
}

// copyHashed copies src to dst atomically and returns its SHA-256.
func copyHashed(src, dst string) (string, error) {
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return writeHashed(dst, f)
}
