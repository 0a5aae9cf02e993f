package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestScaleOut1To3 bootstraps one member with site.yml, then grows it to
// three with scale-out.yml: --check plans the learners and promotions and
// changes nothing, apply joins both, data written before is readable
// through every member, and a second run changes nothing.
func TestScaleOut1To3(t *testing.T) {
	m := newMLab(t, "it-scaleout", 20, 3)
	all := m.nodes()
	one := m.inventory("one.yml", all[0])
	three := m.inventory("three.yml", all...)

	m.mustApply(one, "site.yml")
	m.put("before-scale-out", "1", all[0].Addr)

	untouched := m.CheckSnapshot(t)
	check := m.apply(three, "scale-out.yml", "--check")
	m.Unchanged(t, untouched, "scale-out --check")
	if check.Code != 0 {
		t.Fatalf("--check: exit %d\n%s\n%s", check.Code, check.Summary(), check.Stderr)
	}
	plan := strings.Join(planActions(check), "\n")
	for _, want := range []string{
		fmt.Sprintf("+ learner etcd2 https://%s:2380", all[1].Addr),
		"~ promote etcd2",
		fmt.Sprintf("+ learner etcd3 https://%s:2380", all[2].Addr),
		"~ promote etcd3",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("--check plan lacks %q:\n%s", want, plan)
		}
	}
	if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1"}) {
		t.Fatalf("--check changed the member list: %v", got)
	}

	m.mustApply(three, "scale-out.yml")
	if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3"}) {
		t.Fatalf("members after scale-out: %v", got)
	}
	m.healthy(nodeAddrs(all)...)
	m.mustRead(map[string]string{"before-scale-out": "1"}, nodeAddrs(all)...)

	again := m.mustApply(three, "scale-out.yml")
	if c := again.Changed(); c != 0 {
		t.Errorf("second scale-out changed %d: %v", c, planActions(again))
	}

	// site.yml over the grown cluster restarts nothing: the configs would
	// now list all three members in initial-cluster, which etcd reads only
	// when it bootstraps (issue 10: the whole cluster was restarted for it).
	pids := map[string]string{}
	for _, n := range all {
		out, _ := m.Lab.Run(context.Background(), n.Name, "systemctl show -p MainPID --value etcd")
		pids[n.Name] = strings.TrimSpace(out)
	}
	if o := m.mustApply(three, "site.yml"); o.Changed() != 0 {
		t.Errorf("site.yml right after scale-out changed %d: %v", o.Changed(), planActions(o))
	}
	for _, n := range all {
		if out, _ := m.Lab.Run(context.Background(), n.Name, "systemctl show -p MainPID --value etcd"); strings.TrimSpace(out) != pids[n.Name] {
			t.Errorf("site.yml after scale-out restarted %s (pid %s -> %s)", n.Name, pids[n.Name], strings.TrimSpace(out))
		}
	}
	m.healthy(nodeAddrs(all)...)
	m.mustRead(map[string]string{"before-scale-out": "1"}, nodeAddrs(all)...)
	if o := m.mustApply(three, "site.yml"); o.Changed() != 0 {
		t.Errorf("site.yml after scale-out and one converging run changed %d: %v", o.Changed(), planActions(o))
	}
}

