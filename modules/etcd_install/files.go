// Package etcd_install holds the host-side halves of the etcd modules:
// etcd_files writes a set of directories and files (certificates, etcd.yaml)
// in one agent call, and etcd_install unpacks a release tarball into a
// versioned directory with stable links; etcd_datadir moves data dirs
// aside and into place. They are internal modules (RegisterInternal): the
// controller-side modules (etcd_pki, etcd_binary, etcd_member, ...) plan
// them through modules.Host.Plan and apply them through HostWriter.Apply,
// and etcd_config uses the file set directly; playbooks cannot call them.
package etcd_install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcdplay/etcdplay/internal/diff"
	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
)

// Dir is a directory the set makes sure exists with the given attributes.
type Dir struct {
	Path, Mode, Owner, Group string
}

// File is a whole file whose content the set owns.
type File struct {
	Path, Content, Mode, Owner, Group string
	// Secret files show only hashes in a diff (private keys).
	Secret bool
}

// Set is what etcd_files converges: Dirs first, then Files.
type Set struct {
	Dirs  []Dir
	Files []File
}

// Args encodes the set as module arguments (what crosses the wire).
func (s Set) Args() modules.Args {
	dirs := make([]any, len(s.Dirs))
	for i, d := range s.Dirs {
		dirs[i] = map[string]any{"path": d.Path, "mode": d.Mode, "owner": d.Owner, "group": d.Group}
	}
	files := make([]any, len(s.Files))
	for i, f := range s.Files {
		files[i] = map[string]any{"path": f.Path, "content": f.Content, "mode": f.Mode, "owner": f.Owner, "group": f.Group, "secret": f.Secret}
	}
	return modules.Args{"dirs": dirs, "files": files}
}

// SetFromArgs decodes the arguments Args produced.
func SetFromArgs(args modules.Args) (Set, error) {
	var s Set
	for i, e := range listArg(args["dirs"]) {
		m, ok := e.(map[string]any)
		a := modules.Args(m)
		if !ok || a.Str("path", "") == "" {
			return s, &modules.ArgError{Arg: "dirs", Msg: fmt.Sprintf("entry %d must be a map with a path", i)}
		}
		s.Dirs = append(s.Dirs, Dir{Path: a.Str("path", ""), Mode: a.Str("mode", ""), Owner: a.Str("owner", ""), Group: a.Str("group", "")})
	}
	for i, e := range listArg(args["files"]) {
		m, ok := e.(map[string]any)
		a := modules.Args(m)
		if !ok || a.Str("path", "") == "" {
			return s, &modules.ArgError{Arg: "files", Msg: fmt.Sprintf("entry %d must be a map with a path", i)}
		}
		s.Files = append(s.Files, File{Path: a.Str("path", ""), Content: a.Str("content", ""), Mode: a.Str("mode", ""),
			Owner: a.Str("owner", ""), Group: a.Str("group", ""), Secret: a.Bool("secret", false)})
	}
	for _, p := range s.paths() {
		if !filepath.IsAbs(p) {
			return s, &modules.ArgError{Arg: "files", Msg: fmt.Sprintf("path %q must be absolute", p)}
		}
	}
	return s, nil
}

func listArg(v any) []any {
	l, _ := v.([]any)
	return l
}

func (s Set) paths() []string {
	var out []string
	for _, d := range s.Dirs {
		out = append(out, d.Path)
	}
	for _, f := range s.Files {
		out = append(out, f.Path)
	}
	return out
}

// resolveAttrs resolves mode/owner/group; an owner or group that does not
// exist yet (the etcd user is created by an earlier task that --check did
// not run) is tolerated in a plan and named in the detail.
func resolveAttrs(mode, owner, group string, cur hostfile.FileState, def os.FileMode, isDir, planning bool) (hostfile.Want, []string, error) {
	a := hostfile.Attrs{Mode: mode, Owner: owner, Group: group}
	w, err := a.Resolve(cur, def, isDir)
	if err == nil || !planning {
		return w, nil, err
	}
	var pending []string
	a2 := hostfile.Attrs{Mode: mode}
	if _, err := hostfile.LookupUID(owner); owner != "" && err != nil {
		pending = append(pending, "owner "+owner+" (not created yet)")
	} else {
		a2.Owner = owner
	}
	if _, err := hostfile.LookupGID(group); group != "" && err != nil {
		pending = append(pending, "group "+group+" (not created yet)")
	} else {
		a2.Group = group
	}
	w, err = a2.Resolve(cur, def, isDir)
	return w, pending, err
}

