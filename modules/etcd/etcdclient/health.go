package etcdclient

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/hostprobe"
)

// MemberHealth is one member as seen through its own client URL: the
// equivalent of `etcdctl endpoint health` plus `endpoint status`.
type MemberHealth struct {
	Host     string        `json:"host"`
	Name     string        `json:"name"`
	Endpoint string        `json:"endpoint"`
	Healthy  bool          `json:"healthy"`
	Error    string        `json:"error,omitempty"` // why not healthy
	Took     time.Duration `json:"took"`
	// From Status; zero when the member did not answer.
	ID               uint64   `json:"id,omitempty"`
	Version          string   `json:"version,omitempty"`
	DBSize           int64    `json:"db_size,omitempty"`
	DBSizeInUse      int64    `json:"db_size_in_use,omitempty"`
	Leader           uint64   `json:"leader,omitempty"`
	RaftTerm         uint64   `json:"raft_term,omitempty"`
	RaftIndex        uint64   `json:"raft_index,omitempty"`
	RaftAppliedIndex uint64   `json:"raft_applied_index,omitempty"`
	IsLearner        bool     `json:"is_learner,omitempty"`
	Errors           []string `json:"errors,omitempty"` // the member's own (Status.Errors)
}

// IsLeader reports whether this member is the leader it reports.
func (m MemberHealth) IsLeader() bool { return m.ID != 0 && m.ID == m.Leader }

// Health is the cluster as seen from every member the check covered.
type Health struct {
	Members []MemberHealth              `json:"members"`
	List    []*etcdserverpb.Member      `json:"member_list,omitempty"`
	Alarms  []*etcdserverpb.AlarmMember `json:"alarms,omitempty"`
	// ListError is set when no member could list members and alarms.
	ListError string `json:"list_error,omitempty"`
	// Outsiders are the voting members of List the inventory does not
	// name, probed through their advertised client URL when asked
	// (CheckOptions.Outsiders). They count for quorum, not in Problems:
	// etcdplay does not manage them.
	Outsiders []MemberHealth `json:"outsiders,omitempty"`
	// ignoreAlarms are alarm types Problems does not count (CheckOptions).
	ignoreAlarms []string
}

// Healthy reports whether every checked member is healthy, the members
// agree on one leader, and no alarm is raised.
func (h *Health) Healthy() bool { return len(h.Problems()) == 0 }

// Problems lists, one line each, why the cluster is not healthy
// ("etcd2: connection refused", "alarm NOSPACE on etcd1").
func (h *Health) Problems() []string {
	var out []string
	leaders := map[uint64]bool{}
	for _, m := range h.Members {
		if !m.Healthy {
			out = append(out, fmt.Sprintf("%s: %s", m.Name, m.Error))
			continue
		}
		leaders[m.Leader] = true
	}
	if len(leaders) > 1 {
		out = append(out, fmt.Sprintf("members disagree on the leader (%d different leaders reported)", len(leaders)))
	}
	for _, a := range h.Alarms {
		if !slices.Contains(h.ignoreAlarms, a.Alarm.String()) {
			out = append(out, fmt.Sprintf("alarm %s on member %s%s", a.Alarm, h.nameOf(a.MemberID), alarmRemedy(a.Alarm, h.nameOf(a.MemberID))))
		}
	}
	if h.ListError != "" {
		out = append(out, "member list: "+h.ListError)
	}
	return out
}

// Unhealthy names the members that failed their probe.
func (h *Health) Unhealthy() []string {
	var out []string
	for _, m := range h.Members {
		if !m.Healthy {
			out = append(out, m.Name)
		}
	}
	return out
}

// Leader returns the member every healthy member agrees leads, if any.
// A leader the inventory does not name has no Host: it is never a step's
// member, so a roll never takes it down.
func (h *Health) Leader() (MemberHealth, bool) {
	for _, m := range h.Members {
		if m.Healthy && m.IsLeader() {
			return m, true
		}
	}
	// The leader may be outside the checked set: find it by id.
	for _, m := range h.Members {
		if !m.Healthy || m.Leader == 0 {
			continue
		}
		for _, o := range append(h.Members, h.Outsiders...) {
			if o.ID == m.Leader {
				return o, true
			}
		}
		return MemberHealth{ID: m.Leader, Name: h.nameOf(m.Leader), Healthy: true, Leader: m.Leader}, true
	}
	return MemberHealth{}, false
}

