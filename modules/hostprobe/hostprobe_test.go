package hostprobe

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/modules"
)

func TestParseShow(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      Unit
		err       bool
	}{
		{"running", "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\nExecMainStartTimestamp=Wed 2026-12-02 14:01:02.123456 UTC\n",
			Unit{Load: "loaded", Active: "active", Enabled: "enabled", Started: time.Date(2026, 12, 2, 14, 1, 2, 123456000, time.UTC)}, false},
		{"not installed", "LoadState=not-found\nActiveState=inactive\nUnitFileState=\nExecMainStartTimestamp=n/a\n",
			Unit{Load: "not-found", Active: "inactive"}, false},
		{"garbage", "hello\n", Unit{}, true},
		{"bad time", "LoadState=loaded\nActiveState=active\nExecMainStartTimestamp=yesterday\n", Unit{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseShow(tc.out)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if !tc.err && got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

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
