package agent

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Copy copies c.Src to c.Dst atomically: the content goes to a temp file in
// Dst's directory, is fsynced, given its mode and owner, and renamed over
// Dst, so a reader sees the old file or the new one, never a partial one.
func Copy(c *CopySpec) (err error) {
	in, err := os.Open(c.Src)
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", c.Src, c.Dst, err)
	}
	defer in.Close()
	uid, gid := c.UID, c.GID
	if st, serr := os.Stat(c.Dst); serr == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			if uid < 0 {
				uid = int(sys.Uid)
			}
			if gid < 0 {
				gid = int(sys.Gid)
			}
		}
	}
	dir := filepath.Dir(c.Dst)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(c.Dst)+".etcdplay-*")
	if err != nil {
		return fmt.Errorf("copy to %s: %w", c.Dst, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, in); err != nil {
		return fmt.Errorf("copy %s to %s: %w", c.Src, c.Dst, err)
	}
	if err = tmp.Chmod(os.FileMode(c.Mode) & os.ModePerm); err != nil {
		return fmt.Errorf("copy to %s: %w", c.Dst, err)
	}
	if uid >= 0 || gid >= 0 {
		if err = tmp.Chown(uid, gid); err != nil {
			return fmt.Errorf("copy to %s: %w", c.Dst, err)
		}
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("copy to %s: %w", c.Dst, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("copy to %s: %w", c.Dst, err)
	}
	if err = os.Rename(tmp.Name(), c.Dst); err != nil {
		return fmt.Errorf("copy to %s: %w", c.Dst, err)
	}
	// The rename is durable only once the directory is synced.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	if c.RemoveSrc {
		if rerr := os.Remove(c.Src); rerr != nil {
			return fmt.Errorf("copy to %s: removing staged %s: %w", c.Dst, c.Src, rerr)
		}
	}
	return nil
}
