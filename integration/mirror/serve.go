package mirror

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
)

var pathRE = regexp.MustCompile(`^/(v\d+\.\d+\.\d+)/([A-Za-z0-9._-]+)$`)

// Handler serves <version>/<file> from cacheDir and nothing else (the cache
// also holds the lab's base image and lock files).
func Handler(cacheDir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := pathRE.FindStringSubmatch(r.URL.Path)
		if m == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return
		}
		p := filepath.Join(cacheDir, m[1], m[2])
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, p)
	})
}

// Serve starts an HTTP server on 127.0.0.1 at a random port serving the
// mirror in cacheDir. url is the release base URL: a tarball is at
// url/<version>/etcd-<version>-linux-amd64.tar.gz, as under upstream's
// https://github.com/etcd-io/etcd/releases/download. stop shuts it down.
func Serve(cacheDir string) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: Handler(cacheDir)}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}