func (h *Health) nameOf(id uint64) string {
	for _, m := range h.List {
		if m.ID == id && m.Name != "" {
			return m.Name
		}
	}
	for _, m := range h.Members {
		if m.ID == id {
			return m.Name
		}
	}
	return fmt.Sprintf("%x", id)
}

// CheckOptions select and bound a health check.
type CheckOptions struct {
	// Members limits the check to these inventory hosts or member names;
	// empty means every member.
	Members []string
	// ProbeTimeout bounds each member's probe (default 3s).
	ProbeTimeout time.Duration
	// IgnoreAlarms are alarm types ("NOSPACE") that do not make the
	// cluster unhealthy for this check: the maintenance that cures them
	// must run while they are raised.
	IgnoreAlarms []string
	// Outsiders also probes the voting members the inventory does not
	// name (whole-cluster checks only), so a quorum guard can count
	// those that are up instead of assuming them down.
	Outsiders bool
}

// CheckHealth probes the selected members in parallel, each through its
// own client URL: Status (version, leader, raft state), a linearizable Get
// (which only succeeds when the member is part of a quorum with a leader),
// then the member list and alarms from a member that answered.
func CheckHealth(ctx context.Context, c *etcd.Cluster, stateDir string, dial DialFunc, opt CheckOptions) (*Health, error) {
	members, err := c.Select(opt.Members)
	if err != nil {
		return nil, err
	}
	if _, err := ClientTLS(c, stateDir); err != nil {
		// A missing client certificate is not a member's fault: say so once.
		return nil, err
	}
	timeout := opt.ProbeTimeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	h := &Health{Members: make([]MemberHealth, len(members)), ignoreAlarms: opt.IgnoreAlarms}
	var wg sync.WaitGroup
	// The list comes from the first healthy member that gives it. A
	// member can go down between its probe and the list (another run's
	// rolling restart): then the next healthy member is asked.
	var listMu sync.Mutex
	listed := false
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.Members[i] = probeKept(ctx, c, m, stateDir, dial, timeout, func(cli *clientv3.Client, pctx context.Context, explain func(error) error) {
				listMu.Lock()
				defer listMu.Unlock()
				if listed {
					return
				}
				var err error
				h.List, h.Alarms, err = listAndAlarms(pctx, cli)
				if err != nil {
					h.ListError = fmt.Sprintf("from %s: %s", m.Name, describe(explain(err)))
					return
				}
				listed, h.ListError = true, ""
			})
		}()
	}
	wg.Wait()
	if !listed && h.ListError == "" {
		h.ListError = "no member answered"
	}
	if opt.Outsiders && len(opt.Members) == 0 {
		h.Outsiders = probeOutsiders(ctx, c, h.List, stateDir, dial, timeout)
	}
	// Learners are not voting members: healthy for serving, but the
	// wait-until-healthy gate treats a learner as not (yet) a full member.
	for i := range h.Members {
		if h.Members[i].Healthy && h.Members[i].IsLearner {
			h.Members[i].Healthy = false
			h.Members[i].Error = "is a learner (not promoted to a voting member yet)"
		}
	}
	return h, nil
}

// listAndAlarms asks for both at once: one round trip, not two.
func listAndAlarms(ctx context.Context, cli *clientv3.Client) ([]*etcdserverpb.Member, []*etcdserverpb.AlarmMember, error) {
	type alarms struct {
		r   *clientv3.AlarmResponse
		err error
	}
	ac := make(chan alarms, 1)
	go func() {
		r, err := cli.AlarmList(ctx)
		ac <- alarms{r, err}
	}()
	ml, err := cli.MemberList(ctx)
	al := <-ac
	if err != nil {
		return nil, nil, err
	}
	if al.err != nil {
		return nil, nil, al.err
	}
	return ml.Members, al.r.Alarms, nil
}

