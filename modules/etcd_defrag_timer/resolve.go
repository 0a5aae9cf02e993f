package etcd_defrag_timer

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// Templates and defaults.
const (
	defaultTimeout = "5m"
	defaultSpread  = "10min"
)

type unitData struct {
	Name, User, Group string
	Endpoint, Cluster string
	TLS               bool
	CACert, Cert, Key string
	FreeAbove         int64
	QuotaLimit        int64
	Timeout, Lock     string
	Etcdctl, Script   string
	Schedule, Spread  string
	Vars              map[string]any
}

// Resolve reads the schedule and the rule, renders the units on the
// controller and hands the agent plain content.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	st, err := job.Start(args, rc)
	if err != nil {
		return nil, err
	}
	c, m, out, schedule := st.Cluster, st.Member, st.Out, st.Schedule
	if st.Absent() {
		return out, nil
	}
	// The rule's arguments default to variables: a timer is configured in
	// the inventory.
	rule, err := etcd.DefragRuleFor(args, rc.Vars, rc.Host, c)
	if err != nil {
		return nil, err
	}
	timeout := args.Str("timeout", defaultTimeout)
	if _, err := time.ParseDuration(timeout); err != nil {
		return nil, &modules.ArgError{Arg: "timeout", Msg: fmt.Sprintf("%q is not a duration such as 5m", timeout)}
	}
	d := unitData{
		Name: m.Name, User: "etcd", Group: "etcd",
		Endpoint: m.ClientURL, Cluster: strings.Join(c.Endpoints(), ","), TLS: c.TLS,
		CACert: c.Paths.CACert, Cert: c.Paths.ServerCert, Key: c.Paths.ServerKey,
		FreeAbove: rule.FreeAbove, QuotaLimit: rule.QuotaLimit(),
		Timeout: timeout, Lock: etcd.OpLockKey,
		Etcdctl: path.Join(c.Paths.BinDir, "etcdctl"), Script: ScriptPath,
		Schedule: schedule, Spread: args.Str("spread", defaultSpread),
		Vars: rc.Vars,
	}
	if err := job.RenderUnits(rc.BaseDir, rc.Host, d, []string{d.Endpoint, d.Cluster, d.CACert, d.Cert, d.Key, d.Etcdctl, d.Spread}, out); err != nil {
		return nil, err
	}
	out["schedule"] = schedule
	out["user"] = d.User
	out["start_detail"] = fmt.Sprintf("defrag %s when %s", m.Name, describe(rule))
	return out, nil
}

func describe(r etcd.DefragRule) string {
	s := fmt.Sprintf("more than %d MiB inside the db is free", r.FreeAbove>>20)
	if r.QuotaLimit() > 0 {
		s += fmt.Sprintf(" or the db is above %.0f%% of the quota", r.QuotaFraction*100)
	}
	return s
}
