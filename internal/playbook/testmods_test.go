package playbook

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/etcdplay/etcdplay/modules"
)

// The real modules live in modules/<name> and register themselves from
// their packages; this test binary registers small stand-ins with the same
// argument specs, so the compiler's use of Validate and Resolve is tested
// against the registry it really uses.

type specModule struct{ spec modules.Spec }

func (m specModule) Validate(a modules.Args) error { return m.spec.Check(a) }
func (specModule) Plan(context.Context, *modules.Env, modules.Args) (*modules.Change, error) {
	return &modules.Change{}, nil
}
func (specModule) Apply(context.Context, *modules.Env, *modules.Change) (*modules.Result, error) {
	return &modules.Result{Status: modules.StatusOK}, nil
}

// copyModule resolves src (a file under files/ beside the playbook) into
// content on the controller, like the real one.
type copyModule struct{ specModule }

func (copyModule) Resolve(a modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	src := a.Str("src", "")
	if src == "" {
		return a, nil
	}
	data, err := os.ReadFile(filepath.Join(rc.BaseDir, "files", src))
	if err != nil {
		return nil, &modules.ArgError{Arg: "src", Msg: fmt.Sprintf("no file %s under files/", src)}
	}
	out := modules.Args{}
	for k, v := range a {
		if k != "src" {
			out[k] = v
		}
	}
	content, err := rc.Render(src, string(data))
	if err != nil {
		return nil, err
	}
	out["content"] = content
	return out, nil
}

func init() {
	str := modules.Param{Kind: modules.String}
	modules.Register("command", specModule{modules.Spec{
		"cmd": {Kind: modules.String, Required: true}, "creates": str, "removes": str, "chdir": str}})
	modules.Register("file", specModule{modules.Spec{
		"path":  {Kind: modules.String, Required: true},
		"state": {Kind: modules.String, OneOf: []string{"file", "directory", "absent", "touch"}},
		"mode":  str, "owner": str, "group": str}})
	modules.Register("copy", copyModule{specModule{modules.Spec{
		"dest": {Kind: modules.String, Required: true}, "content": str, "src": str, "mode": str,
		"owner": str, "group": str}}})
	modules.Register("systemd", specModule{modules.Spec{
		"name":          str,
		"state":         {Kind: modules.String, OneOf: []string{"started", "stopped", "restarted", "reloaded"}},
		"enabled":       {Kind: modules.Bool},
		"daemon_reload": {Kind: modules.Bool}}})
	modules.Register("ping", specModule{modules.Spec{}})
	modules.Register("members", specModule{modules.Spec{
		"endpoints": {Kind: modules.List, Required: true}, "port": {Kind: modules.Int}}})
}

// clusterModule fails Resolve with problems about variables, as the etcd
// modules do for a duplicate member name: the compiler must report each
// once, not once per task and host.
type clusterModule struct{ specModule }

type testVarError struct{ name, msg string }

func (e *testVarError) Error() string    { return "variable " + e.name + ": " + e.msg }
func (e *testVarError) Variable() string { return e.name }

func (clusterModule) Resolve(a modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	return nil, fmt.Errorf("cluster on %s: %w", rc.Host, errors.Join(
		&testVarError{"cluster_name", `"a" is also the name of another member`},
		&testVarError{"cluster_port", "2379 is used twice"}))
}

func init() { modules.Register("cluster", clusterModule{specModule{modules.Spec{}}}) }
