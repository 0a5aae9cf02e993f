package hostfile

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// KeepMode asks WriteAtomic to keep the existing file's mode (DefaultMode
// for a new file). Pass -1 as uid or gid to keep the owner likewise.
const KeepMode = ^os.FileMode(0)

// DefaultMode is the mode of a new file when none is asked for: what
// Ansible produces under the usual 022 umask.
const DefaultMode os.FileMode = 0o644

// WriteAtomic replaces path with data so that a reader sees either the old
// content or the new, never a mix, even across a crash: it writes a temp
// file in the same directory, fsyncs it, sets mode and owner on it, renames
// it over path and fsyncs the directory. The mode and owner are set before
// the rename, so a secret is never readable with the wrong permissions.
// mode KeepMode and uid/gid -1 keep what the existing file has.
func WriteAtomic(path string, data []byte, mode os.FileMode, uid, gid int) error {
	return WriteAtomicFrom(path, bytes.NewReader(data), mode, uid, gid)
}

// WriteAtomicFrom is WriteAtomic streaming from r: for content too big to
// hold in memory (a snapshot).
func WriteAtomicFrom(path string, r io.Reader, mode os.FileMode, uid, gid int) error {
	// Only the current mode and owner matter: StateFollow would also read
	// and hash what is about to be replaced (a whole snapshot or release).
	cur, err := statFollow(path)
	if err != nil {
		return err
	}
	if cur.Exists && !cur.Mode.IsRegular() {
		return fmt.Errorf("write %s: exists and is not a regular file (%s)", path, cur.Mode.Type())
	}
	if mode == KeepMode {
		mode = DefaultMode
		if cur.Exists {
			mode = cur.Perm()
		}
	}
	if cur.Exists {
		if uid < 0 {
			uid = cur.UID
		}
		if gid < 0 {
			gid = cur.GID
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".etcdplay-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600, so nothing else can read it while
	// it is being filled.
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if uid >= 0 || gid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("write %s: chown %d:%d: %w", path, uid, gid, err)
		}
	}
	// Chmod after chown: chown clears setuid/setgid bits.
	if err := f.Chmod(mode & PermMask); err != nil {
		return fmt.Errorf("write %s: chmod %o: %w", path, mode, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so a rename or create in it survives a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
