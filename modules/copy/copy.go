// Package copy is the "copy" module: put content (inline, or a file from
// the controller) at a path on the host, atomically, with a mode and owner.
// Arguments follow Ansible's copy module.
package copy

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
)

func init() { modules.Register("copy", Module{}) }

// Module copies content to a host file.
type Module struct{}

var spec = modules.Spec{
	"dest":    {Kind: modules.String, Required: true},
	"content": {Kind: modules.String},
	"src":     {Kind: modules.String},
	"mode":    {Kind: modules.String},
	"owner":   {Kind: modules.String},
	"group":   {Kind: modules.String},
	"backup":  {Kind: modules.Bool},
	"force":   {Kind: modules.Bool},
	// Set by Resolve, not by playbooks: src read on the controller. Binary
	// content travels base64-encoded since the wire format is JSON text.
	ArgContentBase64: {Kind: modules.String},
	ArgSrc:           {Kind: modules.String},
}

// Arguments that Resolve adds in place of src.
const (
	ArgContentBase64 = "_content_base64"
	ArgSrc           = "_src"
)

// maxSrc keeps a src's request, base64 and all, under modules.MaxMessage.
const maxSrc = modules.MaxMessage / 2

// ResolvesAlike: Resolve reads the playbook's files, never the host's
// variables.
func (Module) ResolvesAlike() {}

// Resolve reads src on the controller, from <playbook dir>/files/ first
// and then the playbook directory (absolute paths as given), into the
// arguments, so the host never needs the controller's files.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	src := args.Str("src", "")
	if src == "" {
		return args, nil
	}
	if _, has := args["content"]; has {
		return nil, &modules.ArgError{Arg: "src", Msg: "cannot be used together with content"}
	}
	path, err := Find(rc.BaseDir, src, "files")
	if err != nil {
		return nil, &modules.ArgError{Arg: "src", Msg: err.Error()}
	}
	// The content travels inside the request, as base64 when binary.
	if st, err := os.Stat(path); err == nil && st.Size() > maxSrc {
		return nil, &modules.ArgError{Arg: "src", Msg: fmt.Sprintf("%s is %d MiB; copy carries files up to %d MiB", path, st.Size()>>20, maxSrc>>20)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &modules.ArgError{Arg: "src", Msg: err.Error()}
	}
	out := modules.Args{}
	for k, v := range args {
		if k != "src" {
			out[k] = v
		}
	}
	if utf8.Valid(data) {
		out["content"] = string(data)
	} else {
		out[ArgContentBase64] = base64.StdEncoding.EncodeToString(data)
	}
	out[ArgSrc] = path
	// Ansible copies "src" into a dest ending in "/" under src's name.
	if dest := out.Str("dest", ""); strings.HasSuffix(dest, "/") {
		out["dest"] = dest + filepath.Base(src)
	}
	return out, nil
}

// Find locates a controller file: an absolute path as is, else
// <base>/<sub>/<name>, then <base>/<name>.
func Find(base, name, sub string) (string, error) {
	if filepath.IsAbs(name) {
		return name, checkFile(name)
	}
	var tried []string
	for _, p := range []string{filepath.Join(base, sub, name), filepath.Join(base, name)} {
		if checkFile(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("%s not found (looked in %s)", name, strings.Join(tried, ", "))
}

func checkFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory (copying directories is not supported)", p)
	}
	return nil
}

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	_, err := parse(args)
	return err
}

func parse(args modules.Args) (Write, error) {
	if err := spec.Check(args); err != nil {
		return Write{}, err
	}
	w, err := ParseWrite(args)
	if err != nil {
		return w, err
	}
	_, hasContent := args["content"]
	_, hasB64 := args[ArgContentBase64]
	switch {
	case args.Str("src", "") != "":
		return w, &modules.ArgError{Arg: "src", Msg: "was not read on the controller (the task skipped compile-time resolution)"}
	case !hasContent && !hasB64:
		return w, &modules.ArgError{Arg: "content", Msg: "is required (or src)"}
	case hasB64:
		b, err := base64.StdEncoding.DecodeString(args.Str(ArgContentBase64, ""))
		if err != nil {
			return w, &modules.ArgError{Arg: ArgContentBase64, Msg: err.Error()}
		}
		w.Content = b
	default:
		w.Content = []byte(args.Str("content", ""))
	}
	return w, nil
}

// ParseWrite reads the arguments copy and template share (dest, mode,
// owner, group, backup, force); the caller fills in Content.
func ParseWrite(args modules.Args) (Write, error) {
	w := Write{
		Dest:   args.Str("dest", ""),
		Backup: args.Bool("backup", false),
		Force:  args.Bool("force", true),
	}
	if !filepath.IsAbs(w.Dest) {
		return w, &modules.ArgError{Arg: "dest", Msg: fmt.Sprintf("must be an absolute path, got %q", w.Dest)}
	}
	if strings.HasSuffix(w.Dest, "/") {
		return w, &modules.ArgError{Arg: "dest", Msg: "names a directory; give the file's full path"}
	}
	mode, err := hostfile.ModeArg(args["mode"])
	if err != nil {
		return w, &modules.ArgError{Arg: "mode", Msg: err.Error()}
	}
	w.Attrs = hostfile.Attrs{Mode: mode, Owner: args.Str("owner", ""), Group: args.Str("group", "")}
	return w, nil
}

// Plan compares the host's file with the content.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	w, err := parse(args)
	if err != nil {
		return nil, err
	}
	c, err := PlanWrite(env, w)
	if err != nil {
		return nil, fmt.Errorf("copy to %s: %w", w.Dest, err)
	}
	return c, nil
}

// Apply writes the file atomically.
func (Module) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	res, err := ApplyWrite(ctx, env, c)
	if err != nil {
		return nil, fmt.Errorf("copy: %w", err)
	}
	return res, nil
}
