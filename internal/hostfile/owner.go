package hostfile

import (
	"fmt"
	"os/user"
	"strconv"
)

// LookupUID turns an owner argument (a name or a number) into a uid.
func LookupUID(owner string) (int, error) {
	if n, err := strconv.Atoi(owner); err == nil && n >= 0 {
		return n, nil
	}
	u, err := user.Lookup(owner)
	if err != nil {
		return -1, fmt.Errorf("owner %q: %w", owner, err)
	}
	return strconv.Atoi(u.Uid)
}

// LookupGID turns a group argument (a name or a number) into a gid.
func LookupGID(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return -1, fmt.Errorf("group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}

// UserName names uid for a plan line, falling back to the number.
func UserName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// GroupName names gid for a plan line, falling back to the number.
func GroupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}
