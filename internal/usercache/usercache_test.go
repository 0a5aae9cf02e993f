package usercache

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestPrune(t *testing.T) {
	tests := []struct {
		name  string
		keep  int
		spare string
		want  []string
	}{
		{"keeps the newest", 2, "", []string{"a3", "a4", "other"}},
		{"spares one whatever its age", 2, "a1", []string{"a1", "a3", "a4", "other"}},
		{"keeps all when there are few", 9, "", []string{"a1", "a2", "a3", "a4", "other"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			old := time.Now().Add(-time.Hour)
			for i, n := range []string{"a1", "a2", "a3", "a4", "other"} {
				p := filepath.Join(dir, n)
				if i%2 == 0 {
					os.WriteFile(p, nil, 0o600)
				} else {
					os.Mkdir(p, 0o700) // entries may be directories
				}
				os.Chtimes(p, old.Add(time.Duration(i)*time.Minute), old.Add(time.Duration(i)*time.Minute))
			}
			spare := ""
			if tt.spare != "" {
				spare = filepath.Join(dir, tt.spare)
			}
			Prune(dir, "a*", tt.keep, spare)
			var got []string
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				got = append(got, e.Name())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("left %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDirIsPrivate(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir := Dir()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v, want 0700", dir, fi.Mode().Perm())
	}
}
