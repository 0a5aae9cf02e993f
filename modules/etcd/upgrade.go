package etcd

import "fmt"

// The etcd upgrade path, as etcd's upgrade guides state it
// (etcd.io/docs/v3.6/upgrades/): a running cluster moves one minor release
// at a time, member by member; each member of the new minor runs beside
// the old ones until the last is replaced, and the cluster version (the
// feature set the cluster speaks) moves up only when every member runs the
// new minor. So:
//
//   - patch releases of one minor may be mixed and changed freely;
//   - a minor jump is one minor up; skipping a minor is not supported (the
//     new minor only knows how to join a cluster of the previous one);
//   - going down a minor needs etcd's downgrade API (3.6 and later), never
//     a plain binary swap: the data written by the newer minor may not be
//     readable by the older one;
//   - 3.5 -> 3.6 needs 3.5.26 or later first: v3.6 members may add a
//     learner during the join that earlier 3.5 patches refuse ("too many
//     learner members in cluster"), and v3.5.26 carries the fixes that let
//     a mixed 3.5/3.6 cluster run (kubespray enforces the same floor).

// JumpRule is one rule of the table: it applies to a jump from From's
// minor to To's minor.
type jumpRule struct {
	fromMinor, toMinor int
	minPatch           int // the lowest From patch allowed
	why                string
}

var jumpRules = []jumpRule{
	{fromMinor: 5, toMinor: 6, minPatch: 26, why: "3.6 joins a 3.5 cluster only from v3.5.26 on (learner handling and mixed-version fixes)"},
}

// MinorJumpError is a refused version change; Next is the allowed next
// step, when there is one.
type MinorJumpError struct {
	From, To Version
	Next     string
	Reason   string
}

func (e *MinorJumpError) Error() string {
	s := fmt.Sprintf("etcd %s -> %s is not a supported upgrade: %s", e.From, e.To, e.Reason)
	if e.Next != "" {
		s += "; " + e.Next
	}
	return s
}

// CheckJump says why the move of a running cluster from from to to is
// allowed, or refuses it naming the next allowed step. A downgrade of a
// minor is refused here (it goes through etcd's downgrade API instead).
func CheckJump(from, to Version) (string, error) {
	switch {
	case from == to:
		return "same version", nil
	case from.Major != to.Major:
		return "", &MinorJumpError{From: from, To: to, Reason: "a major version change"}
	case from.Minor == to.Minor && from.Less(to):
		return fmt.Sprintf("patch upgrade within %d.%d: patch releases of one minor mix freely", to.Major, to.Minor), nil
	case from.Minor == to.Minor:
		return fmt.Sprintf("patch downgrade within %d.%d: patch releases of one minor mix freely", to.Major, to.Minor), nil
	case to.Minor < from.Minor:
		return "", &MinorJumpError{From: from, To: to, Reason: "a lower minor version: a plain binary swap cannot read what the newer minor wrote",
			Next: "a downgrade goes through etcd's downgrade API, one minor at a time: ask for it with -e allow_downgrade=true"}
	case to.Minor > from.Minor+1:
		return "", &MinorJumpError{From: from, To: to, Reason: "etcd upgrades one minor version at a time",
			Next: fmt.Sprintf("upgrade to the latest v%d.%d.x first", from.Major, from.Minor+1)}
	}
	for _, r := range jumpRules {
		if r.fromMinor == from.Minor && r.toMinor == to.Minor && from.Patch < r.minPatch {
			return "", &MinorJumpError{From: from, To: to, Reason: r.why,
				Next: fmt.Sprintf("upgrade to v%d.%d.%d or a later %d.%d patch first", from.Major, from.Minor, r.minPatch, from.Major, from.Minor)}
		}
	}
	why := fmt.Sprintf("one minor up (%d.%d -> %d.%d)", from.Major, from.Minor, to.Major, to.Minor)
	for _, r := range jumpRules {
		if r.fromMinor == from.Minor && r.toMinor == to.Minor {
			why += fmt.Sprintf("; the cluster runs %s, at least v%d.%d.%d", from, from.Major, from.Minor, r.minPatch)
		}
	}
	return why, nil
}

// CheckDowngrade says why a one-minor downgrade through etcd's downgrade
// API is allowed, or refuses it. The API exists from 3.6 on: the cluster
// is told the target first (downgrade validate, downgrade enable), its
// storage moves to the older minor's format, and only then do members get
// the older binary, one at a time.
func CheckDowngrade(from, to Version) (string, error) {
	switch {
	case from.Major != to.Major || to.Minor != from.Minor-1:
		return "", &MinorJumpError{From: from, To: to, Reason: "etcd downgrades one minor version at a time",
			Next: fmt.Sprintf("downgrade to the latest v%d.%d.x first", from.Major, from.Minor-1)}
	case !from.AtLeast(3, 6):
		return "", &MinorJumpError{From: from, To: to, Reason: "etcd's downgrade API exists from 3.6 on"}
	}
	return fmt.Sprintf("one minor down (%d.%d -> %d.%d) through etcd's downgrade API, asked for with allow_downgrade", from.Major, from.Minor, to.Major, to.Minor), nil
}
