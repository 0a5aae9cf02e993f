package etcd_service

import (
	"bytes"
	"fmt"
	"io/fs"
	"strings"

	"github.com/etcdplay/etcdplay/internal/diff"
	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/user"
)

// want is the desired state, from the resolved arguments.
type want struct {
	Name     string // systemd unit name
	UnitPath string
	Unit     []byte
	User     string
	Group    string
	Home     string
	Shell    string
	Dirs     []string
	Enabled  bool
	State    string // started, present, stopped
	Marker   string // a restore's in-progress marker; "" checks none

	StartAfter []string // peer URLs of the members before this one
	DataDir    string
	ConfigFile string
}

// step is one thing Apply does, in order.
type step int

const (
	stepAccounts step = iota
	stepDirs
	stepUnit
	stepReload
	stepEnable
	stepDisable
	stepStart
	stepStop
)

// payload is what Plan hands to Apply.
type payload struct {
	Want  *want
	Steps []step
	// WaitFor are the peer URLs to wait for before starting a new
	// cluster's member.
	WaitFor []string
	// NewUnit: the unit file is new to systemd, which should load it
	// without a daemon-reload; Apply makes sure.
	NewUnit bool
	// Accounts are the user module's changes for etcd's group and user,
	// applied in order by stepAccounts.
	Accounts []*modules.Change
}

// plan compares st with w. It is pure so every branch is table-tested.
func plan(st *hostState, w *want) (*modules.Change, error) {
	c := &modules.Change{}
	p := &payload{Want: w}
	add := func(s step, op, target, detail string) {
		p.Steps = append(p.Steps, s)
		c.Add(op, target, detail)
	}

	grp, usr := st.Group, st.User
	group := user.PlanGroup(modules.Args{"name": w.Group, "system": true}, grp)
	// The account is the user module's, so etcd's user is made and kept
	// as a playbook's `user` task would make it.
	account, err := user.PlanAccount(modules.Args{"name": w.User, "system": true, "group": w.Group,
		"home": w.Home, "create_home": false, "shell": w.Shell}, usr, st.lookupGroup, grp == nil)
	if err != nil {
		return nil, err
	}
	for _, ch := range []*modules.Change{group, account} {
		if !ch.Empty() {
			p.Accounts = append(p.Accounts, ch)
			c.Actions = append(c.Actions, ch.Actions...)
		}
	}
	if len(p.Accounts) > 0 {
		p.Steps = append(p.Steps, stepAccounts)
	}

	// The ids of an account the accounts step makes are not known yet.
	dir := hostfile.Want{Mode: dirMode, UID: hostfile.PendingID, GID: hostfile.PendingID, Owner: w.User, Group: w.Group}
	if usr != nil {
		dir.UID = usr.UID
	}
	if grp != nil {
		dir.GID = grp.GID
	}
	dirsChange := false
	for _, d := range w.Dirs {
		cur := st.Dirs[d]
		switch {
		case cur.Exists && !cur.IsDir():
			return nil, fmt.Errorf("%s exists and is not a directory", d)
		case !cur.Exists:
			c.Add("+", d, fmt.Sprintf("directory %s %s:%s", hostfile.FormatMode(dirMode), w.User, w.Group))
			dirsChange = true
		default:
			if diffs := dir.Diff(cur); len(diffs) > 0 {
				c.Add("~", d, strings.Join(diffs, ", "))
				dirsChange = true
			}
		}
	}
	if dirsChange {
		p.Steps = append(p.Steps, stepDirs)
	}

	// A unit file systemd has never loaded is read when first asked for,
	// without a daemon-reload (which costs systemd about 0.3 s of CPU on
	// every host of a cold run); Apply checks that it did and reloads if
	// not. A unit systemd holds already, from this file or another of the
	// same name, needs the reload.
	reload := st.Systemd.NeedDaemonReload
	if w.Unit != nil && (!st.UnitSeen || !bytes.Equal(st.Unit, w.Unit)) {
		op, detail := "~", "systemd unit changed"
		switch {
		case !st.UnitSeen && st.Systemd.LoadState == "not-found":
			op, detail = "+", "systemd unit (a new unit needs no daemon-reload: systemd reads it when first asked)"
			p.NewUnit = true
		case !st.UnitSeen:
			op, detail = "+", "systemd unit, in place of the "+w.Name+" systemd has loaded"
			reload = true
		default:
			reload = true
		}
		add(stepUnit, op, w.UnitPath, detail)
		c.Diffs = append(c.Diffs, diff.NewFileDiff(w.UnitPath, string(st.Unit), string(w.Unit), false))
	}
	if reload {
		add(stepReload, "!", "systemctl daemon-reload", "")
	}
	// A static, generated or alias unit has no enablement to change (as
	// the systemd module decides it). A member must come back after a
	// reboot, so only "enabled" is: enabled-runtime is made persistent.
	if fixed, _ := st.Systemd.Enabledness(); !fixed {
		enabled := st.Systemd.UnitFileState == "enabled"
		switch {
		case w.Enabled && !enabled:
			add(stepEnable, "!", "enable "+w.Name, "start at boot")
		case !w.Enabled && enabled:
			add(stepDisable, "!", "disable "+w.Name, "")
		}
	}

	switch {
	case w.State == "started" && !st.Systemd.Active() && st.Marker != nil:
		return nil, fmt.Errorf("not starting etcd: a restore stopped this member and did not finish (its controller was killed or cut off), "+
			"so members may hold different data and would start as two clusters. %s says: %s. "+
			"Run the restore again with the same snapshot to finish it (it re-stages every member), or, to go back, put the old data dir back on every host and remove %s",
			w.Marker, bytes.Join(bytes.Fields(st.Marker), []byte(" ")), w.Marker)
	case w.State == "started" && !st.Systemd.Active():
		// Type=notify: a blocking start of the first member of a new
		// cluster would wait for a quorum that cannot form until its
		// peers start too.
		detail := "without waiting (--no-block); etcd_health waits for the cluster"
		if st.NewClusterMember && len(w.StartAfter) > 0 {
			p.WaitFor = w.StartAfter
			detail = fmt.Sprintf("once %s serve (a new cluster's members start in order; at most %s), without waiting (--no-block); etcd_health waits for the cluster",
				strings.Join(w.StartAfter, ", "), startAfterLimit)
		}
		add(stepStart, "!", "start "+w.Name, detail)
	case w.State == "stopped" && st.Systemd.Active():
		add(stepStop, "!", "stop "+w.Name, "")
	}

	if len(c.Actions) == 0 {
		return &modules.Change{}, nil
	}
	c.Payload = p
	return c, nil
}

// dirMode is the data directory's mode: etcd itself insists on 0700.
const dirMode fs.FileMode = 0o700