// TestScaleOut3To5To3 grows a 3-member cluster to 5 and shrinks it back
// with scale-in.yml: the removed members leave the member list, their etcd
// is stopped and disabled and their data dir moved aside (not deleted),
// and keys written before each step stay readable.
func TestScaleOut3To5To3(t *testing.T) {
	m := newMLab(t, "it-scale35", 21, 5)
	all := m.nodes()
	three := m.inventory("three.yml", all[:3]...)
	five := m.inventory("five.yml", all...)

	m.mustApply(three, "site.yml")
	m.put("k3", "three", nodeAddrs(all[:3])...)

	m.mustApply(five, "scale-out.yml")
	if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3", "etcd4", "etcd5"}) {
		t.Fatalf("members after 3->5: %v", got)
	}
	m.healthy(nodeAddrs(all)...)
	m.mustRead(map[string]string{"k3": "three"}, nodeAddrs(all)...)
	m.put("k5", "five", nodeAddrs(all)...)

	check := m.apply(five, "scale-in.yml", "--check", "-e", "remove=etcd4,etcd5")
	if check.Code != 0 {
		t.Fatalf("scale-in --check: exit %d\n%s", check.Code, check.Summary())
	}
	ids := m.memberIDs(all[0].Addr)
	plan := strings.Join(planActions(check), "\n")
	for _, want := range []string{
		fmt.Sprintf("- member etcd4 (%016x)", ids["etcd4"]),
		fmt.Sprintf("- member etcd5 (%016x)", ids["etcd5"]),
		"! stop and disable etcd on etcd4",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("scale-in --check plan lacks %q:\n%s", want, plan)
		}
	}
	if got := m.members(all[0].Addr); len(got) != 5 {
		t.Fatalf("--check changed the member list: %v", got)
	}

	// Without --yes and without a terminal to ask on, the membership
	// change is refused (exit 4) and nothing of it happens.
	m.Ask = true
	unconfirmed := m.apply(five, "scale-in.yml", "-e", "remove=etcd4,etcd5")
	m.Ask = false
	if unconfirmed.Code != 4 || !strings.Contains(unconfirmed.Stdout+unconfirmed.Stderr, "pass --yes (ETCDPLAY_YES=1)") {
		t.Errorf("scale-in without --yes or a terminal: exit %d, want 4 with the remedy\n%s\n%s", unconfirmed.Code, unconfirmed.Summary(), unconfirmed.Stderr)
	}
	if got := m.members(all[0].Addr); len(got) != 5 {
		t.Fatalf("an unconfirmed scale-in changed the member list: %v", got)
	}

	m.mustApply(five, "scale-in.yml", "-e", "remove=etcd4,etcd5")
	if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3"}) {
		t.Fatalf("members after 5->3: %v", got)
	}
	m.healthy(nodeAddrs(all[:3])...)
	m.mustRead(map[string]string{"k3": "three", "k5": "five"}, nodeAddrs(all[:3])...)
	for _, h := range []string{"etcd4", "etcd5"} {
		out, err := m.Lab.Run(context.Background(), h,
			"systemctl is-active etcd; systemctl is-enabled etcd; ls -A /var/lib/etcd 2>/dev/null | wc -l; ls -d /var/lib/etcd.*Z")
		if !strings.Contains(out, "inactive") || !strings.Contains(out, "disabled") || err != nil {
			t.Errorf("%s after scale-in (err %v):\n%s", h, err, out)
		}
		if !strings.Contains(out, "/var/lib/etcd.") {
			t.Errorf("%s: data dir not moved aside:\n%s", h, out)
		}
	}
	again := m.mustApply(five, "scale-in.yml", "-e", "remove=etcd4,etcd5")
	if c := again.Changed(); c != 0 {
		t.Errorf("second scale-in changed %d: %v", c, planActions(again))
	}

	// Back to 5, with leftovers in etcd4's data dir: they are moved aside
	// (not deleted) before etcd4 joins again as a new member.
	if out, err := m.Lab.Run(context.Background(), "etcd4", "mkdir -p /var/lib/etcd && echo old > /var/lib/etcd/leftover"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	back := m.mustApply(five, "scale-out.yml")
	if plan := strings.Join(planActions(back), "\n"); !strings.Contains(plan, "~ /var/lib/etcd on etcd4: move aside to /var/lib/etcd.") {
		t.Errorf("scale-out plan does not move etcd4's leftovers aside:\n%s", plan)
	}
	if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3", "etcd4", "etcd5"}) {
		t.Fatalf("members after 3->5 again: %v", got)
	}
	m.healthy(nodeAddrs(all)...)
	m.mustRead(map[string]string{"k3": "three", "k5": "five"}, nodeAddrs(all)...)
	if out, _ := m.Lab.Run(context.Background(), "etcd4", "cat /var/lib/etcd.*Z/leftover"); !strings.Contains(out, "old") {
		t.Errorf("etcd4's leftover file was not kept aside:\n%s", out)
	}
}

