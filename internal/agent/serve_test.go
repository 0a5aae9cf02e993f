package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/modules"
)

// setModule converges a value: Plan reports a change when "have" differs
// from "want"; Apply records that it ran.
type setModule struct{ applied atomic.Int32 }

func (m *setModule) Validate(args modules.Args) error {
	if _, ok := args["want"]; !ok {
		return errors.New("want is required")
	}
	return nil
}

func (m *setModule) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c := &modules.Change{Payload: args["want"]}
	if args.Str("have", "") != args.Str("want", "") {
		c.Add("~", "value", fmt.Sprintf("%v -> %v", args["have"], args["want"]))
	}
	env.Logf("planned for %s", env.Host)
	return c, nil
}

func (m *setModule) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	m.applied.Add(1)
	return &modules.Result{Data: map[string]any{"value": c.Payload, "host": env.Host}}, nil
}

// blockModule blocks in Plan until its context ends.
type blockModule struct{ started chan struct{} }

func (blockModule) Validate(modules.Args) error { return nil }
func (m blockModule) Plan(ctx context.Context, _ *modules.Env, _ modules.Args) (*modules.Change, error) {
	m.started <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}
func (blockModule) Apply(context.Context, *modules.Env, *modules.Change) (*modules.Result, error) {
	return nil, nil
}

type panicModule struct{}

func (panicModule) Validate(modules.Args) error { return nil }
func (panicModule) Plan(context.Context, *modules.Env, modules.Args) (*modules.Change, error) {
	panic("boom")
}
func (panicModule) Apply(context.Context, *modules.Env, *modules.Change) (*modules.Result, error) {
	return nil, nil
}

type ctlModule struct{ panicModule }

func (ctlModule) RunsOnController() {}

var (
	set   = &setModule{}
	block = blockModule{started: make(chan struct{}, 16)}
)

func init() {
	modules.Register("test_set", set)
	modules.Register("test_block", block)
	modules.Register("test_panic", panicModule{})
	modules.Register("test_ctl", ctlModule{})
	modules.RegisterInternal("test_internal", set)
	modules.RegisterProbe("test_probe", echoProbe{})
}

// echoProbe answers with its args and a typed value.
type echoProbe struct{}

func (echoProbe) Probe(_ context.Context, args modules.Args) (any, error) {
	if args.Bool("fail", false) {
		return nil, errors.New("asked to fail")
	}
	return map[string]any{"args": args, "when": time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}, nil
}

// session is the controller end of an in-memory agent session.
type session struct {
	t    *testing.T
	w    *io.PipeWriter
	r    *io.PipeReader
	enc  *json.Encoder
	dec  *json.Decoder
	done chan error
}

func start(t *testing.T) *session {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, w: inW, r: outR, enc: json.NewEncoder(inW), dec: json.NewDecoder(bufio.NewReader(outR)), done: make(chan error, 1)}
	s.dec.UseNumber()
	go func() {
		err := Serve(context.Background(), inR, outW)
		outW.Close()
		s.done <- err
	}()
	t.Cleanup(func() {
		go io.Copy(io.Discard, outR)
		inW.Close()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Error("agent did not exit after end of input")
		}
	})
	return s
}

func (s *session) send(r Request) {
	s.t.Helper()
	if err := s.enc.Encode(r); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

// recv returns the next final response, skipping progress logs.
func (s *session) recv() Response {
	s.t.Helper()
	for {
		var r Response
		if err := s.dec.Decode(&r); err != nil {
			s.t.Fatalf("recv: %v", err)
		}
		if r.Log == "" {
			NormalizeResult(r.Result)
			return r
		}
	}
}

func TestHello(t *testing.T) {
	s := start(t)
	s.send(Request{ID: 1, Op: OpHello, Version: ProtocolVersion})
	r := s.recv()
	if r.Error != "" || r.Facts == nil || r.Facts.Protocol != ProtocolVersion || r.Facts.OS == "" || r.Facts.Hostname == "" {
		t.Fatalf("hello: %+v", r)
	}
	s.send(Request{ID: 2, Op: OpHello, Version: ProtocolVersion + 1})
	if r := s.recv(); r.ID != 2 || r.Error == "" || r.Facts != nil {
		t.Fatalf("hello with a wrong version: %+v", r)
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		status  modules.Status
		applied int32
		msg     string
	}{
		{"converged", Request{Module: "test_set", Args: modules.Args{"want": 1, "have": 1}}, modules.StatusOK, 0, ""},
		{"check", Request{Module: "test_set", Args: modules.Args{"want": 2, "have": 1}, Check: true}, modules.StatusChanged, 0, ""},
		{"apply", Request{Module: "test_set", Args: modules.Args{"want": 2, "have": 1}}, modules.StatusChanged, 1, ""},
		{"invalid args", Request{Module: "test_set", Args: modules.Args{}}, modules.StatusFailed, 0, "test_set: want is required"},
		{"unknown module", Request{Module: "nope"}, modules.StatusFailed, 0, `unknown module "nope" in agent dev`},
		{"panic", Request{Module: "test_panic"}, modules.StatusFailed, 0, "module test_panic panicked: boom"},
		{"controller side", Request{Module: "test_ctl"}, modules.StatusFailed, 0, "module test_ctl runs on the controller, not in the agent"},
	}
	s := start(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.t = t
			before := set.applied.Load()
			tt.req.ID, tt.req.Op, tt.req.Host = uint64(i+1), OpRun, "h1"
			s.send(tt.req)
			r := s.recv()
			if r.ID != tt.req.ID || r.Error != "" || r.Result == nil {
				t.Fatalf("response: %+v", r)
			}
			if r.Result.Status != tt.status || r.Result.Msg != tt.msg {
				t.Errorf("got %s %q, want %s %q", r.Result.Status, r.Result.Msg, tt.status, tt.msg)
			}
			if got := set.applied.Load() - before; got != tt.applied {
				t.Errorf("applied %d times, want %d", got, tt.applied)
			}
			if tt.status == modules.StatusChanged && (r.Result.Change == nil || len(r.Result.Change.Actions) != 1) {
				t.Errorf("changed without the change: %+v", r.Result)
			}
		})
	}
}

