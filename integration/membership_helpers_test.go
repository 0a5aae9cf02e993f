package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/internal/runner"
)

// The membership tests run the real binary like harness.Env does, with
// their own inventories (a cluster grows, shrinks and moves between them).

// mlab is a lab plus the controller side of the membership tests.
type mlab struct {
	*harness.Env
	t   testing.TB
	url string // release mirror
}

func newMLab(t testing.TB, name string, block, hosts int) *mlab {
	t.Helper()
	url := harness.Mirror(t, "v3.6.16")
	l := lab.ForTest(t, lab.Options{Name: name, Block: block, Hosts: hosts})
	e := harness.New(t, l)
	m := &mlab{Env: e, t: t, url: url}
	e.WarmReleaseCache(t, "v3.6.16")
	return m
}

// node is an inventory entry: inventory name and address.
type node struct{ Name, Addr string }

// inventory writes an inventory of the given hosts in group etcd and
// returns its path.
func (m *mlab) inventory(file string, nodes ...node) string {
	m.t.Helper()
	return m.clientInventory(file, nodes, nil, nil)
}

// nodes are the lab's hosts as inventory entries (the first n when n > 0).
func (m *mlab) nodes(names ...string) []node {
	var out []node
	for _, h := range m.Lab.Hosts() {
		if len(names) == 0 || slices.Contains(names, h.Name) {
			out = append(out, node{h.Name, h.Addr})
		}
	}
	return out
}

// apply runs `etcdplay apply PLAYBOOK -i INV --output json ...`.
func (m *mlab) apply(inv, playbook string, extra ...string) *harness.Outcome {
	m.t.Helper()
	env := *m.Env
	env.Inventory = inv
	return env.Apply(m.t, harness.Playbook(playbook), extra...)
}

func (m *mlab) mustApply(inv, playbook string, extra ...string) *harness.Outcome {
	m.t.Helper()
	o := m.apply(inv, playbook, extra...)
	if o.Code != 0 {
		m.t.Fatalf("etcdplay apply %s %v: exit %d\n%s\n%s\nstderr:\n%s", playbook, extra, o.Code, o.Summary(), runLogs(o), o.Stderr)
	}
	return o
}

// etcd3DiedAndMoved bootstraps a three-member cluster holding k=v, kills
// etcd3's host and boots a spare one. It returns the three nodes, the
// spare, an inventory that gives etcd3 the spare's address, and the dead
// member's id.
func (m *mlab) etcd3DiedAndMoved() (all []node, spare lab.Host, moved string, old uint64) {
	m.t.Helper()
	all = m.nodes()
	m.mustApply(m.inventory("three.yml", all...), "site.yml")
	m.put("k", "v", all[0].Addr)
	old = m.memberIDs(all[0].Addr)["etcd3"]
	if err := m.Lab.Kill("etcd3"); err != nil {
		m.t.Fatal(err)
	}
	spare, err := m.Lab.AddHost(context.Background())
	if err != nil {
		m.t.Fatal(err)
	}
	return all, spare, m.inventory("moved.yml", all[0], all[1], node{"etcd3", spare.Addr}), old
}

// mustReplace runs replace-node.yml -e node=NODE with inv and checks,
// with etcd's client through via, that the three members are listed with
// NODE under a new member id (not old), that addrs are healthy and still
// hold k=v, and that a second run changes nothing. It returns the first
// run.
func (m *mlab) mustReplace(inv, node string, old uint64, via string, addrs []string) *harness.Outcome {
	m.t.Helper()
	o := m.mustApply(inv, "replace-node.yml", "-e", "node="+node)
	if got := m.members(via); !sameList(got, []string{"etcd1", "etcd2", "etcd3"}) {
		m.t.Fatalf("members after replace: %v", got)
	}
	if m.memberIDs(via)[node] == old {
		m.t.Errorf("%s kept its old member id %x", node, old)
	}
	m.healthy(addrs...)
	m.mustRead(map[string]string{"k": "v"}, addrs...)

	again := m.mustApply(inv, "replace-node.yml", "-e", "node="+node)
	if c := again.Changed(); c != 0 {
		m.t.Errorf("second replace-node changed %d: %v", c, planActions(again))
	}
	return o
}

