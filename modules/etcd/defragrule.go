package etcd

import (
	"errors"
	"fmt"

	"github.com/etcdplay/etcdplay/modules"
)

// Defaults of the defrag rule.
const (
	DefaultDefragFreeAbove     = 200 << 20
	DefaultDefragQuotaFraction = 0.8
)

// DefragRule decides which members need a defrag: the one rule of the
// rolling defrag (etcd_defrag) and of the member's own timer
// (etcd_defrag_timer).
type DefragRule struct {
	FreeAbove     int64   // free space inside the db above this
	QuotaFraction float64 // ... or the db above this fraction of Quota
	Quota         int64
	Force         bool
}

// DefragRuleOf reads the rule's arguments (free_above, quota_fraction,
// force) over the defaults and the cluster's quota.
func DefragRuleOf(args modules.Args, c *Cluster) (DefragRule, error) {
	r := DefragRule{FreeAbove: DefaultDefragFreeAbove, QuotaFraction: DefaultDefragQuotaFraction, Quota: c.QuotaBackendBytes, Force: args.Bool("force", false)}
	if s := args.Str("free_above", ""); s != "" {
		n, err := ParseSize(s)
		if err != nil {
			return r, &modules.ArgError{Arg: "free_above", Msg: err.Error()}
		}
		r.FreeAbove = n
	}
	if s := args.Str("quota_fraction", ""); s != "" {
		var f float64
		if _, err := fmt.Sscanf(s, "%g", &f); err != nil || f <= 0 || f > 1 {
			return r, &modules.ArgError{Arg: "quota_fraction", Msg: fmt.Sprintf("%q must be a number in (0, 1]", s)}
		}
		r.QuotaFraction = f
	}
	return r, nil
}

// QuotaLimit is the db size above which the quota part of the rule fires
// (0: no quota).
func (r DefragRule) QuotaLimit() int64 {
	if r.Quota <= 0 {
		return 0
	}
	return int64(r.QuotaFraction * float64(r.Quota))
}

// Why says why a db of size bytes, inUse of them in use, needs a defrag,
// or "" when it does not.
func (r DefragRule) Why(size, inUse int64) string {
	free := size - inUse
	switch {
	case r.Force:
		return "forced"
	case free > r.FreeAbove:
		return fmt.Sprintf("%s free inside the db > %s", mib(free), mib(r.FreeAbove))
	case r.QuotaLimit() > 0 && size > r.QuotaLimit():
		return fmt.Sprintf("db above %.0f%% of the %s quota", r.QuotaFraction*100, mib(r.Quota))
	}
	return ""
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// DefragRuleFor is DefragRuleOf with the rule's arguments defaulting to
// the variables etcd_defrag_free_above and etcd_defrag_quota_fraction, so
// the inventory sets one rule for the rolling defrag and the timers. A bad
// value that came from a variable is a VarError, reported at its line.
func DefragRuleFor(args modules.Args, vars map[string]any, host string, c *Cluster) (DefragRule, error) {
	ruleArgs := modules.Args{"force": args.Bool("force", false)}
	for arg, v := range map[string]string{"free_above": "etcd_defrag_free_above", "quota_fraction": "etcd_defrag_quota_fraction"} {
		ruleArgs[arg] = args.Str(arg, modules.Args(vars).Str(v, ""))
	}
	r, err := DefragRuleOf(ruleArgs, c)
	var ae *modules.ArgError
	if errors.As(err, &ae) && args.Str(ae.Arg, "") == "" {
		return r, &VarError{Var: "etcd_defrag_" + ae.Arg, Host: host, Msg: ae.Msg}
	}
	return r, err
}