// probeOutsiders probes, in parallel, the voting members in list that c
// does not name, each through its first advertised client URL (the
// cluster's CA and etcdplay's client certificate, as for the others). A
// member that never started has no URL and is down.
func probeOutsiders(ctx context.Context, c *etcd.Cluster, list []*etcdserverpb.Member, stateDir string, dial DialFunc, timeout time.Duration) []MemberHealth {
	named := map[string]bool{}
	for _, m := range c.Members {
		named[m.Name] = true
	}
	var out []MemberHealth
	for _, lm := range list {
		if lm.IsLearner || (lm.Name != "" && named[lm.Name]) {
			continue
		}
		mh := MemberHealth{Name: lm.Name, ID: lm.ID, Error: "not started (no client URL)"}
		if mh.Name == "" {
			mh.Name = fmt.Sprintf("%x", lm.ID)
		}
		if len(lm.ClientURLs) > 0 {
			mh.Endpoint, mh.Error = lm.ClientURLs[0], ""
		}
		out = append(out, mh)
	}
	var wg sync.WaitGroup
	for i := range out {
		if out[i].Endpoint == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := out[i].ID
			out[i] = probe(ctx, c, etcd.Member{Name: out[i].Name, ClientURL: out[i].Endpoint}, stateDir, dial, timeout, nil, nil)
			if out[i].Healthy && out[i].ID != id {
				out[i].Healthy = false
				out[i].Error = fmt.Sprintf("its client URL is served by member %x, not %x", out[i].ID, id)
			}
			out[i].ID = id
		}()
	}
	wg.Wait()
	return out
}

// healthyHook runs with the client of a member that has proved healthy,
// the probe's context, and what explains an error of a request through
// that client (a failed dial: "connection refused", not "context
// canceled").
type healthyHook func(cli *clientv3.Client, ctx context.Context, explain func(error) error)

// probe checks one member with a new client; onHealthy runs with its
// client once it has proved healthy (to list members and alarms through
// it). keep, when set, is offered the client of a healthy member (and its
// dialer), and the client is left open when it takes it (probeKept).
func probe(ctx context.Context, c *etcd.Cluster, m etcd.Member, stateDir string, dial DialFunc, timeout time.Duration, onHealthy healthyHook, keep func(*clientv3.Client, *dialRecorder) bool) MemberHealth {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rec := &dialRecorder{dial: dial}
	rec.arm(cancel)
	// A client that may be kept must outlive this probe's deadline.
	cctx := pctx
	if keep != nil {
		cctx = context.WithoutCancel(ctx)
	}
	cli, err := NewMemberClient(cctx, c, m, stateDir, rec.Dial)
	if err != nil {
		return MemberHealth{Host: m.Host, Name: m.Name, Endpoint: m.ClientURL, Error: err.Error()}
	}
	mh := probeWith(pctx, cli, m, timeout, rec, onHealthy)
	rec.arm(nil)
	if !mh.Healthy || keep == nil || !keep(cli, rec) {
		cli.Close()
	}
	return mh
}