// logs are the run's log lines and failures, for failure messages.
func runLogs(o *harness.Outcome) string {
	var b strings.Builder
	for _, ev := range o.Events {
		if ev.Type == runner.EventLog || ev.Status == "failed" {
			fmt.Fprintf(&b, "  [%s] %s: %s\n", ev.Host, ev.Task, ev.Msg)
		}
	}
	return b.String()
}

// actions are the plan lines of a run's node results ("+ learner ...").
func planActions(o *harness.Outcome) []string {
	var out []string
	for _, ev := range o.Events {
		if ev.Type == runner.EventNodeDone && ev.Change != nil {
			for _, a := range ev.Change.Actions {
				out = append(out, a.String())
			}
		}
	}
	return out
}

// failures are the messages of failed nodes.
func failedMsgs(o *harness.Outcome) string {
	var out []string
	for _, ev := range o.Events {
		if ev.Type == runner.EventNodeDone && ev.Status == "failed" {
			out = append(out, ev.Msg)
		}
	}
	return strings.Join(out, "\n")
}

// client is etcd's own client to the given addresses' client ports.
func (m *mlab) client(addrs ...string) *clientv3.Client {
	m.t.Helper()
	eps := make([]string, len(addrs))
	for i, a := range addrs {
		eps[i] = "https://" + a + ":2379"
	}
	return m.Client(m.t, eps...)
}

// members is the member list as etcd's client sees it through addr:
// "name" for voters, "name~" for learners, sorted.
func (m *mlab) members(addr string) []string {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := m.client(addr).MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		m.t.Fatalf("member list from %s: %v", addr, err)
	}
	var out []string
	for _, x := range resp.Members {
		s := x.Name
		if x.IsLearner {
			s += "~"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// memberIDs maps member names to ids.
func (m *mlab) memberIDs(addr string) map[string]uint64 {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := m.client(addr).MemberList(ctx)
	if err != nil {
		m.t.Fatalf("member list from %s: %v", addr, err)
	}
	out := map[string]uint64{}
	for _, x := range resp.Members {
		out[x.Name] = x.ID
	}
	return out
}

// put writes key=value through the given members.
func (m *mlab) put(key, value string, addrs ...string) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.client(addrs...).Put(ctx, key, value); err != nil {
		m.t.Fatalf("put %s: %v", key, err)
	}
}

// mustRead checks that every key reads back with its value through each
// member on its own (a linearizable read: the member is in the quorum).
func (m *mlab) mustRead(kv map[string]string, addrs ...string) {
	m.t.Helper()
	for _, a := range addrs {
		cli := m.client(a)
		for k, v := range kv {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := cli.Get(ctx, k)
			cancel()
			if err != nil {
				m.t.Fatalf("get %s through %s: %v", k, a, err)
			}
			if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != v {
				m.t.Fatalf("get %s through %s: %v, want %q", k, a, resp.Kvs, v)
			}
		}
	}
}

// healthy checks every address answers Status with a leader and no errors.
func (m *mlab) healthy(addrs ...string) {
	m.t.Helper()
	for _, a := range addrs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := m.client(a).Status(ctx, "https://"+a+":2379")
		cancel()
		if err != nil {
			m.t.Fatalf("status of %s: %v", a, err)
		}
		if st.Leader == 0 || st.IsLearner || len(st.Errors) > 0 {
			m.t.Fatalf("status of %s: leader %x learner %v errors %v", a, st.Leader, st.IsLearner, st.Errors)
		}
	}
}

func nodeAddrs(ns []node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Addr
	}
	return out
}

func sameList(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// harnessDiff is harness.SnapshotDiff as one string ("" when equal).
func harnessDiff(before, after map[string]string) string {
	return strings.Join(harness.SnapshotDiff(before, after), "\n")
}

// killWhen runs a playbook and SIGKILLs etcdplay delay after a log line
// containing marker appears in its JSON events (the controller dying at a
// chosen point). It fails the test if the marker never shows.
func (m *mlab) killWhen(inv, playbook, marker string, delay time.Duration, extra ...string) {
	m.t.Helper()
	env := *m.Env
	env.Inventory = inv
	env.SignalWhen(m.t, harness.Playbook(playbook), marker, delay, os.Kill, extra...)
}
