// Package usercache is the controller's cache shared by every run and
// state dir of one user, under os.UserCacheDir()/etcdplay (0700): what is
// slow to make (the gzipped agent, a verified and repacked etcd release)
// and is checked again wherever it is used, so a lost or edited entry
// costs the time to make it again, never a wrong result.
package usercache

import (
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Dir returns the cache directory, made 0700 if it was missing, or ""
// when the user has none (no $HOME, or it cannot be written): callers then
// go without the cache.
func Dir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	dir := filepath.Join(base, "etcdplay")
	if os.MkdirAll(dir, 0o700) != nil {
		return ""
	}
	return dir
}

// Prune keeps the keep most recently modified entries of dir that match
// pattern (files or directories), and spare whatever their age.
func Prune(dir, pattern string, keep int, spare string) {
	entries, _ := filepath.Glob(filepath.Join(dir, pattern))
	sort.Slice(entries, func(i, j int) bool { return modTime(entries[i]).After(modTime(entries[j])) })
	for _, e := range entries[min(len(entries), keep):] {
		if e != spare {
			os.RemoveAll(e)
		}
	}
}

func modTime(p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
