// Package hostfile reads and writes files on the host the agent runs on:
// atomic writes that keep mode and owner, a file's current state, and the
// owner, group and mode parsing the file-like modules share.
package hostfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxContent is the largest file whose content State keeps in memory; larger
// files are compared by hash only (a diff of a multi-megabyte file helps no
// one reading a plan).
const MaxContent = 1 << 20

// FileState is what a path looks like on the host right now.
type FileState struct {
	Path   string
	Exists bool
	// Mode is the full mode from lstat (or stat for StateFollow): type bits
	// plus permissions.
	Mode os.FileMode
	UID  int
	GID  int
	Size int64
	// SHA256 is the hex digest of a regular file's content.
	SHA256 string
	// Content is a regular file's content when Size <= MaxContent.
	Content []byte
	// HasContent tells an empty file (Content empty, HasContent true) from
	// one too large to keep.
	HasContent bool
	// LinkTarget is a symlink's target.
	LinkTarget string
}

// Perm returns the permission bits including setuid, setgid and sticky.
func (s FileState) Perm() os.FileMode { return s.Mode & PermMask }

// PermMask selects the bits chmod sets.
const PermMask = os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky

// IsDir, IsRegular and IsLink classify an existing path.
func (s FileState) IsDir() bool     { return s.Exists && s.Mode.IsDir() }
func (s FileState) IsRegular() bool { return s.Exists && s.Mode.IsRegular() }
func (s FileState) IsLink() bool    { return s.Exists && s.Mode&os.ModeSymlink != 0 }

// State describes path without following a final symlink. A missing path is
// not an error: it comes back with Exists false.
func State(path string) (FileState, error) { return state(path, os.Lstat) }

// StateFollow is State through symlinks (what copy and template write to).
func StateFollow(path string) (FileState, error) { return state(path, os.Stat) }

func state(path string, stat func(string) (os.FileInfo, error)) (FileState, error) {
	st, fi, err := statOnly(path, stat)
	if err != nil || !st.Exists {
		return st, err
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		if st.LinkTarget, err = os.Readlink(path); err != nil {
			return st, fmt.Errorf("readlink %s: %w", path, err)
		}
	case fi.Mode().IsRegular():
		if err := st.readContent(); err != nil {
			return st, err
		}
	}
	return st, nil
}

// statFollow is StateFollow without the content: type, mode, size, owner.
func statFollow(path string) (FileState, error) {
	st, _, err := statOnly(path, os.Stat)
	return st, err
}

func statOnly(path string, stat func(string) (os.FileInfo, error)) (FileState, os.FileInfo, error) {
	st := FileState{Path: path, UID: -1, GID: -1}
	fi, err := stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil, nil
	}
	if err != nil {
		return st, nil, fmt.Errorf("stat %s: %w", path, err)
	}
	st.Exists = true
	st.Mode = fi.Mode()
	st.Size = fi.Size()
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.UID, st.GID = int(sys.Uid), int(sys.Gid)
	}
	return st, fi, nil
}

func (s *FileState) readContent() error {
	f, err := os.Open(s.Path)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.Path, err)
	}
	defer f.Close()
	h := sha256.New()
	var r io.Reader = f
	if s.Size <= MaxContent {
		// Read one byte past the limit so a file that grew since stat is
		// not silently truncated.
		b, err := io.ReadAll(io.LimitReader(f, MaxContent+1))
		if err != nil {
			return fmt.Errorf("read %s: %w", s.Path, err)
		}
		h.Write(b)
		if len(b) <= MaxContent {
			s.Content, s.HasContent = b, true
		}
	}
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("read %s: %w", s.Path, err)
	}
	s.SHA256 = hex.EncodeToString(h.Sum(nil))
	return nil
}

// SumHex returns the hex SHA-256 of data, comparable with FileState.SHA256.
func SumHex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// Stamp identifies the content of the regular file at path without
// reading it: inode, size, mode, mtime and ctime. Any write or chmod moves
// ctime, which nothing but the clock can set back, so a stamp recorded
// beside a digest when the file was hashed vouches for that digest until
// the stamp changes. "" (which matches no recorded stamp) for a missing or
// irregular file.
func Stamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d:%d:%o:%d.%d:%d.%d", st.Ino, fi.Size(), fi.Mode().Perm(), st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
}

// FileSumHex returns the hex SHA-256 of the file at path, read as a
// stream (a release tarball, a snapshot).
func FileSumHex(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
