package hostfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ExistingDir is dir, or its nearest existing parent directory: before
// the first apply a data dir does not exist, but the filesystem that will
// hold it does.
func ExistingDir(dir string) (string, error) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil && fi.IsDir() {
			return d, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", err
		}
		if d == "/" || d == "." {
			return "", fmt.Errorf("no existing directory above %s", dir)
		}
	}
}

// FreeBytes is the space an unprivileged writer has left on the
// filesystem that holds path (or would hold it), and the existing dir it
// was measured at.
func FreeBytes(path string) (uint64, string, error) {
	dir, err := ExistingDir(path)
	if err != nil {
		return 0, "", err
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, dir, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), dir, nil
}
