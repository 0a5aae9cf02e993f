package etcd_maintenance

import (
	"context"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
)

// consistencyModule is etcd_consistency: every member's KV hash at one
// revision (etcd's HashKV), compared. Members that applied the same
// history hold the same hash; one that differs has diverged (a bad disk, a
// member restored on its own from another snapshot) and must be replaced.
// It only reads: a consistent cluster is "ok", a divergent one fails naming
// the members in the minority.
type consistencyModule struct{ controllerSide }

func (consistencyModule) Validate(args modules.Args) error { return modules.Spec{}.Check(args) }

func (consistencyModule) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	h, err := healthFor(ctx, env, c, "etcd_consistency")
	if err != nil {
		return nil, err
	}
	dial := etcdclient.Dialer(c, env)
	type member struct {
		name, url string
		cli       *clientv3.Client
	}
	var ms []member
	defer func() {
		for _, m := range ms {
			m.cli.Close()
		}
	}()
	// The lowest revision every member has applied: a member asked for a
	// revision it has not reached yet would refuse.
	var rev int64
	for _, mh := range h.Members {
		sel, err := c.Select([]string{mh.Host})
		if err != nil {
			return nil, err
		}
		cli, err := etcdclient.NewMemberClient(ctx, c, sel[0], env.StateDir, dial)
		if err != nil {
			return nil, err
		}
		ms = append(ms, member{mh.Name, sel[0].ClientURL, cli})
		st, err := cli.Status(ctx, sel[0].ClientURL)
		if err != nil {
			return nil, fmt.Errorf("etcd_consistency: %s: %w", mh.Name, err)
		}
		if rev == 0 || st.Header.Revision < rev {
			rev = st.Header.Revision
		}
	}
	hashes := map[uint32][]string{}
	for _, m := range ms {
		resp, err := m.cli.HashKV(ctx, m.url, rev)
		if err != nil {
			return nil, fmt.Errorf("etcd_consistency: hash of %s at revision %d: %w", m.name, rev, err)
		}
		hashes[resp.Hash] = append(hashes[resp.Hash], m.name)
	}
	if len(hashes) <= 1 {
		env.Logf("etcd_consistency: %d members agree on the KV hash at revision %d", len(ms), rev)
		return &modules.Change{}, nil
	}
	// The largest group is taken as the cluster's history.
	groups := make([][]string, 0, len(hashes))
	for _, names := range hashes {
		sort.Strings(names)
		groups = append(groups, names)
	}
	sort.Slice(groups, func(i, j int) bool { return len(groups[i]) > len(groups[j]) })
	var odd []string
	for _, g := range groups[1:] {
		odd = append(odd, g...)
	}
	return nil, fmt.Errorf("etcd_consistency: the members disagree on the KV hash at revision %d: %s agree, %s differ%s. "+
		"A diverged member must be replaced: wipe its data dir and run `etcdplay apply playbooks/replace-node.yml -e node=NAME`",
		rev, strings.Join(groups[0], ", "), strings.Join(odd, ", "), tie(groups))
}

func tie(groups [][]string) string {
	if len(groups) > 1 && len(groups[0]) == len(groups[1]) {
		return " (no majority: find the member with the right data before replacing any)"
	}
	return ""
}

// Apply is never reached: Plan changes nothing.
func (consistencyModule) Apply(_ context.Context, _ *modules.Env, ch *modules.Change) (*modules.Result, error) {
	return &modules.Result{Status: modules.StatusOK, Change: ch}, nil
}

func init() { modules.Register("etcd_consistency", consistencyModule{}) }