// probeWith checks one member through cli, as probe describes.
func probeWith(ctx context.Context, cli *clientv3.Client, m etcd.Member, timeout time.Duration, rec *dialRecorder, onHealthy healthyHook) MemberHealth {
	mh := MemberHealth{Host: m.Host, Name: m.Name, Endpoint: m.ClientURL}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	// The linearizable read goes out with Status, not after it: one round
	// trip to the member instead of two, which over a bastion is tens of
	// milliseconds per check. It is cancelled once Status has decided (an
	// error, no leader: without one it would wait out the probe timeout).
	gctx, cancelGet := context.WithCancel(pctx)
	defer cancelGet()
	read := make(chan error, 1)
	go func() {
		_, err := cli.Get(gctx, "health")
		read <- err
	}()
	st, err := memberStatus(pctx, cli)
	if err != nil {
		mh.Error = describe(rec.explain(err))
		mh.Took = time.Since(start)
		return mh
	}
	mh.ID, mh.Version, mh.DBSize, mh.DBSizeInUse = st.Header.MemberId, st.Version, st.DbSize, st.DbSizeInUse
	mh.Leader, mh.RaftTerm, mh.RaftIndex, mh.RaftAppliedIndex = st.Leader, st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex
	mh.IsLearner, mh.Errors = st.IsLearner, st.Errors
	if st.Leader == 0 {
		mh.Error = "has no leader (no quorum)"
		mh.Took = time.Since(start)
		return mh
	}
	if !st.IsLearner {
		// A linearizable read goes through raft: it succeeds only when
		// this member and a quorum agree. Permission denied still proves
		// that (auth is on, and etcdplay's user may not read "health").
		err = <-read
		if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
			mh.Error = describe(rec.explain(err))
			mh.Took = time.Since(start)
			return mh
		}
	}
	mh.Took = time.Since(start)
	mh.Healthy = true
	if onHealthy != nil {
		onHealthy(cli, pctx, rec.explain)
	}
	return mh
}

// memberStatus is the Status of the member cli, a client of that member
// alone, talks to, asked over cli's own connection: clientv3's Status
// dials the endpoint anew for every call, one more TLS handshake through
// SSH per member per check.
func memberStatus(ctx context.Context, cli *clientv3.Client) (*clientv3.StatusResponse, error) {
	r, err := etcdserverpb.NewMaintenanceClient(cli.ActiveConnection()).Status(ctx, &etcdserverpb.StatusRequest{}, grpc.WaitForReady(true))
	if err != nil {
		// As clientv3 hands its errors back: etcd's own errors typed, and
		// a deadline or cancellation as the context's.
		err = rpctypes.Error(err)
		if c := status.Code(err); (c == codes.DeadlineExceeded || c == codes.Canceled) && ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return (*clientv3.StatusResponse)(r), nil
}

// describe turns client errors into the operator's words.
func describe(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time (down, or no quorum)"
	}
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

// WaitOptions bound WaitHealthy.
type WaitOptions struct {
	CheckOptions
	Timeout  time.Duration // total; default 60s
	Interval time.Duration // from one check's start to the next's; default 100ms: a member that is not listening yet is refused at once, and most are listening within a few tenths of a second of their start
	// Log, when set, receives a line each time the set of problems changes.
	Log func(format string, args ...any)
}

// ErrNotHealthy is wrapped by WaitHealthy's error when time ran out.
var ErrNotHealthy = errors.New("etcd cluster not healthy")

// WaitHealthy checks until the selected members are all healthy, or the
// timeout passes; the error then names every unhealthy member and why.
func WaitHealthy(ctx context.Context, c *etcd.Cluster, stateDir string, dial DialFunc, opt WaitOptions) (*Health, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = 60 * time.Second
	}
	if opt.Interval <= 0 {
		opt.Interval = 100 * time.Millisecond
	}
	deadline := time.Now().Add(opt.Timeout)
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var last string
	limit := opt.ProbeTimeout
	if limit <= 0 {
		limit = defaultProbeTimeout
	}
	for round := 1; ; round++ {
		// Short probes first: a member still waiting for its peers holds
		// requests until its probe times out, and the cluster usually
		// forms within a second of the last start. Later rounds give a
		// slow but live member more time.
		po := opt.CheckOptions
		po.ProbeTimeout = min(time.Duration(round)*time.Second, limit)
		if rest := time.Until(deadline); rest < po.ProbeTimeout {
			po.ProbeTimeout = max(rest, 100*time.Millisecond)
		}
		// The next check is due an interval after this one starts, not
		// after it ends: a check that waited on members still electing
		// a leader comes back once they have one, when a member refused
		// at its start is usually serving too (a new cluster's members
		// are ready within milliseconds of each other). Waiting a whole
		// interval then cost a cold site.yml 0.1 s.
		next := time.Now().Add(opt.Interval)
		h, err := CheckHealth(wctx, c, stateDir, dial, po)
		if err != nil {
			return nil, err
		}
		probs := h.Problems()
		if len(probs) == 0 {
			return h, nil
		}
		sort.Strings(probs)
		if now := strings.Join(probs, "; "); now != last && opt.Log != nil {
			opt.Log("waiting for etcd: %s", now)
			last = now
		}
		select {
		case <-ctx.Done():
			return h, fmt.Errorf("%w: %s", ErrNotHealthy, strings.Join(probs, "; "))
		case <-time.After(max(0, min(time.Until(next), time.Until(deadline)))):
		}
		if !time.Now().Before(deadline) {
			return h, fmt.Errorf("%w after %s: %s", ErrNotHealthy, opt.Timeout, strings.Join(probs, "; "))
		}
	}
}

