package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
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

	check := m.apply(three, "scale-out.yml", "--check")
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
}

// TestReplaceDeadNodeAtNewAddress kills one host of three and replaces it
// with a new host at a new address: the inventory now gives the new
// address for etcd3. The dead member leaves the list, the new one joins,
// data survives, and a second run changes nothing.
func TestReplaceDeadNodeAtNewAddress(t *testing.T) {
	m := newMLab(t, "it-replace-new", 22, 3)
	all := m.nodes()
	three := m.inventory("three.yml", all...)
	m.mustApply(three, "site.yml")
	m.put("k", "v", all[0].Addr)
	old := m.memberIDs(all[0].Addr)["etcd3"]

	if err := m.Lab.Kill("etcd3"); err != nil {
		t.Fatal(err)
	}
	spare, err := m.Lab.AddHost(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	moved := m.inventory("moved.yml", all[0], all[1], node{"etcd3", spare.Addr})

	o := m.mustApply(moved, "replace-node.yml", "-e", "node=etcd3")
	t.Logf("replace-node.yml took %.1fs", o.Elapsed.Seconds())
	now := []string{all[0].Addr, all[1].Addr, spare.Addr}
	if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3"}) {
		t.Fatalf("members after replace: %v", got)
	}
	ids := m.memberIDs(all[0].Addr)
	if ids["etcd3"] == old {
		t.Errorf("etcd3 kept its old member id %x", old)
	}
	m.healthy(now...)
	m.mustRead(map[string]string{"k": "v"}, now...)

	again := m.mustApply(moved, "replace-node.yml", "-e", "node=etcd3")
	if c := again.Changed(); c != 0 {
		t.Errorf("second replace-node changed %d: %v", c, planActions(again))
	}
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
	m.mustApply(three, "replace-node.yml", "-e", "node=etcd2")
	if got := m.members(all[0].Addr); !sameList(got, []string{"etcd1", "etcd2", "etcd3"}) {
		t.Fatalf("members after replace: %v", got)
	}
	if m.memberIDs(all[0].Addr)["etcd2"] == old {
		t.Errorf("etcd2 kept its old member id %x", old)
	}
	m.healthy(nodeAddrs(all)...)
	m.mustRead(map[string]string{"k": "v"}, nodeAddrs(all)...)

	again := m.mustApply(three, "replace-node.yml", "-e", "node=etcd2")
	if c := again.Changed(); c != 0 {
		t.Errorf("second replace-node changed %d: %v", c, planActions(again))
	}
}