// PlanSet compares the set with the host and says what Apply would do.
func PlanSet(s Set) (*modules.Change, error) {
	c := &modules.Change{Payload: s}
	for _, d := range s.Dirs {
		if err := refusePrivateLink(d); err != nil {
			return nil, err
		}
		cur, err := hostfile.StateFollow(d.Path)
		if err != nil {
			return nil, err
		}
		if cur.Exists && !cur.IsDir() {
			return nil, fmt.Errorf("%s exists and is not a directory", d.Path)
		}
		w, pending, err := resolveAttrs(d.Mode, d.Owner, d.Group, cur, 0o755, true, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Path, err)
		}
		if !cur.Exists {
			c.Add("+", d.Path, strings.Join(append([]string{"directory"}, pending...), ", "))
		} else if diff := append(w.Diff(cur), pending...); len(diff) > 0 {
			c.Add("~", d.Path, strings.Join(diff, ", "))
		}
	}
	for _, f := range s.Files {
		cur, err := hostfile.StateFollow(f.Path)
		if err != nil {
			return nil, err
		}
		if cur.Exists && !cur.IsRegular() {
			return nil, fmt.Errorf("%s exists and is not a regular file", f.Path)
		}
		w, pending, err := resolveAttrs(f.Mode, f.Owner, f.Group, cur, hostfile.DefaultMode, false, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		want := hostfile.SumHex([]byte(f.Content))
		var details []string
		if cur.Exists && cur.SHA256 != want {
			details = append(details, "content")
		}
		if cur.Exists {
			details = append(details, w.Diff(cur)...)
		}
		details = append(details, pending...)
		switch {
		case !cur.Exists:
			c.Add("+", f.Path, strings.Join(append([]string{fmt.Sprintf("%d bytes", len(f.Content))}, pending...), ", "))
		case len(details) > 0:
			c.Add("~", f.Path, strings.Join(details, ", "))
		}
		if !cur.Exists || cur.SHA256 != want {
			c.Diffs = append(c.Diffs, diff.OfHostFile(f.Path, cur, []byte(f.Content), f.Secret))
		}
	}
	return c, nil
}

// ApplySet converges the host to the set: directories, then each file
// written atomically with its mode and owner set before it appears.
func ApplySet(s Set) error {
	var errs []error
	for _, d := range s.Dirs {
		if err := ensureDir(d); err != nil {
			return err // files below a missing directory cannot be written
		}
	}
	for _, f := range s.Files {
		cur, err := hostfile.StateFollow(f.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		w, _, err := resolveAttrs(f.Mode, f.Owner, f.Group, cur, hostfile.DefaultMode, false, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.Path, err))
			continue
		}
		if cur.Exists && cur.SHA256 == hostfile.SumHex([]byte(f.Content)) {
			if len(w.Diff(cur)) > 0 {
				if err := w.Set(f.Path); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if err := hostfile.WriteAtomic(f.Path, []byte(f.Content), w.Mode, w.UID, w.GID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func ensureDir(d Dir) error {
	if err := refusePrivateLink(d); err != nil {
		return err
	}
	cur, err := hostfile.StateFollow(d.Path)
	if err != nil {
		return err
	}
	w, _, err := resolveAttrs(d.Mode, d.Owner, d.Group, cur, 0o755, true, false)
	if err != nil {
		return fmt.Errorf("%s: %w", d.Path, err)
	}
	if !cur.Exists {
		if err := os.MkdirAll(filepath.Dir(d.Path), 0o755); err != nil {
			return err
		}
		// Create with no access for others, then set the real mode, so a
		// private directory is never briefly open.
		if err := os.Mkdir(d.Path, 0o700); err != nil && !os.IsExist(err) {
			return err
		}
		if w.Mode == hostfile.KeepMode {
			w.Mode = 0o755
		}
		cur, err = hostfile.StateFollow(d.Path)
		if err != nil {
			return err
		}
	}
	if len(w.Diff(cur)) > 0 {
		return w.Set(d.Path)
	}
	return nil
}

// refusePrivateLink refuses a private (0700) directory that is a symlink:
// in a shared place such as /var/tmp another user could have planted it,
// and following it would hand them what etcdplay keeps there (a snapshot
// of the whole keyspace, a release about to run as root). An existing real
// directory is taken over instead: owner and mode are set before anything
// is written into it.
func refusePrivateLink(d Dir) error {
	if d.Mode != "0700" {
		return nil
	}
	st, err := hostfile.State(d.Path)
	if err != nil {
		return err
	}
	if st.Exists && st.IsLink() {
		return fmt.Errorf("%s is a symlink (to %s), not a directory: refusing to keep private files behind it; remove it, or check who made it", d.Path, st.LinkTarget)
	}
	return nil
}

// filesModule is etcd_files: converge a Set on the host.
type filesModule struct{}

func (filesModule) Validate(args modules.Args) error {
	if err := (modules.Spec{"dirs": {Kind: modules.List}, "files": {Kind: modules.List}}).Check(args); err != nil {
		return err
	}
	_, err := SetFromArgs(args)
	return err
}

func (filesModule) Plan(_ context.Context, _ *modules.Env, args modules.Args) (*modules.Change, error) {
	s, err := SetFromArgs(args)
	if err != nil {
		return nil, err
	}
	return PlanSet(s)
}

func (filesModule) Apply(_ context.Context, _ *modules.Env, c *modules.Change) (*modules.Result, error) {
	if err := ApplySet(c.Payload.(Set)); err != nil {
		return nil, err
	}
	return &modules.Result{Status: modules.StatusChanged, Change: c}, nil
}

func init() {
	modules.RegisterInternal("etcd_files", filesModule{})
}
