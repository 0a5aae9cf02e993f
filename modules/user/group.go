package user

import (
	"context"
	"fmt"
	"strconv"

	"github.com/etcdplay/etcdplay/modules"
)

// GroupModule manages a local group.
type GroupModule struct{}

var groupSpec = modules.Spec{
	"name":   {Kind: modules.String, Required: true},
	"state":  {Kind: modules.String, OneOf: []string{"present", "absent"}},
	"system": {Kind: modules.Bool},
	"gid":    {Kind: modules.Int},
}

// Validate checks the arguments.
func (GroupModule) Validate(args modules.Args) error {
	if err := groupSpec.Check(args); err != nil {
		return err
	}
	return validName(args.Str("name", ""))
}

// Plan compares the group with the arguments.
func (m GroupModule) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	if err := m.Validate(args); err != nil {
		return nil, err
	}
	cur, exists, err := lookupGroupByName(args.Str("name", ""))
	if err != nil {
		return nil, err
	}
	var have *Group
	if exists {
		have = &cur
	}
	return PlanGroup(args, have), nil
}

// PlanGroup plans the group args describe (the group module's arguments)
// against cur, nil when there is none: a groupadd, groupmod or groupdel,
// or nothing. ApplyAccounts applies it.
func PlanGroup(args modules.Args, cur *Group) *modules.Change {
	name := args.Str("name", "")
	c := &modules.Change{}
	target := "group " + name
	_, hasGID := args["gid"]
	gid := args.Int("gid", -1)
	switch {
	case args.Str("state", "present") == "absent":
		if cur != nil {
			c.Add("-", target, "")
			c.Payload = []run{{[]string{"groupdel", name}}}
		}
	case cur == nil:
		argv := []string{"groupadd"}
		detail := ""
		if args.Bool("system", false) {
			argv = append(argv, "-r")
			detail = "system"
		}
		if hasGID {
			argv = append(argv, "-g", strconv.Itoa(gid))
			if detail != "" {
				detail += ", "
			}
			detail += "gid " + strconv.Itoa(gid)
		}
		c.Add("+", target, detail)
		c.Payload = []run{{append(argv, name)}}
	case hasGID && gid != cur.GID:
		c.Add("~", target, fmt.Sprintf("gid %d->%d", cur.GID, gid))
		c.Payload = []run{{[]string{"groupmod", "-g", strconv.Itoa(gid), name}}}
	}
	return c
}

// lookupGroupByName is LookupGroup without the numeric fallback: a group
// named "1000" is not the group with gid 1000.
func lookupGroupByName(name string) (Group, bool, error) {
	g, ok, err := LookupGroup(name)
	if ok && g.Name != name {
		return Group{}, false, err
	}
	return g, ok, err
}

// Apply runs the planned group command.
func (GroupModule) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	return UserModule{}.Apply(ctx, env, c)
}
