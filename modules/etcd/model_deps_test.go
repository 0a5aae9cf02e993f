package etcd_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestModelHasNoClient: the model compiles into the playbook compiler and
// is built before any connection, so it must not pull in etcd's client,
// gRPC or HTTP; those live in modules/etcd/etcdclient.
func TestModelHasNoClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"go.etcd.io/etcd/client/", "google.golang.org/grpc", "net/http"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("modules/etcd depends on %s: network clients belong in modules/etcd/etcdclient", dep)
			}
		}
	}
}