// TestReplaceDeadNodeAtNewAddress kills one host of three and replaces it
// with a new host at a new address: the inventory now gives the new
// address for etcd3. The dead member leaves the list, the new one joins,
// data survives, and a second run changes nothing.
func TestReplaceDeadNodeAtNewAddress(t *testing.T) {
	m := newMLab(t, "it-replace-new", 22, 3)
	all, spare, moved, old := m.etcd3DiedAndMoved()

	untouched := m.CheckSnapshot(t)
	check := m.apply(moved, "replace-node.yml", "-e", "node=etcd3", "--check")
	m.Unchanged(t, untouched, "replace-node --check")
	if check.Code != 0 {
		t.Fatalf("--check: exit %d\n%s", check.Code, check.Summary())
	}
	plan := strings.Join(planActions(check), "\n")
	for _, want := range []string{
		fmt.Sprintf("- member etcd3 (%016x)", old),
		fmt.Sprintf("+ learner etcd3 https://%s:2380", spare.Addr),
		"~ promote etcd3",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("--check plan lacks %q:\n%s", want, plan)
		}
	}
	if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3"}) || m.memberIDs(all[0].Addr)["etcd3"] != old {
		t.Fatalf("--check changed the member list: %v", got)
	}

	o := m.mustReplace(moved, "etcd3", old, all[0].Addr, []string{all[0].Addr, all[1].Addr, spare.Addr})
	t.Logf("replace-node.yml took %.1fs", o.Elapsed.Seconds())
}

// TestReplaceWipedNodeInPlace wipes one host of three (same address, empty
// disk, new host key) and replaces its member in place.
func TestReplaceWipedNodeInPlace(t *testing.T) {
	m := newMLab(t, "it-replace-wipe", 23, 3)
	all := m.nodes()
	three := m.inventory("three.yml", all...)
	m.mustApply(three, "site.yml")
	m.put("k", "v", all[0].Addr)
	old := m.memberIDs(all[0].Addr)["etcd2"]

	if err := m.Lab.Wipe(context.Background(), "etcd2"); err != nil {
		t.Fatal(err)
	}
	m.mustReplace(three, "etcd2", old, all[0].Addr, nodeAddrs(all))
}

