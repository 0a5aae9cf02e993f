package copy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/internal/diff"
	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
)

// SecretMode is the mode of a new file whose content looks secret (a
// private key, a password) when the task names no mode: such a file is
// never world-readable, not even for a moment.
const SecretMode os.FileMode = 0o600

// Write is a file the task wants on the host; copy and template both plan
// and apply one.
type Write struct {
	Dest    string
	Content []byte
	Attrs   hostfile.Attrs
	// Backup keeps the old content beside dest before replacing it.
	Backup bool
	// Force false leaves an existing dest's content alone (attributes are
	// still managed), as Ansible's force: no.
	Force bool
	// Secret hides the content from diffs even when it does not look
	// secret.
	Secret bool
}

// planned is what PlanWrite hands to ApplyWrite.
type planned struct {
	path    string
	content []byte
	write   bool
	backup  bool
	want    hostfile.Want
}

// PlanWrite compares w with the host's file: the change has one action for
// dest ("+" new, "~" content and/or attributes) and a diff when the content
// changes.
func PlanWrite(env *modules.Env, w Write) (*modules.Change, error) {
	c := &modules.Change{}
	w.Attrs.AllowMissing = env != nil && env.Check
	path := w.Dest
	cur, err := hostfile.State(path)
	if err != nil {
		return nil, err
	}
	if cur.IsLink() {
		// Write through a symlink to its target, as Ansible does.
		if cur, err = hostfile.StateFollow(path); err != nil {
			return nil, err
		}
		if !cur.Exists {
			return nil, fmt.Errorf("%s is a dangling symlink", path)
		}
		if path, err = filepath.EvalSymlinks(path); err != nil {
			return nil, err
		}
	}
	if cur.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	if cur.Exists && !cur.IsRegular() {
		return nil, fmt.Errorf("%s exists and is not a regular file", path)
	}
	secret := w.Secret || diff.IsSecret(string(w.Content))
	def := hostfile.DefaultMode
	if secret {
		def = SecretMode
	}
	want, err := w.Attrs.Resolve(cur, def, false)
	if err != nil {
		return nil, err
	}
	p := planned{path: path, content: w.Content, backup: w.Backup, want: want}
	newSum := hostfile.SumHex(w.Content)
	switch {
	case !cur.Exists:
		if parent := filepath.Dir(path); !env.Check {
			// Under --check an earlier task that would create the
			// directory did not run, so only a real run insists.
			if st, err := hostfile.StateFollow(parent); err != nil || !st.IsDir() {
				return nil, fmt.Errorf("destination directory %s does not exist", parent)
			}
		}
		if p.want.Mode == hostfile.KeepMode {
			p.want.Mode = def
		}
		p.write = true
		c.Add("+", path, fmt.Sprintf("file, %d bytes, mode %s", len(w.Content), hostfile.FormatMode(p.want.Mode)))
		c.Diffs = append(c.Diffs, diff.OfHostFile(path, cur, w.Content, secret))
	case cur.SHA256 != newSum && w.Force:
		p.write = true
		details := append([]string{"content"}, want.Diff(cur)...)
		c.Add("~", path, strings.Join(details, ", "))
		c.Diffs = append(c.Diffs, diff.OfHostFile(path, cur, w.Content, secret))
	default:
		if d := want.Diff(cur); len(d) > 0 {
			c.Add("~", path, strings.Join(d, ", "))
		}
	}
	c.Payload = p
	return c, nil
}

// ApplyWrite carries out a change from PlanWrite.
func ApplyWrite(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	p, ok := c.Payload.(planned)
	if !ok {
		return nil, errors.New("change has no plan payload")
	}
	res := &modules.Result{Status: modules.StatusChanged, Change: c, Data: map[string]any{"dest": p.path}}
	if !p.write {
		if err := p.want.Set(p.path); err != nil {
			return nil, err
		}
		return res, nil
	}
	if p.backup {
		b, err := backup(p.path)
		if err != nil {
			return nil, err
		}
		if b != "" {
			res.Data["backup_file"] = b
		}
	}
	if err := hostfile.WriteAtomic(p.path, p.content, p.want.Mode, p.want.UID, p.want.GID); err != nil {
		return nil, err
	}
	res.Data["checksum"] = hostfile.SumHex(p.content)
	return res, nil
}

// backup copies path to path.<pid>.<timestamp>~ (Ansible's naming) with the
// same mode and owner, and returns that name ("" when path is new).
func backup(path string) (string, error) {
	st, err := hostfile.State(path)
	if err != nil || !st.Exists {
		return "", err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("backup %s: %w", path, err)
	}
	name := fmt.Sprintf("%s.%d.%s~", path, os.Getpid(), time.Now().Format("2006-01-02@15:04:05"))
	if err := hostfile.WriteAtomic(name, data, st.Perm(), st.UID, st.GID); err != nil {
		return "", fmt.Errorf("backup %s: %w", path, err)
	}
	return name, nil
}
