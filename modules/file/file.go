// Package file is the "file" module: make a path a directory, a file, a
// symlink or absent, with a mode and owner, the way Ansible's file module
// does.
package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
)

func init() { modules.Register("file", Module{}) }

// Module manages one path.
type Module struct{}

var spec = modules.Spec{
	"path":    {Kind: modules.String},
	"dest":    {Kind: modules.String}, // Ansible aliases of path
	"name":    {Kind: modules.String},
	"state":   {Kind: modules.String, OneOf: []string{"file", "directory", "absent", "touch", "link"}},
	"mode":    {Kind: modules.String},
	"owner":   {Kind: modules.String},
	"group":   {Kind: modules.String},
	"src":     {Kind: modules.String},
	"recurse": {Kind: modules.Bool},
	"force":   {Kind: modules.Bool},
}

// DirMode is the mode of a directory created without one (0777 under the
// usual 022 umask).
const DirMode os.FileMode = 0o755

type stepKind int

const (
	mkdir stepKind = iota
	touch
	symlink
	remove
	setAttrs
)

// step is one thing Apply does, in order.
type step struct {
	kind   stepKind
	path   string
	target string // symlink target
	want   hostfile.Want
}

type request struct {
	path    string
	state   string
	src     string
	attrs   hostfile.Attrs
	recurse bool
	force   bool
}

func parse(args modules.Args) (request, error) {
	if err := spec.Check(args); err != nil {
		return request{}, err
	}
	r := request{
		state:   args.Str("state", ""),
		src:     args.Str("src", ""),
		recurse: args.Bool("recurse", false),
		force:   args.Bool("force", false),
	}
	n := 0
	for _, k := range []string{"path", "dest", "name"} {
		if v := args.Str(k, ""); v != "" {
			r.path = v
			n++
		}
	}
	switch {
	case n == 0:
		return r, &modules.ArgError{Arg: "path", Msg: "is required"}
	case n > 1:
		return r, &modules.ArgError{Arg: "path", Msg: "give only one of path, dest, name"}
	case !filepath.IsAbs(r.path):
		return r, &modules.ArgError{Arg: "path", Msg: fmt.Sprintf("must be absolute, got %q", r.path)}
	}
	r.path = filepath.Clean(r.path)
	mode, err := hostfile.ModeArg(args["mode"])
	if err != nil {
		return r, &modules.ArgError{Arg: "mode", Msg: err.Error()}
	}
	r.attrs = hostfile.Attrs{Mode: mode, Owner: args.Str("owner", ""), Group: args.Str("group", "")}
	if r.state == "link" && r.src == "" {
		return r, &modules.ArgError{Arg: "src", Msg: "is required with state: link"}
	}
	if r.src != "" && r.state != "" && r.state != "link" {
		return r, &modules.ArgError{Arg: "src", Msg: "only applies to state: link"}
	}
	if r.recurse && r.state != "" && r.state != "directory" {
		return r, &modules.ArgError{Arg: "recurse", Msg: "only applies to state: directory"}
	}
	if r.path == "/" && r.state == "absent" {
		return r, &modules.ArgError{Arg: "path", Msg: "refusing to remove /"}
	}
	return r, nil
}

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	_, err := parse(args)
	return err
}

// Plan compares the path with what the task asks for.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	r, err := parse(args)
	if err != nil {
		return nil, err
	}
	r.attrs.AllowMissing = env != nil && env.Check
	p := &planner{c: &modules.Change{}}
	if err := p.plan(r); err != nil {
		return nil, fmt.Errorf("file %s: %w", r.path, err)
	}
	p.c.Payload = p.steps
	return p.c, nil
}

type planner struct {
	c     *modules.Change
	steps []step
}

func (p *planner) add(s step, op, detail string) {
	p.steps = append(p.steps, s)
	p.c.Add(op, s.path, detail)
}

func (p *planner) plan(r request) error {
	lst, err := hostfile.State(r.path)
	if err != nil {
		return err
	}
	// Like Ansible's follow: yes, file, directory and touch act on what a
	// symlink points to; link and absent act on the link itself.
	cur := lst
	if lst.IsLink() {
		if cur, err = hostfile.StateFollow(r.path); err != nil {
			return err
		}
	}
	state := r.state
	if state == "" {
		state = defaultState(r, lst)
	}
	if lst.IsLink() && state != "link" && state != "absent" {
		if !cur.Exists {
			return fmt.Errorf("is a dangling symlink to %s", lst.LinkTarget)
		}
		if r.path, err = filepath.EvalSymlinks(r.path); err != nil {
			return err
		}
	}
	switch state {
	case "absent":
		if lst.Exists {
			p.add(step{kind: remove, path: r.path}, "-", "")
		}
		return nil
	case "link":
		return p.link(r, lst)
	case "directory":
		if cur.Exists && !cur.IsDir() {
			return fmt.Errorf("exists and is not a directory (%s)", typeName(cur))
		}
		if !cur.Exists {
			return p.mkdirAll(r)
		}
		if err := p.attrs(r.path, r.attrs, cur, DirMode, ""); err != nil {
			return err
		}
		if r.recurse {
			return p.recurse(r)
		}
		return nil
	case "touch":
		if !cur.Exists {
			w, err := r.attrs.Resolve(cur, hostfile.DefaultMode, false)
			if err != nil {
				return err
			}
			p.add(step{kind: touch, path: r.path, want: w}, "+", "file")
			return nil
		}
		return p.attrs(r.path, r.attrs, cur, hostfile.DefaultMode, "")
	default: // file
		if !cur.Exists {
			return errors.New("is absent, cannot continue (use state: touch to create it)")
		}
		if cur.IsDir() {
			return errors.New("is a directory, cannot continue (use state: directory)")
		}
		return p.attrs(r.path, r.attrs, cur, hostfile.DefaultMode, "")
	}
}