// TestMembershipRefusals checks that unsafe or impossible requests are
// refused before anything changes: the member list and the hosts stay as
// they were.
func TestMembershipRefusals(t *testing.T) {
	m := newMLab(t, "it-member-refuse", 24, 3)
	ctx := context.Background()
	all := m.nodes()
	three := m.inventory("three.yml", all...)
	m.mustApply(three, "site.yml")
	full := []string{"etcd1", "etcd2", "etcd3"}
	untouched := func(step string, via string) {
		t.Helper()
		if got := m.members(via); !sameList(got, full) {
			t.Fatalf("%s: member list changed: %v", step, got)
		}
		for _, h := range all {
			out, err := m.Lab.Run(ctx, h.Name, "ls -d /var/lib/etcd.* 2>/dev/null; ls /var/lib/etcd")
			if err != nil || strings.Contains(out, "/var/lib/etcd.") || !strings.Contains(out, "member") {
				t.Errorf("%s: data dir of %s touched (err %v):\n%s", step, h.Name, err, out)
			}
		}
	}
	restart := func(hosts ...string) {
		t.Helper()
		for _, h := range hosts {
			if out, err := m.Lab.Run(ctx, h, "systemctl start etcd"); err != nil {
				t.Fatalf("start etcd on %s: %v\n%s", h, err, out)
			}
		}
		m.mustApply(three, "site.yml") // waits until healthy; changes nothing
	}

	t.Run("scale-in 3->1 while the member that stays is down", func(t *testing.T) {
		if err := m.Lab.StopUnit(ctx, "etcd1", "etcd.service"); err != nil {
			t.Fatal(err)
		}
		o := m.apply(three, "scale-in.yml", "-e", "remove=etcd2,etcd3")
		msg := failedMsgs(o)
		if o.Code == 0 || !strings.Contains(msg, "removing etcd2 while etcd1 is unhealthy leaves 1 healthy of 2 voting members, below the quorum of 2") {
			t.Errorf("exit %d, failures:\n%s", o.Code, msg)
		}
		untouched("scale-in", all[1].Addr)
		for _, h := range []string{"etcd2", "etcd3"} {
			if out, _ := m.Lab.Run(ctx, h, "systemctl is-active etcd; systemctl is-enabled etcd"); !strings.Contains(out, "active\nenabled") {
				t.Errorf("etcd on %s touched:\n%s", h, out)
			}
		}
		restart("etcd1")
	})

	t.Run("replace a member while another is down", func(t *testing.T) {
		for _, h := range []string{"etcd2", "etcd3"} {
			if err := m.Lab.StopUnit(ctx, h, "etcd.service"); err != nil {
				t.Fatal(err)
			}
		}
		o := m.apply(three, "replace-node.yml", "-e", "node=etcd3")
		msg := failedMsgs(o)
		if o.Code == 0 || !strings.Contains(msg, "the cluster has no quorum while etcd2, etcd3 are unhealthy (1 of 3 voting members healthy, quorum is 2)") {
			t.Errorf("exit %d, failures:\n%s", o.Code, msg)
		}
		untouched("replace-node", all[0].Addr)
		restart("etcd2", "etcd3")
	})

	t.Run("joiner at the address of an existing member", func(t *testing.T) {
		renamed := m.inventory("renamed.yml", all[0], all[1], node{"etcd9", all[2].Addr})
		before := m.Snapshot(t, "etcd3", "/etc/etcd")
		o := m.apply(renamed, "scale-out.yml")
		msg := failedMsgs(o)
		want := fmt.Sprintf("etcd9's peer URL https://%s:2380 is already the peer URL of member etcd3", all[2].Addr)
		if o.Code == 0 || !strings.Contains(msg, want) {
			t.Errorf("exit %d, want %q in failures:\n%s", o.Code, want, msg)
		}
		untouched("collision", all[0].Addr)
		if d := harnessDiff(before, m.Snapshot(t, "etcd3", "/etc/etcd")); d != "" {
			t.Errorf("etcd3's /etc/etcd changed:\n%s", d)
		}
		// Two inventory hosts at one address is refused at compile time.
		dup := m.inventory("dup.yml", append(all, node{"etcd4", all[2].Addr})...)
		o = m.apply(dup, "scale-out.yml")
		if o.Code == 0 || !strings.Contains(o.Stdout+o.Stderr, "is also the address of etcd3") {
			t.Errorf("duplicate address: exit %d\n%s\n%s", o.Code, o.Stdout, o.Stderr)
		}
		untouched("duplicate address", all[0].Addr)
	})

	t.Run("replacement host unreachable", func(t *testing.T) {
		if err := m.Lab.Kill("etcd3"); err != nil {
			t.Fatal(err)
		}
		o := m.apply(three, "replace-node.yml", "-e", "node=etcd3")
		if o.Code == 0 {
			t.Fatalf("replace-node with etcd3's host dead and no new address: exit 0")
		}
		if msg := failedMsgs(o); !strings.Contains(msg, "cannot bring up member etcd3: its host etcd3 ("+all[2].Addr+") is not reachable over SSH") {
			t.Errorf("failures:\n%s", msg)
		}
		if got := m.members(all[0].Addr); !sameList(got, full) {
			t.Fatalf("member list changed: %v", got)
		}
	})
}

