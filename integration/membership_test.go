package integration

import (
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
