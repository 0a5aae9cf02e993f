package playbook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParse: whatever a playbook file holds, Parse returns a playbook or
// errors that name the file, in bounded time, never a panic.
func FuzzParse(f *testing.F) {
	for _, pat := range []string{"../../playbooks/*.yml", "testdata/*.yml", "testdata/errors/*.yml"} {
		seeds, _ := filepath.Glob(pat)
		for _, s := range seeds {
			if b, err := os.ReadFile(s); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "play.yml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := Parse(p)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil && !strings.Contains(err.Error(), "play.yml") {
				t.Fatalf("error does not name the file: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Parse took over 5s on %q", data)
		}
	})
}
