package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// Snapshot records every file under the given directories of a lab host's
// root (seen from the controller): path, type, mode, owner and a content
// hash. Two equal snapshots mean the host is byte-for-byte unchanged there.
func (e *Env) Snapshot(t testing.TB, host string, dirs ...string) map[string]string {
	t.Helper()
	root, err := e.Lab.HostRoot(host)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range dirs {
		base := filepath.Join(root, d)
		err := filepath.WalkDir(base, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			desc := fmt.Sprintf("%s uid=%d gid=%d", fi.Mode(), st.Uid, st.Gid)
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				desc += " -> " + target
			case fi.Mode().IsRegular():
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				h := sha256.New()
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					return err
				}
				desc += " sha256=" + hex.EncodeToString(h.Sum(nil))
			}
			out[strings.TrimPrefix(p, root)] = desc
			return nil
		})
		if err != nil {
			t.Fatalf("snapshot %s:%s: %v", host, d, err)
		}
	}
	return out
}

// SnapshotDiff lists what differs between two snapshots, sorted.
func SnapshotDiff(before, after map[string]string) []string {
	var out []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			out = append(out, "- "+p)
		case a != b:
			out = append(out, fmt.Sprintf("~ %s: %s -> %s", p, b, a))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			out = append(out, "+ "+p)
		}
	}
	sort.Strings(out)
	return out
}
