package hostfile

import (
	"fmt"
	"os"
)

// Attrs are the mode, owner and group a task asks for; "" leaves each as
// it is (or as the default for a new path).
type Attrs struct {
	Mode  string // as returned by ModeArg
	Owner string
	Group string
	// AllowMissing lets an owner or group that does not exist yet resolve
	// to PendingID. Check mode sets it: on a bare host the user a playbook
	// creates two tasks earlier is not there yet, and the plan should say
	// what apply would do rather than fail.
	AllowMissing bool
}

// PendingID stands for an owner or group that an earlier task creates. It
// only ever appears in check-mode plans, which are never applied.
const PendingID = -2

// Want is Attrs resolved for one path: concrete bits and ids, KeepMode and
// -1 where the task asked for nothing.
type Want struct {
	Mode     os.FileMode
	UID, GID int
	// Owner and Group name the ids for plan messages: a PendingID has no
	// other name, and the name a task asked for reads better than the
	// one its id maps to on the controller running a table test.
	Owner, Group string
}

// Resolve turns a into concrete values for a path in state cur (symbolic
// modes are relative to cur's bits, or to def when cur does not exist).
func (a Attrs) Resolve(cur FileState, def os.FileMode, isDir bool) (Want, error) {
	w := Want{Mode: KeepMode, UID: -1, GID: -1}
	if a.Mode != "" {
		base := def
		if cur.Exists {
			base = cur.Perm()
		}
		m, err := ParseMode(a.Mode, base, isDir)
		if err != nil {
			return w, err
		}
		w.Mode = m
	}
	var err error
	w.Owner, w.Group = a.Owner, a.Group
	if a.Owner != "" {
		if w.UID, err = LookupUID(a.Owner); err != nil {
			if !a.AllowMissing {
				return w, err
			}
			w.UID = PendingID
		}
	}
	if a.Group != "" {
		if w.GID, err = LookupGID(a.Group); err != nil {
			if !a.AllowMissing {
				return w, err
			}
			w.GID = PendingID
		}
	}
	return w, nil
}

// Diff lists what differs between cur (an existing path) and w, as plan
// details such as "mode 0644->0600" or "owner root->etcd".
func (w Want) Diff(cur FileState) []string {
	var out []string
	if w.Mode != KeepMode && !cur.IsLink() && cur.Perm() != w.Mode {
		out = append(out, fmt.Sprintf("mode %s->%s", FormatMode(cur.Perm()), FormatMode(w.Mode)))
	}
	if w.UID == PendingID {
		out = append(out, fmt.Sprintf("owner %s->%s (not yet created)", UserName(cur.UID), w.Owner))
	} else if w.UID >= 0 && cur.UID != w.UID {
		out = append(out, fmt.Sprintf("owner %s->%s", UserName(cur.UID), or(w.Owner, UserName, w.UID)))
	}
	if w.GID == PendingID {
		out = append(out, fmt.Sprintf("group %s->%s (not yet created)", GroupName(cur.GID), w.Group))
	} else if w.GID >= 0 && cur.GID != w.GID {
		out = append(out, fmt.Sprintf("group %s->%s", GroupName(cur.GID), or(w.Group, GroupName, w.GID)))
	}
	return out
}

// or is name, or else what lookup calls id.
func or(name string, lookup func(int) string, id int) string {
	if name != "" {
		return name
	}
	return lookup(id)
}

// Set applies w to path (no following of a final symlink for the owner;
// a symlink's own mode cannot be set on Linux and is left alone).
func (w Want) Set(path string) error {
	if w.UID >= 0 || w.GID >= 0 {
		if err := os.Lchown(path, w.UID, w.GID); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	if w.Mode != KeepMode {
		fi, err := os.Lstat(path)
		if err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if err := os.Chmod(path, w.Mode&PermMask); err != nil {
				return fmt.Errorf("chmod %s: %w", path, err)
			}
		}
	}
	return nil
}
