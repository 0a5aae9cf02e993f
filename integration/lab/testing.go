package lab

import (
	"context"
	"errors"
	"testing"
)

// ForTest boots a lab for t and tears it down when t ends (also when it
// fails). It skips t, saying why, on a machine that cannot run a lab: not
// root, or no systemd-nspawn.
func ForTest(t testing.TB, opts Options) *Lab {
	t.Helper()
	if err := Supported(); err != nil {
		t.Skipf("integration test skipped: %v", err)
	}
	if opts.Name == "" {
		t.Fatal("lab.ForTest: Options.Name is required (unique per test)")
	}
	l, err := New(context.Background(), opts)
	if err != nil {
		if errors.Is(err, ErrNotSupported) {
			t.Skipf("integration test skipped: %v", err)
		}
		t.Fatalf("boot lab %s: %v", opts.Name, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("tear down lab %s: %v", opts.Name, err)
		}
	})
	return l
}
