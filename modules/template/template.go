// Package template is the "template" module: render a Go template on the
// controller with the host's variables, then write the result on the host
// exactly as copy does. Templates are looked up in <playbook dir>/templates/,
// then the playbook directory, then the templates built into the binary.
package template

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	gotemplate "text/template"

	"github.com/etcdplay/etcdplay/modules"
	copymod "github.com/etcdplay/etcdplay/modules/copy"
	"github.com/etcdplay/etcdplay/templates"
)

func init() { modules.Register("template", Module{}) }

// Module renders and writes a template.
type Module struct{}

// ArgContent carries the rendered text from Resolve to the host.
const ArgContent = "_content"

var spec = modules.Spec{
	"src":    {Kind: modules.String},
	"dest":   {Kind: modules.String, Required: true},
	"mode":   {Kind: modules.String},
	"owner":  {Kind: modules.String},
	"group":  {Kind: modules.String},
	"backup": {Kind: modules.Bool},
	"force":  {Kind: modules.Bool},
	// Set by Resolve in place of src.
	ArgContent:     {Kind: modules.String},
	copymod.ArgSrc: {Kind: modules.String},
}

// Builtin is where templates embedded in the binary come from; a variable
// so tests can point it elsewhere.
var Builtin fs.FS = templates.FS

// Resolve renders src with the host's variables.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	src := args.Str("src", "")
	if src == "" {
		return args, nil
	}
	name, text, err := Load(rc.BaseDir, src)
	if err != nil {
		return nil, &modules.ArgError{Arg: "src", Msg: err.Error()}
	}
	if rc.Render == nil {
		return nil, errors.New("template: no template renderer in the compile context")
	}
	out, err := rc.Render(name, text)
	if err != nil {
		// The renderer's error names the template file and line already.
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	res := modules.Args{}
	for k, v := range args {
		if k != "src" {
			res[k] = v
		}
	}
	res[ArgContent] = out
	res[copymod.ArgSrc] = name
	return res, nil
}

// Load finds a template by name: <base>/templates/<name>, <base>/<name>
// (or an absolute path), then the built-in templates. It returns the path
// it used (builtin:<name> for an embedded one) and the text.
func Load(base, name string) (string, string, error) {
	p, ferr := copymod.Find(base, name, "templates")
	if ferr == nil {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", "", err
		}
		return p, string(b), nil
	}
	if b, err := fs.ReadFile(Builtin, name); err == nil {
		return "builtin:" + name, string(b), nil
	}
	return "", "", fmt.Errorf("%w, and no built-in template %s", ferr, name)
}

// Validate checks the arguments.
func (Module) Validate(args modules.Args) error {
	_, err := parse(args)
	return err
}

func parse(args modules.Args) (copymod.Write, error) {
	if err := spec.Check(args); err != nil {
		return copymod.Write{}, err
	}
	w, err := copymod.ParseWrite(args)
	if err != nil {
		return w, err
	}
	if args.Str("src", "") != "" {
		return w, &modules.ArgError{Arg: "src", Msg: "was not rendered on the controller (the task skipped compile-time resolution)"}
	}
	if _, ok := args[ArgContent]; !ok {
		return w, &modules.ArgError{Arg: "src", Msg: "is required"}
	}
	w.Content = []byte(args.Str(ArgContent, ""))
	return w, nil
}

// Plan compares the host's file with the rendered text.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	w, err := parse(args)
	if err != nil {
		return nil, err
	}
	c, err := copymod.PlanWrite(env, w)
	if err != nil {
		return nil, fmt.Errorf("template to %s: %w", w.Dest, err)
	}
	return c, nil
}

// Apply writes the file atomically.
func (Module) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	res, err := copymod.ApplyWrite(ctx, env, c)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return res, nil
}

// RenderFile loads a template with Load and executes it over data with Go
// templates, strictly (a missing key is an error). Modules that render
// their own files (units, timers) use it, so a playbook's templates/ can
// override any built-in one.
func RenderFile(base, name string, data any) (string, error) {
	_, text, err := Load(base, name)
	if err != nil {
		return "", err
	}
	t, err := gotemplate.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}
