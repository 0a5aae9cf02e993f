package harness

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/etcdplay/etcdplay/integration/mirror"
)

// WarmReleaseCache puts the mirror's verified release files where
// etcd_binary caches downloads (<state>/cache/<version>/), as a second run
// on the same controller would find them: tests and benchmarks then
// measure etcdplay, not a download.
func (e *Env) WarmReleaseCache(t testing.TB, version string) {
	t.Helper()
	src := filepath.Join(mirror.DefaultCacheDir(), version)
	dst := filepath.Join(e.StateDir, "cache", version)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{mirror.TarballName(version), "SHA256SUMS"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
