package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The inventory parsers take operators' files: whatever the bytes, Load
// must return an inventory or an error naming the file, never panic or
// hang, and an inventory it returns must be usable (every host named and
// in "all", every group's member a known host). `make fuzz` runs these
// longer: FUZZTIME=10m.

func FuzzLoadYAML(f *testing.F) { fuzzLoad(f, "hosts.yml", "yaml") }
func FuzzLoadINI(f *testing.F)  { fuzzLoad(f, "hosts.ini", "ini") }

func fuzzLoad(f *testing.F, name, seedDir string) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", seedDir, "*"))
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("all:\n  hosts:\n    etcd[1:3]:\n      ansible_host: 10.0.0.1\n"))
	f.Add([]byte("[etcd]\netcd[01:03] ansible_port=2222\n[etcd:vars]\nx=1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		type loaded struct {
			inv *Inventory
			err error
		}
		done := make(chan loaded, 1)
		go func() {
			inv, err := Load(p)
			done <- loaded{inv, err}
		}()
		var inv *Inventory
		var err error
		select {
		case l := <-done:
			inv, err = l.inv, l.err
		case <-time.After(5 * time.Second):
			t.Fatalf("Load took over 5s on %q", data)
		}
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		all := map[string]bool{}
		for _, h := range inv.Hosts() {
			if h.Name == "" {
				t.Fatalf("a host without a name")
			}
			all[h.Name] = true
		}
		for g, hs := range inv.Groups() {
			for _, h := range hs {
				if !all[h] {
					t.Fatalf("group %s lists %q, which is not a host", g, h)
				}
			}
		}
	})
}
