package etcd_config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"
)

// etcd's own config-file parser (the v3.6 release this module links) must
// read every golden file for 3.6 and agree on the values that matter.
func TestEtcdParsesRenderedConfig(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "etcd v3.6.") {
			continue // another release's parser
		}
		cfg, err := embed.ConfigFromFile(f)
		if err != nil {
			t.Errorf("%s: etcd refuses it: %v", f, err)
			continue
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: etcd's validation: %v", f, err)
		}
		if cfg.Name != "etcd1" || cfg.InitialCluster == "" || cfg.TickMs == 0 || cfg.ElectionMs < 5*cfg.TickMs {
			t.Errorf("%s: parsed %s %q %d/%d", f, cfg.Name, cfg.InitialCluster, cfg.TickMs, cfg.ElectionMs)
		}
		tls := strings.Contains(f, "tls") || strings.Contains(f, "heartbeat")
		if tls && (!cfg.ClientTLSInfo.ClientCertAuth || !cfg.PeerTLSInfo.ClientCertAuth || cfg.ClientTLSInfo.TrustedCAFile != "/etc/etcd/pki/ca.crt") {
			t.Errorf("%s: TLS not parsed as client-cert-auth: %+v", f, cfg.ClientTLSInfo)
		}
	}
}