// Preflight is the health a disruptive module's Plan judges before it
// takes members down. When the cluster is not healthy only because of
// members whose etcd unit is still running or in transition, it waits up
// to timeout for them and returns what it saw last: such a member is on
// its way back, restarted by a run that was killed (systemd finishes the
// restart, and etcd with a large database takes seconds to stop and
// start) or started by an earlier task of this run. A member stopped for
// good, or on a host the play cannot reach, is judged at once, and so is
// every cluster under --check. Refusing stays the caller's: Problems of
// the returned Health say why.
func Preflight(ctx context.Context, c *etcd.Cluster, env *modules.Env, opt CheckOptions, timeout time.Duration) (*Health, error) {
	dial := Dialer(c, env)
	h, err := CheckHealth(ctx, c, env.StateDir, dial, opt)
	if err != nil || env.Check || h.Healthy() {
		return h, err
	}
	back := comingBack(ctx, env, h)
	if len(back) == 0 {
		return h, nil
	}
	env.Logf("the cluster is not healthy now (%s), and etcd on %s: waiting up to %s for it before going on",
		strings.Join(h.Problems(), "; "), strings.Join(back, ", "), timeout)
	w, err := WaitHealthy(ctx, c, env.StateDir, dial, WaitOptions{CheckOptions: opt, Timeout: timeout, Log: env.Logf})
	if w == nil {
		return nil, err
	}
	return w, nil
}

// comingBack names the unhealthy members with their etcd unit's state
// ("etcd2 is deactivating") when every one of them is running or in a
// transition; nil when any is stopped, unreachable or unknown, or when
// what is wrong is not a member (an alarm).
func comingBack(ctx context.Context, env *modules.Env, h *Health) []string {
	hosts := env.Remotes()
	var out []string
	for _, m := range h.Members {
		if m.Healthy {
			continue
		}
		r := hosts[m.Host]
		if r == nil {
			return nil
		}
		f, err := hostprobe.Ask(ctx, r, hostprobe.Query{Units: []string{etcd.UnitName}})
		if err != nil {
			return nil
		}
		u := f.Units[etcd.UnitName]
		if !u.Running() {
			return nil
		}
		out = append(out, m.Name+" is "+u.Active)
	}
	return out
}

// Dialer returns the dialer a controller-side module should use: through
// the play's SSH connections (env.Remotes: dialing is read-only).
func Dialer(c *etcd.Cluster, env *modules.Env) DialFunc {
	return RemoteDialer(c, env.Remotes())
}

// alarmRemedy is what an operator does about an alarm, appended to the
// problem line so every refusal that meets it says so.
func alarmRemedy(a etcdserverpb.AlarmType, member string) string {
	switch a {
	case etcdserverpb.AlarmType_NOSPACE:
		return " (the db reached its quota: delete what is not needed, then playbooks/maintenance.yml compacts, defragments and disarms it)"
	case etcdserverpb.AlarmType_CORRUPT:
		return fmt.Sprintf(" (its data differs from the other members'; etcdplay never disarms it: wipe its data dir, run playbooks/replace-node.yml -e node=%s, then disarm it)", member)
	}
	return ""
}
