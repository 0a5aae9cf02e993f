// Package command is the "command" module: run a program on the host,
// without a shell, unless a creates/removes guard says it has already done
// its job. Arguments and behaviour follow Ansible's command module.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/etcdplay/etcdplay/modules"
)

func init() { modules.Register("command", Module{}) }

// Module runs a command.
type Module struct{}

var spec = modules.Spec{
	"cmd":               {Kind: modules.Any},
	"argv":              {Kind: modules.List},
	"chdir":             {Kind: modules.String},
	"creates":           {Kind: modules.String},
	"removes":           {Kind: modules.String},
	"stdin":             {Kind: modules.String},
	"stdin_add_newline": {Kind: modules.Bool},
	"strip_empty_ends":  {Kind: modules.Bool},
}

// job is what Plan hands to Apply.
type job struct {
	argv           []string
	chdir          string
	stdin          string
	stripEmptyEnds bool
}

// Validate checks that there is exactly one command, as a string or a list.
func (Module) Validate(args modules.Args) error {
	if err := spec.Check(args); err != nil {
		return err
	}
	_, err := argv(args)
	return err
}

func argv(args modules.Args) ([]string, error) {
	cmd, hasCmd := args["cmd"]
	_, hasArgv := args["argv"]
	if hasCmd && hasArgv {
		return nil, &modules.ArgError{Arg: "argv", Msg: "cannot be used together with cmd"}
	}
	var words []string
	switch c := cmd.(type) {
	case nil:
		if !hasArgv {
			return nil, &modules.ArgError{Arg: "cmd", Msg: "is required (or argv)"}
		}
		words = args.Strings("argv")
	case string:
		var err error
		if words, err = Split(c); err != nil {
			return nil, &modules.ArgError{Arg: "cmd", Msg: err.Error()}
		}
	case []any:
		words = args.Strings("cmd")
	default:
		return nil, &modules.ArgError{Arg: "cmd", Msg: fmt.Sprintf("must be a string or a list, got %T", cmd)}
	}
	if len(words) == 0 || words[0] == "" {
		return nil, &modules.ArgError{Arg: "cmd", Msg: "is empty"}
	}
	return words, nil
}

// Plan reports "! run: <cmd>" unless a guard holds. Relative guard paths
// are relative to chdir, as in Ansible.
func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	words, err := argv(args)
	if err != nil {
		return nil, err
	}
	chdir := args.Str("chdir", "")
	if p := args.Str("creates", ""); p != "" {
		if ok, err := exists(chdir, p); err != nil || ok {
			return &modules.Change{}, err
		}
	}
	if p := args.Str("removes", ""); p != "" {
		if ok, err := exists(chdir, p); err != nil || !ok {
			return &modules.Change{}, err
		}
	}
	stdin := args.Str("stdin", "")
	if _, has := args["stdin"]; has && args.Bool("stdin_add_newline", true) {
		stdin += "\n"
	}
	c := &modules.Change{Payload: job{
		argv:           words,
		chdir:          chdir,
		stdin:          stdin,
		stripEmptyEnds: args.Bool("strip_empty_ends", true),
	}}
	c.Add("!", "run", Quote(words))
	return c, nil
}

// exists reports whether the glob pattern p matches anything.
func exists(chdir, p string) (bool, error) {
	if !filepath.IsAbs(p) && chdir != "" {
		p = filepath.Join(chdir, p)
	}
	m, err := filepath.Glob(p)
	if err != nil {
		return false, fmt.Errorf("guard %q: %w", p, err)
	}
	return len(m) > 0, nil
}

// Apply runs the command. A non-zero exit is a failed task whose Data still
// carries stdout, stderr and rc for register.
func (Module) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	j, ok := c.Payload.(job)
	if !ok {
		return nil, errors.New("command: change has no plan payload")
	}
	cmd := exec.CommandContext(ctx, j.argv[0], j.argv[1:]...)
	// A cancelled run kills the command's whole process group: a
	// grandchild holding stdout open (a daemon started by a script) would
	// otherwise keep Wait, and the agent, waiting. WaitDelay bounds the
	// wait for anything that left the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Dir = j.chdir
	if j.stdin != "" {
		cmd.Stdin = strings.NewReader(j.stdin)
	}
	stdout, stderr := &capped{max: maxOutput}, &capped{max: maxOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	rc := 0
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		rc = exitErr.ExitCode()
	case err != nil:
		return nil, fmt.Errorf("command %s: %w", Quote(j.argv), err)
	}
	out, errOut := stdout.b.String(), stderr.b.String()
	if j.stripEmptyEnds {
		out, errOut = strings.TrimRight(out, "\r\n"), strings.TrimRight(errOut, "\r\n")
	}
	res := &modules.Result{
		Status: modules.StatusChanged,
		Change: c,
		Data: map[string]any{
			"cmd":    j.argv,
			"stdout": out,
			"stderr": errOut,
			"rc":     rc,
		},
	}
	for name, w := range map[string]*capped{"stdout": stdout, "stderr": stderr} {
		if w.dropped > 0 {
			res.Data[name+"_dropped_bytes"] = w.dropped
		}
	}
	if rc != 0 {
		res.Status = modules.StatusFailed
		res.Msg = fmt.Sprintf("non-zero return code %d", rc)
		if errOut != "" {
			res.Msg += ": " + lastLine(errOut)
		}
	}
	return res, nil
}

// maxOutput is how much of a command's stdout, and of its stderr, a
// result keeps: both fit in one message (modules.MaxMessage).
const maxOutput = modules.MaxMessage / 4

// capped keeps the first max bytes written and counts the rest, so a
// command that prints without end fills neither the agent's memory nor a
// result the controller would refuse. The command never sees a write fail.
type capped struct {
	b       bytes.Buffer
	max     int
	dropped int64
}

func (c *capped) Write(p []byte) (int, error) {
	keep := min(len(p), max(c.max-c.b.Len(), 0))
	c.b.Write(p[:keep])
	c.dropped += int64(len(p) - keep)
	return len(p), nil
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Quote prints argv so that Split gives it back: words that need it are
// single-quoted.
func Quote(argv []string) string {
	out := make([]string, len(argv))
	for i, w := range argv {
		if w != "" && !strings.ContainsAny(w, " \t\n\"'\\$`#*?;&|<>(){}[]~") {
			out[i] = w
			continue
		}
		out[i] = "'" + strings.ReplaceAll(w, "'", `'"'"'`) + "'"
	}
	return strings.Join(out, " ")
}