// Integers must come back as int, not float64, like the YAML the compiler
// decoded; the host is the request's.
func TestRunKeepsTypes(t *testing.T) {
	s := start(t)
	s.send(Request{ID: 2, Op: OpRun, Host: "etcd1", Module: "test_set", Args: modules.Args{"want": 420, "have": 0}})
	r := s.recv()
	if r.Result.Data["value"] != 420 || r.Result.Data["host"] != "etcd1" {
		t.Fatalf("data: %#v", r.Result.Data)
	}
}

// Internal modules run in the agent (controller-side modules call them);
// probes answer as JSON, and a failing or unknown one is a failed Result.
func TestInternalModulesAndProbes(t *testing.T) {
	s := start(t)
	s.send(Request{ID: 1, Op: OpRun, Module: "test_internal", Args: modules.Args{"want": 1, "have": 1}})
	if r := s.recv(); r.Result == nil || r.Result.Status != modules.StatusOK {
		t.Fatalf("internal module: %+v", r)
	}
	for _, tt := range []struct {
		name   string
		req    Request
		status modules.Status
		msg    string
	}{
		{"answer", Request{Module: "test_probe", Args: modules.Args{"n": 3}}, modules.StatusOK, ""},
		{"failure", Request{Module: "test_probe", Args: modules.Args{"fail": true}}, modules.StatusFailed, "probe test_probe: asked to fail"},
		{"unknown", Request{Module: "test_nope"}, modules.StatusFailed, `unknown probe "test_nope"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s.t = t
			tt.req.ID, tt.req.Op = 7, OpProbe
			s.send(tt.req)
			r := s.recv()
			if r.Result == nil || r.Result.Status != tt.status || r.Result.Msg != tt.msg {
				t.Fatalf("got %+v, want %s %q", r.Result, tt.status, tt.msg)
			}
			if tt.status != modules.StatusOK {
				return
			}
			var out struct {
				Args map[string]int `json:"args"`
				When time.Time      `json:"when"`
			}
			if err := modules.DecodeAnswer("test_probe", r.Result, &out); err != nil || out.Args["n"] != 3 || out.When.Day() != 2 {
				t.Errorf("answer %+v, %v", out, err)
			}
		})
	}
}

func TestConcurrentAndCancel(t *testing.T) {
	s := start(t)
	// A blocked request must not hold up the others.
	s.send(Request{ID: 100, Op: OpRun, Module: "test_block"})
	<-block.started
	const n = 50
	for i := 1; i <= n; i++ {
		s.send(Request{ID: uint64(i), Op: OpRun, Module: "test_set", Args: modules.Args{"want": i, "have": i}, Check: true})
	}
	seen := map[uint64]bool{}
	for range n {
		r := s.recv()
		if r.Result.Status != modules.StatusOK {
			t.Fatalf("request %d: %+v", r.ID, r.Result)
		}
		seen[r.ID] = true
	}
	if len(seen) != n {
		t.Fatalf("got %d distinct responses, want %d", len(seen), n)
	}
	s.send(Request{ID: 101, Op: OpCancel, Cancel: 100})
	r := s.recv()
	if r.ID != 100 || r.Result.Status != modules.StatusFailed || r.Result.Msg != "interrupted: "+context.Canceled.Error() {
		t.Fatalf("cancelled request: %+v", r)
	}
}

func TestEndOfInputCancelsRunning(t *testing.T) {
	s := start(t)
	s.send(Request{ID: 1, Op: OpRun, Module: "test_block"})
	<-block.started
	go io.Copy(io.Discard, s.r)
	s.w.Close()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
		s.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("agent kept running after end of input")
	}
}

func TestShutdownWaitsAndAnswers(t *testing.T) {
	s := start(t)
	s.send(Request{ID: 1, Op: OpRun, Module: "test_set", Args: modules.Args{"want": 1}, Check: true})
	s.send(Request{ID: 2, Op: OpShutdown})
	got := map[uint64]bool{}
	got[s.recv().ID] = true
	got[s.recv().ID] = true
	if !got[1] || !got[2] {
		t.Fatalf("responses: %v", got)
	}
}

func TestCopy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	dst := filepath.Join(dir, "dst")
	if err := os.WriteFile(src, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := start(t)
	s.send(Request{ID: 1, Op: OpCopy, Copy: &CopySpec{Src: src, Dst: dst, Mode: 0o640, UID: -1, GID: -1, RemoveSrc: true}})
	if r := s.recv(); r.Error != "" {
		t.Fatal(r.Error)
	}
	b, err := os.ReadFile(dst)
	if err != nil || string(b) != "new" {
		t.Fatalf("dst = %q, %v", b, err)
	}
	if st, _ := os.Stat(dst); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode())
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("src still there: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("leftover files: %v", entries)
	}
	s.send(Request{ID: 2, Op: OpCopy, Copy: &CopySpec{Src: src, Dst: dst, UID: -1, GID: -1}})
	if r := s.recv(); r.Error == "" {
		t.Fatal("copy of a missing file succeeded")
	}
}

func TestUnknownOp(t *testing.T) {
	s := start(t)
	s.send(Request{ID: 7, Op: "dance"})
	if r := s.recv(); r.ID != 7 || r.Error != `unknown op "dance"` {
		t.Fatalf("%+v", r)
	}
}