// defaultState is Ansible's: keep what the path is; a missing path with
// recurse is a directory, with src a link, else a file (which then fails).
func defaultState(r request, cur hostfile.FileState) string {
	switch {
	case cur.IsDir():
		return "directory"
	case cur.IsLink():
		return "link"
	case cur.Exists:
		return "file"
	case r.recurse:
		return "directory"
	case r.src != "":
		return "link"
	}
	return "file"
}

func (p *planner) attrs(path string, a hostfile.Attrs, cur hostfile.FileState, def os.FileMode, prefix string) error {
	w, err := a.Resolve(cur, def, cur.IsDir())
	if err != nil {
		return err
	}
	if d := w.Diff(cur); len(d) > 0 {
		p.add(step{kind: setAttrs, path: path, want: w}, "~", prefix+strings.Join(d, ", "))
	}
	return nil
}

// mkdirAll plans every missing directory down to r.path; each new one gets
// the mode and owner asked for, as Ansible does.
func (p *planner) mkdirAll(r request) error {
	var missing []string
	for d := r.path; ; d = filepath.Dir(d) {
		st, err := hostfile.StateFollow(d)
		if err != nil {
			return err
		}
		if st.Exists {
			if !st.IsDir() {
				return fmt.Errorf("parent %s is not a directory", d)
			}
			break
		}
		missing = append(missing, d)
	}
	w, err := r.attrs.Resolve(hostfile.FileState{}, DirMode, true)
	if err != nil {
		return err
	}
	if w.Mode == hostfile.KeepMode {
		w.Mode = DirMode
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p.add(step{kind: mkdir, path: missing[i], want: w}, "+", "directory")
	}
	return nil
}

func (p *planner) recurse(r request) error {
	return filepath.WalkDir(r.path, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == r.path {
			return nil
		}
		st, err := hostfile.State(path)
		if err != nil {
			return err
		}
		if st.IsLink() {
			// Only the link's owner can change; a mode would hit its target.
			a := r.attrs
			a.Mode = ""
			return p.attrs(path, a, st, 0, "")
		}
		return p.attrs(path, r.attrs, st, hostfile.DefaultMode, "")
	})
}

func (p *planner) link(r request, cur hostfile.FileState) error {
	w, err := hostfile.Attrs{Owner: r.attrs.Owner, Group: r.attrs.Group}.Resolve(cur, 0, false)
	if err != nil {
		return err
	}
	switch {
	case !cur.Exists:
		p.add(step{kind: symlink, path: r.path, target: r.src, want: w}, "+", "link -> "+r.src)
		return nil
	case cur.IsLink() && cur.LinkTarget == r.src:
		if d := w.Diff(cur); len(d) > 0 {
			p.add(step{kind: setAttrs, path: r.path, want: w}, "~", strings.Join(d, ", "))
		}
		return nil
	case cur.IsLink():
		p.add(step{kind: symlink, path: r.path, target: r.src, want: w}, "~", "link "+cur.LinkTarget+" -> "+r.src)
		return nil
	case cur.IsDir():
		return fmt.Errorf("is a directory, refusing to replace it with a link to %s", r.src)
	case !r.force:
		return fmt.Errorf("is a %s; set force: yes to replace it with a link to %s", typeName(cur), r.src)
	}
	p.add(step{kind: symlink, path: r.path, target: r.src, want: w}, "~", "replace file with link -> "+r.src)
	return nil
}

func typeName(st hostfile.FileState) string {
	switch {
	case st.IsDir():
		return "directory"
	case st.IsLink():
		return "symlink"
	case st.IsRegular():
		return "file"
	}
	return st.Mode.Type().String()
}

// Apply carries out the planned steps in order.
func (Module) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	steps, ok := c.Payload.([]step)
	if !ok {
		return nil, errors.New("file: change has no plan payload")
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return nil, fmt.Errorf("file: %w", err)
		}
	}
	return &modules.Result{Status: modules.StatusChanged, Change: c}, nil
}

func (s step) do() error {
	switch s.kind {
	case mkdir:
		if err := os.Mkdir(s.path, s.want.Mode&hostfile.PermMask); err != nil {
			return err
		}
	case touch:
		f, err := os.OpenFile(s.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, hostfile.DefaultMode)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	case remove:
		if err := os.RemoveAll(s.path); err != nil {
			return err
		}
		return hostfile.SyncDir(filepath.Dir(s.path))
	case symlink:
		// A new link under a temp name renamed over the old one, so the
		// path never goes missing.
		tmp := filepath.Join(filepath.Dir(s.path), "."+filepath.Base(s.path)+".etcdplay-link")
		os.Remove(tmp)
		if err := os.Symlink(s.target, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, s.path); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	// Set explicitly after create: the umask must not decide the mode.
	return s.want.Set(s.path)
}
