package hostside_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/modules"
	_ "github.com/etcdplay/etcdplay/modules/hostside"
)

// TestLeanRegistry records what the lean agent serves (this test binary
// links modules/hostside alone, as cmd/etcdplay-agent does). modules/all's
// TestLeanAgentServesHostSide reads the same file and checks that the
// full binary's host side is this plus what is marked full-agent-only.
func TestLeanRegistry(t *testing.T) {
	golden.Check(t, "testdata/lean.golden", strings.Join(modules.HostSideNames(), "\n")+"\n")
}

// TestLeanAgentLinksNoClients: the lean agent is small because etcd's
// client, gRPC, S3, age, cfssl and TLS stay on the controller. A module
// that pulls one of them in belongs in modules/all, marked
// modules.FullAgentOnly if it runs on hosts. (crypto/tls and the x509
// and elliptic-curve code it brings are 2 MB of a 7 MB agent.)
func TestLeanAgentLinksNoClients(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "../../cmd/etcdplay-agent").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"go.etcd.io/etcd/client/", "google.golang.org/grpc", "github.com/minio/", "filippo.io/age", "github.com/cloudflare/cfssl", "github.com/spf13/cobra", "crypto/tls", "net/http"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") || strings.HasSuffix(banned, "/") && strings.HasPrefix(dep, banned) {
				t.Errorf("cmd/etcdplay-agent links %s", dep)
			}
		}
	}
}
