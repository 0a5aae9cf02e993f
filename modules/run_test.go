package modules

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// fakeWriter is a HostWriter that records writes.
type fakeWriter struct{ writes []string }

func (f *fakeWriter) Name() string    { return "h1" }
func (f *fakeWriter) Address() string { return "127.0.0.1" }
func (f *fakeWriter) Reachable() bool { return true }
func (f *fakeWriter) Plan(context.Context, string, Args) (*Result, error) {
	return &Result{Status: StatusOK}, nil
}
func (f *fakeWriter) Probe(context.Context, string, Args, any) error { return nil }
func (f *fakeWriter) Dial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no network here")
}
func (f *fakeWriter) Download(context.Context, string, io.Writer) error { return nil }
func (f *fakeWriter) Apply(_ context.Context, module string, _ Args) (*Result, error) {
	f.writes = append(f.writes, module)
	return &Result{Status: StatusChanged}, nil
}
func (f *fakeWriter) Upload(_ context.Context, _ io.Reader, path string, _ uint32) error {
	f.writes = append(f.writes, "upload "+path)
	return nil
}

// sneaky tries, in Plan, every way to a writer a module could try.
type sneaky struct {
	planErrs []string
	applyErr error
	panicIn  string
}

func (s *sneaky) Validate(args Args) error {
	if args.Bool("invalid", false) {
		return errors.New("bad args")
	}
	return nil
}

func (s *sneaky) Plan(ctx context.Context, env *Env, _ Args) (*Change, error) {
	if s.panicIn == "plan" {
		panic("boom")
	}
	if _, err := env.Writer("h1"); err != nil {
		s.planErrs = append(s.planErrs, err.Error())
	}
	if env.Writers() != nil {
		s.planErrs = append(s.planErrs, "Writers() in Plan")
	}
	if w, ok := env.Remote.(HostWriter); ok {
		_, _ = w.Apply(ctx, "sneaked", nil)
	}
	for _, h := range env.Remotes() {
		if w, ok := h.(HostWriter); ok {
			_, _ = w.Apply(ctx, "sneaked", nil)
		}
	}
	c := &Change{}
	c.Add("!", "thing", "")
	return c, nil
}

func (s *sneaky) Apply(ctx context.Context, env *Env, c *Change) (*Result, error) {
	w, err := env.Writer("h1")
	if err != nil {
		return nil, err
	}
	if _, err := w.Apply(ctx, "real", nil); err != nil {
		return nil, err
	}
	if s.applyErr != nil {
		return &Result{Msg: "half done", Data: map[string]any{"done": 1}}, s.applyErr
	}
	return nil, nil
}

func TestRunHandsWritersOnlyToApply(t *testing.T) {
	for _, check := range []bool{true, false} {
		w := &fakeWriter{}
		m := &sneaky{}
		env := &Env{Host: "h1", Check: check, Remote: w, Hosts: map[string]Host{"h1": w}}
		res, err := Run(context.Background(), "sneaky", m, env, nil, map[string]HostWriter{"h1": w})
		if err != nil || res.Status != StatusChanged {
			t.Fatalf("check=%v: %+v %v", check, res, err)
		}
		want := []string{"real"}
		if check {
			want = nil
		}
		if strings.Join(w.writes, ",") != strings.Join(want, ",") {
			t.Errorf("check=%v: host writes %v, want %v (Plan must not reach a writer)", check, w.writes, want)
		}
		if len(m.planErrs) != 1 || !strings.Contains(m.planErrs[0], "only be changed in Apply") {
			t.Errorf("check=%v: Plan's Writer: %v", check, m.planErrs)
		}
		if _, err := env.Writer("h1"); err == nil {
			t.Errorf("check=%v: a writer is still there after Run", check)
		}
	}
}

func TestRunFailures(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		m    *sneaky
		args Args
		msg  string
		data bool
	}{
		{"invalid args", ctx, &sneaky{}, Args{"invalid": true}, "sneaky: bad args", false},
		{"panic", ctx, &sneaky{panicIn: "plan"}, nil, "module sneaky panicked: boom", false},
		{"failed apply keeps its partial result", ctx, &sneaky{applyErr: errors.New("disk full")}, nil, "half done: disk full", true},
		{"interrupted before apply", cancelled, &sneaky{}, nil, "interrupted: context canceled", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &fakeWriter{}
			res, err := Run(tt.ctx, "sneaky", tt.m, &Env{Host: "h1", Remote: w}, tt.args, map[string]HostWriter{"h1": w})
			if err == nil || res.Status != StatusFailed || res.Msg != tt.msg {
				t.Fatalf("got %+v %v, want failed %q", res, err, tt.msg)
			}
			if tt.data && (res.Data["done"] != 1 || res.Change.Empty()) {
				t.Errorf("partial result lost: %+v", res)
			}
		})
	}
}

// disruptive plans a disruptive change and records whether Apply ran.
type disruptive struct {
	why     string
	applied bool
}

func (d *disruptive) Validate(Args) error { return nil }
func (d *disruptive) Plan(context.Context, *Env, Args) (*Change, error) {
	c := &Change{Disruptive: d.why}
	c.Add("!", "restart m1", "")
	return c, nil
}
func (d *disruptive) Apply(context.Context, *Env, *Change) (*Result, error) {
	d.applied = true
	return nil, nil
}

func TestRunAsksBeforeDisruptiveApply(t *testing.T) {
	refuse := func(context.Context, *Change) error { return errors.New("not confirmed") }
	for _, tt := range []struct {
		name    string
		why     string
		confirm func(context.Context, *Change) error
		check   bool
		asked   bool
		applied bool
	}{
		{"refused", "restarts members", refuse, false, true, false},
		{"confirmed", "restarts members", func(context.Context, *Change) error { return nil }, false, true, true},
		{"no gate (--yes)", "restarts members", nil, false, false, true},
		{"not disruptive", "", refuse, false, false, true},
		{"check never asks", "restarts members", refuse, true, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &disruptive{why: tt.why}
			asked := false
			env := &Env{Host: "h1", Check: tt.check}
			if tt.confirm != nil {
				env.Confirm = func(ctx context.Context, c *Change) error {
					asked = true
					return tt.confirm(ctx, c)
				}
			}
			res, err := Run(context.Background(), "disruptive", m, env, nil, nil)
			if asked != tt.asked || m.applied != tt.applied {
				t.Errorf("asked=%v applied=%v, want %v %v", asked, m.applied, tt.asked, tt.applied)
			}
			if tt.asked && !tt.applied && (err == nil || res.Status != StatusFailed || res.Change.Empty()) {
				t.Errorf("a refused step must fail with its plan: %+v %v", res, err)
			}
		})
	}
}
