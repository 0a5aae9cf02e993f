// Package moduletest holds what the module packages' tests share. It is
// imported by tests only.
package moduletest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/hostfile/hostfiletest"
	"github.com/etcdplay/etcdplay/modules"
)

// ArgCase is one Validate case: the arguments, and the argument the
// *modules.ArgError must name ("" when the arguments are valid).
type ArgCase struct {
	Args    modules.Args
	WantArg string
}

// CheckValidate runs m.Validate on every case.
func CheckValidate(t *testing.T, m modules.Module, cases []ArgCase) {
	t.Helper()
	for _, tt := range cases {
		err := m.Validate(tt.Args)
		var ae *modules.ArgError
		switch {
		case tt.WantArg == "" && err != nil:
			t.Errorf("Validate(%v) = %v", tt.Args, err)
		case tt.WantArg != "" && (!errors.As(err, &ae) || ae.Arg != tt.WantArg):
			t.Errorf("Validate(%v) = %v, want error on %q", tt.Args, err, tt.WantArg)
		}
	}
}

// CheckPlan validates args, plans them as --check does and fails the test
// if that changed anything below root (the host's tree in the test). It
// returns the plan and its actions, one a line, with root shown as R.
func CheckPlan(t *testing.T, m modules.Module, root string, args modules.Args) (*modules.Change, string) {
	t.Helper()
	if err := m.Validate(args); err != nil {
		t.Fatal(err)
	}
	before := hostfiletest.Snapshot(t, root)
	c, err := m.Plan(context.Background(), &modules.Env{Check: true}, args)
	if err != nil {
		t.Fatal(err)
	}
	if after := hostfiletest.Snapshot(t, root); after != before {
		t.Fatalf("check-mode Plan changed the tree:\n%s\n---\n%s", before, after)
	}
	var got []string
	for _, a := range c.Actions {
		got = append(got, strings.ReplaceAll(a.String(), root, "R"))
	}
	return c, strings.Join(got, "\n")
}

// ApplyChanged applies a non-empty plan and fails the test unless it
// reports changed.
func ApplyChanged(t *testing.T, m modules.Module, c *modules.Change) {
	t.Helper()
	res, err := m.Apply(context.Background(), &modules.Env{}, c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != modules.StatusChanged {
		t.Errorf("status %s", res.Status)
	}
}

// PlansNothing plans args again, as a run after the apply would, and
// fails the test unless the plan is empty and left root as it was.
func PlansNothing(t *testing.T, m modules.Module, root string, args modules.Args) {
	t.Helper()
	before := hostfiletest.Snapshot(t, root)
	c, err := m.Plan(context.Background(), &modules.Env{}, args)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Empty() {
		t.Errorf("not idempotent, second plan: %v", c.Actions)
	}
	if after := hostfiletest.Snapshot(t, root); after != before {
		t.Errorf("second plan changed the tree")
	}
}

// Settled checks err against a table case's expected error: want "" is
// no error (any error fails the test), otherwise an error containing want.
// It reports whether the case expected an error and so is done.
func Settled(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
	return true
}
