package etcd_maintenance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// alarmModule is etcd_alarm: it lists the cluster's alarms and disarms the
// ones whose cause is gone.
type alarmModule struct{ controllerSide }

var alarmSpec = modules.Spec{}

func (alarmModule) Validate(args modules.Args) error { return alarmSpec.Check(args) }

// writeCheckKey is where etcd_alarm proves, after a disarm, that the
// cluster takes writes again (put, then delete).
const writeCheckKey = "/etcdplay/maintenance/write-check"

type alarmJob struct {
	Cluster *etcd.Cluster
	Disarm  []*etcdserverpb.AlarmMember
}

// Plan lists the alarms. NOSPACE is disarmed only when every member's db
// is back under the quota (after compaction and defrag); otherwise, and for
// CORRUPT (never disarmed by etcdplay), it refuses with what to do.
func (alarmModule) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, etcdclient.Dialer(c, env), etcdclient.CheckOptions{IgnoreAlarms: []string{nospace, "CORRUPT"}})
	if err != nil {
		return nil, fmt.Errorf("etcd_alarm: %w", err)
	}
	if probs := h.Problems(); len(probs) > 0 {
		return nil, fmt.Errorf("etcd_alarm: the cluster is not healthy: %s", strings.Join(probs, "; "))
	}
	j := &alarmJob{Cluster: c}
	ch := &modules.Change{Payload: j}
	var errs []error
	for _, a := range h.Alarms {
		who := memberName(h, a.MemberID)
		switch a.Alarm {
		case etcdserverpb.AlarmType_NOSPACE:
			var over []string
			for _, mh := range h.Members {
				if c.QuotaBackendBytes > 0 && mh.DBSize >= c.QuotaBackendBytes {
					over = append(over, fmt.Sprintf("%s db %s", mh.Name, mib(mh.DBSize)))
				}
			}
			if len(over) > 0 && env.Check {
				// The compaction and defrag before this task have not run.
				j.Disarm = append(j.Disarm, a)
				ch.Add("~", "disarm NOSPACE on "+who, fmt.Sprintf("if the compaction and defrag before bring every db under the %s quota (now: %s)", mib(c.QuotaBackendBytes), strings.Join(over, ", ")))
				continue
			}
			if len(over) > 0 {
				errs = append(errs, fmt.Errorf("NOSPACE on %s stays: still at or above the %s quota (%s); delete keys, compact and defrag (playbooks/maintenance.yml), or raise etcd_quota_backend_bytes",
					who, mib(c.QuotaBackendBytes), strings.Join(over, ", ")))
				continue
			}
			j.Disarm = append(j.Disarm, a)
			ch.Add("~", "disarm NOSPACE on "+who, fmt.Sprintf("every member's db is under the %s quota; then a write is checked (%s)", mib(c.QuotaBackendBytes), writeCheckKey))
		case etcdserverpb.AlarmType_CORRUPT:
			errs = append(errs, fmt.Errorf("CORRUPT on %s: its data differs from the other members'. etcdplay never disarms it: "+
				"replace the member (`etcdplay apply playbooks/replace-node.yml -e node=%s` after wiping its data dir), then disarm", who, who))
		default:
			errs = append(errs, fmt.Errorf("alarm %s on %s: not one etcdplay disarms", a.Alarm, who))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("etcd_alarm: %w", err)
	}
	return ch, nil
}

func (alarmModule) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	j := ch.Payload.(*alarmJob)
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cli, err := etcdclient.NewClient(cctx, j.Cluster, env.StateDir, etcdclient.Dialer(j.Cluster, env))
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	var done []string
	for _, a := range j.Disarm {
		if _, err := cli.AlarmDisarm(cctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			return nil, fmt.Errorf("etcd_alarm: disarm %s: %w", a.Alarm, err)
		}
		done = append(done, fmt.Sprintf("%s on %x", a.Alarm, a.MemberID))
	}
	if _, err := cli.Put(cctx, writeCheckKey, time.Now().UTC().Format(time.RFC3339)); err != nil {
		return nil, fmt.Errorf("etcd_alarm: disarmed %s, but a write still fails: %w", strings.Join(done, ", "), err)
	}
	if _, err := cli.Delete(cctx, writeCheckKey); err != nil {
		return nil, fmt.Errorf("etcd_alarm: %w", err)
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch, Data: map[string]any{"disarmed": done},
		Msg: "disarmed " + strings.Join(done, ", ") + "; writes go through"}, nil
}

func memberName(h *etcdclient.Health, id uint64) string {
	for _, m := range h.List {
		if m.ID == id && m.Name != "" {
			return m.Name
		}
	}
	return fmt.Sprintf("%x", id)
}
