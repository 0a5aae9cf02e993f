package harness

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/integration/mirror"
)

// TamperedMirror serves version's release files from the mirror cache, laid
// out like the real mirror (URL/<version>/<file>), after passing each
// file's bytes through tamper (which may return them unchanged). It lives
// on 127.0.0.1 until t ends; its URL is what etcd_release_url should be.
func TamperedMirror(t testing.TB, version string, tamper func(file string, data []byte) []byte) string {
	t.Helper()
	Mirror(t, version) // makes sure the cache holds the release
	dir := filepath.Join(mirror.DefaultCacheDir(), version)
	files := map[string][]byte{}
	for _, name := range []string{mirror.TarballName(version), "SHA256SUMS"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("tampered mirror: %v", err)
		}
		files["/"+version+"/"+name] = tamper(name, data)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("tampered mirror listens on %s, want 127.0.0.1", srv.URL)
	}
	return srv.URL
}
