// Production safety on real lab hosts (issue 10): what a real estate does
// to a running cluster, checked with etcd's own client. Lab blocks 60-69.
package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// TestLostStateDirNeverReplacesCA: a second operator without the state dir
// (or with the cluster renamed) runs site.yml against a healthy TLS
// cluster. Before the fix this made a new CA and pushed it with new leaf
// certificates to every member, and the cluster stopped answering. Now the
// run refuses before any host changes, says how to recover, and the
// cluster keeps serving the original certificates.
func TestLostStateDirNeverReplacesCA(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-lost-state", Block: 60, Hosts: 3})
	e := harness.New(t, l)
	e.Vars["etcd_release_url"] = harness.Mirror(t, bootVersion)
	e.MustApply(t, harness.Playbook("site.yml"))
	cli := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cli.Put(ctx, "safety/ca", "kept"); err != nil {
		t.Fatal(err)
	}
	dirs := []string{"/etc", "/usr/local", "/opt"}
	before := e.SnapshotAll(t, dirs...)

	stranger := &harness.Env{Lab: l, StateDir: t.TempDir(), Inventory: e.Inventory, Vars: map[string]string{"etcd_release_url": e.Vars["etcd_release_url"]}}
	cases := []struct {
		name  string
		env   *harness.Env
		extra []string
	}{
		{"empty state dir, check", stranger, []string{"--check", "--diff"}},
		{"empty state dir", stranger, nil},
		{"cluster renamed", e, []string{"-e", "etcd_cluster_name=renamed"}},
	}
	for _, tc := range cases {
		o := tc.env.Apply(t, harness.Playbook("site.yml"), tc.extra...)
		if o.Code == 0 {
			t.Fatalf("%s: site.yml succeeded against a cluster whose CA the controller does not have:\n%s", tc.name, o.Stdout)
		}
		out := o.Summary()
		for _, want := range []string{"already trusts the CA in /etc/etcd/pki/ca.crt", "nothing was changed", "--state-dir", "etcd_ca_cert=PATH"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the refusal does not say %q:\n%s", tc.name, want, out)
			}
		}
		if changed := e.ChangedSince(t, before, dirs...); len(changed) != 0 {
			t.Fatalf("%s: the refused run changed hosts:\n%s", tc.name, strings.Join(changed, "\n"))
		}
	}

	// The cluster never noticed: every member answers over the original
	// certificates, and the owner's state dir still converges with no change.
	for _, h := range l.Hosts() {
		c := e.Client(t, e.Endpoints(h.Name)...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.Get(ctx, "safety/ca")
		cancel()
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
			t.Errorf("%s after the refused runs: %v %v", h.Name, resp, err)
		}
	}
	if again := e.MustApply(t, harness.Playbook("site.yml")); again.Changed() != 0 {
		t.Errorf("site.yml with the original state dir changed %d things:\n%s", again.Changed(), again.Stdout)
	}
}