// TestScaleOutResumesAfterControllerKilled kills etcdplay right after it
// added a learner and runs scale-out.yml again: the second run finds the
// learner in the member list and finishes (start, promote, next joiner).
func TestScaleOutResumesAfterControllerKilled(t *testing.T) {
	m := newMLab(t, "it-member-resume", 25, 3)
	all := m.nodes()
	one := m.inventory("one.yml", all[0])
	three := m.inventory("three.yml", all...)
	m.mustApply(one, "site.yml")
	m.put("k", "v", all[0].Addr)

	m.killWhen(three, "scale-out.yml", "adding etcd2 as a learner", 200*time.Millisecond)
	got := m.members(all[0].Addr)
	if !(sameList(got, []string{"etcd1", "etcd2~"}) || sameList(got, []string{"etcd1", "~"})) {
		t.Fatalf("after the kill the member list is %v; want etcd1 and a learner", got)
	}
	t.Logf("member list after the kill: %v", got)

	o := m.mustApply(three, "scale-out.yml")
	t.Logf("resumed run:\n%s", runLogs(o))
	if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3"}) {
		t.Fatalf("members after the resumed run: %v", got)
	}
	m.healthy(nodeAddrs(all)...)
	m.mustRead(map[string]string{"k": "v"}, nodeAddrs(all)...)
}

// TestScaleInAndReplaceResumeAfterControllerKilled: the controller is
// SIGKILLed in each phase of a scale-in (the member removal, the stop of
// the removed member) and of a replace-node of a wiped host (the removal
// of the old member, the learner's join). Each time the same command run
// again converges: the member list is what was asked, the removed member
// is stopped and disabled with its data moved aside, the replaced member
// has a new id, and every key reads back from every member.
func TestScaleInAndReplaceResumeAfterControllerKilled(t *testing.T) {
	m := newMLab(t, "it-member-kill", 89, 4)
	all := m.nodes()
	three := m.inventory("three.yml", all[:3]...)
	four := m.inventory("four.yml", all...)
	m.mustApply(three, "site.yml")
	m.put("k", "v", all[0].Addr)
	addrs := nodeAddrs(all[:3])

	for _, marker := range []string{"removing member etcd4", "stopping and disabling etcd on etcd4"} {
		m.mustApply(four, "scale-out.yml")
		m.killWhen(four, "scale-in.yml", marker, 0, "-e", "remove=etcd4")
		t.Logf("scale-in killed at %q: members %v", marker, m.members(all[0].Addr))
		m.mustApply(four, "scale-in.yml", "-e", "remove=etcd4")
		if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3"}) {
			t.Fatalf("scale-in killed at %q, run again: members %v", marker, got)
		}
		out, err := m.Lab.Run(context.Background(), "etcd4", "systemctl is-active etcd; systemctl is-enabled etcd; ls -d /var/lib/etcd.*Z")
		if !strings.Contains(out, "inactive") || !strings.Contains(out, "disabled") || !strings.Contains(out, "/var/lib/etcd.") {
			t.Errorf("scale-in killed at %q: etcd4 after the run again (err %v):\n%s", marker, err, out)
		}
		m.healthy(addrs...)
		m.mustRead(map[string]string{"k": "v"}, addrs...)
	}

	for _, kill := range []struct {
		marker string
		delay  time.Duration
	}{{"removing member etcd3", 0}, {"adding etcd3 as a learner", 200 * time.Millisecond}} {
		old := m.memberIDs(all[0].Addr)["etcd3"]
		if err := m.Lab.Wipe(context.Background(), "etcd3"); err != nil {
			t.Fatal(err)
		}
		m.killWhen(three, "replace-node.yml", kill.marker, kill.delay, "-e", "node=etcd3")
		t.Logf("replace-node killed %s after %q: members %v", kill.delay, kill.marker, m.members(all[0].Addr))
		m.mustApply(three, "replace-node.yml", "-e", "node=etcd3")
		if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3"}) {
			t.Fatalf("replace-node killed at %q, run again: members %v", kill.marker, got)
		}
		if m.memberIDs(all[0].Addr)["etcd3"] == old {
			t.Errorf("replace-node killed at %q, run again: etcd3 kept its old id %x", kill.marker, old)
		}
		m.healthy(addrs...)
		m.mustRead(map[string]string{"k": "v"}, addrs...)
	}
}
