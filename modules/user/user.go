// Package user holds the "user" and "group" modules: local accounts and
// groups managed with useradd/usermod/userdel and groupadd/groupmod/groupdel,
// with Ansible's argument names.
package user

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/etcdplay/etcdplay/modules"
)

func init() {
	modules.Register("user", UserModule{})
	modules.Register("group", GroupModule{})
}

// UserModule manages a local account.
type UserModule struct{}

var userSpec = modules.Spec{
	"name":        {Kind: modules.String, Required: true},
	"state":       {Kind: modules.String, OneOf: []string{"present", "absent"}},
	"system":      {Kind: modules.Bool},
	"shell":       {Kind: modules.String},
	"home":        {Kind: modules.String},
	"create_home": {Kind: modules.Bool},
	"createhome":  {Kind: modules.Bool}, // Ansible's older spelling
	"group":       {Kind: modules.String},
	"uid":         {Kind: modules.Int},
	"comment":     {Kind: modules.String},
	"remove":      {Kind: modules.Bool},
}

// run is one account command Apply executes.
type run struct{ argv []string }

// Validate checks the arguments.
func (UserModule) Validate(args modules.Args) error {
	if err := userSpec.Check(args); err != nil {
		return err
	}
	if _, a := args["create_home"]; a {
		if _, b := args["createhome"]; b {
			return &modules.ArgError{Arg: "createhome", Msg: "give only one of create_home and createhome"}
		}
	}
	return validName(args.Str("name", ""))
}

func validName(name string) error {
	if name == "" || strings.ContainsAny(name, ": \t\n/") || strings.HasPrefix(name, "-") {
		return &modules.ArgError{Arg: "name", Msg: fmt.Sprintf("%q is not a valid user or group name", name)}
	}
	return nil
}

// Plan compares the account with the arguments.
func (m UserModule) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	if err := m.Validate(args); err != nil {
		return nil, err
	}
	cur, exists, err := LookupAccount(args.Str("name", ""))
	if err != nil {
		return nil, err
	}
	var have *Account
	if exists {
		have = &cur
	}
	return PlanAccount(args, have, LookupGroup, env.Check)
}

// PlanAccount plans the account args describe (the user module's
// arguments) against cur, nil when there is none: a useradd, usermod or
// userdel, or nothing. group looks up a primary group by name; one it
// does not find is an error unless groupPending (under --check, or when
// an earlier step of the same plan creates it). Modules that own an
// account build on it and apply the change with ApplyAccounts.
func PlanAccount(args modules.Args, cur *Account, group func(string) (Group, bool, error), groupPending bool) (*modules.Change, error) {
	name := args.Str("name", "")
	c := &modules.Change{}
	target := "user " + name
	if args.Str("state", "present") == "absent" {
		if cur != nil {
			argv := []string{"userdel"}
			if args.Bool("remove", false) {
				argv = append(argv, "-r")
			}
			c.Add("-", target, "")
			c.Payload = []run{{append(argv, name)}}
		}
		return c, nil
	}
	if cur == nil {
		argv, detail := useradd(args)
		c.Add("+", target, detail)
		c.Payload = []run{{argv}}
		return c, nil
	}
	flags, changes, err := usermod(args, *cur, group, groupPending)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	if len(flags) > 0 {
		c.Add("~", target, strings.Join(changes, ", "))
		c.Payload = []run{{append(append([]string{"usermod"}, flags...), name)}}
	}
	return c, nil
}

func useradd(args modules.Args) (argv []string, detail string) {
	argv = []string{"useradd"}
	var d []string
	if args.Bool("system", false) {
		argv = append(argv, "-r")
		d = append(d, "system")
	}
	if _, ok := args["uid"]; ok {
		// Through strconv, not Str: a uid that crossed JSON is a float64,
		// and fmt prints 1000000.0 as 1e+06.
		v := strconv.Itoa(args.Int("uid", 0))
		argv = append(argv, "-u", v)
		d = append(d, "uid "+v)
	}
	if v := args.Str("group", ""); v != "" {
		argv = append(argv, "-g", v)
		d = append(d, "group "+v)
	}
	if v := args.Str("home", ""); v != "" {
		argv = append(argv, "-d", v)
		d = append(d, "home "+v)
	}
	createHome := args.Bool("create_home", args.Bool("createhome", true))
	if createHome {
		argv = append(argv, "-m")
	} else {
		argv = append(argv, "-M")
	}
	if v := args.Str("shell", ""); v != "" {
		argv = append(argv, "-s", v)
		d = append(d, "shell "+v)
	}
	if v := args.Str("comment", ""); v != "" {
		argv = append(argv, "-c", v)
	}
	return append(argv, args.Str("name", "")), strings.Join(d, ", ")
}

// usermod lists the flags that bring cur to args and the plan details.
func usermod(args modules.Args, cur Account, group func(string) (Group, bool, error), groupPending bool) (flags, changes []string, err error) {
	if v, ok := args["uid"]; ok && v != nil {
		if uid := args.Int("uid", -1); uid != cur.UID {
			flags = append(flags, "-u", strconv.Itoa(uid))
			changes = append(changes, fmt.Sprintf("uid %d->%d", cur.UID, uid))
		}
	}
	if g := args.Str("group", ""); g != "" {
		grp, ok, err := group(g)
		switch {
		case err != nil:
			return nil, nil, err
		case !ok && !groupPending:
			return nil, nil, fmt.Errorf("group %s does not exist", g)
		case !ok || grp.GID != cur.GID:
			flags = append(flags, "-g", g)
			changes = append(changes, fmt.Sprintf("group %s->%s", GroupByID(cur.GID), g))
		}
	}
	for _, f := range []struct{ arg, flag, cur string }{
		{"home", "-d", cur.Home},
		{"shell", "-s", cur.Shell},
		{"comment", "-c", cur.Comment},
	} {
		if _, ok := args[f.arg]; !ok {
			continue
		}
		if v := args.Str(f.arg, ""); v != f.cur {
			flags = append(flags, f.flag, v)
			changes = append(changes, fmt.Sprintf("%s %s->%s", f.arg, f.cur, v))
		}
	}
	return flags, changes, nil
}

// Apply runs the planned account command.
func (UserModule) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	if err := ApplyAccounts(ctx, c); err != nil {
		return nil, err
	}
	return &modules.Result{Status: modules.StatusChanged, Change: c}, nil
}

// ApplyAccounts runs the commands of changes made by PlanAccount and
// PlanGroup, in order.
func ApplyAccounts(ctx context.Context, changes ...*modules.Change) error {
	for _, c := range changes {
		if err := applyOne(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func applyOne(ctx context.Context, c *modules.Change) error {
	runs, ok := c.Payload.([]run)
	if !ok {
		return errors.New("change has no plan payload")
	}
	for _, r := range runs {
		cmd := exec.CommandContext(ctx, r.argv[0], r.argv[1:]...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(r.argv, " "), err, strings.TrimSpace(stderr.String()))
		}
	}
	return nil
}
