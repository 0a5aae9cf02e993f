package hostprobe

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/modules"
)

// TestProbePathsUsersFree runs the probe as the agent does (through
// modules.RunProbe and its JSON answer) on this machine's filesystem.
func TestProbePathsUsersFree(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "etcd-v1")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(bin, old, old); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "etcd")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "etcd.yaml")
	if err := os.WriteFile(plain, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	q := Query{Paths: []string{link, plain, filepath.Join(dir, "gone")}, Users: []string{"root", "no-such-user-xyz"},
		Free: []string{filepath.Join(dir, "not", "yet")}}
	res := modules.RunProbe(context.Background(), Name, q.args())
	var f Facts
	if err := modules.DecodeAnswer(Name, res, &f); err != nil {
		t.Fatal(err)
	}
	if p := f.Paths[link]; !p.Exists || !p.Executable || !p.ModTime.After(old.Add(time.Minute)) {
		t.Errorf("link: %+v (its own mtime is newer than the target's, and must win)", p)
	}
	if p := f.Paths[plain]; !p.Exists || p.Executable {
		t.Errorf("plain file: %+v", p)
	}
	if p := f.Paths[filepath.Join(dir, "gone")]; p.Exists {
		t.Errorf("missing path reported as existing: %+v", p)
	}
	if !f.Users["root"] || f.Users["no-such-user-xyz"] {
		t.Errorf("users: %v", f.Users)
	}
	if f.Free[filepath.Join(dir, "not", "yet")] == 0 {
		t.Errorf("free space of a not-yet-existing path: %v", f.Free)
	}
}
