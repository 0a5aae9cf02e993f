package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/etcdplay/etcdplay/modules"
)

// server is one agent session. Writes to out are serialized by wmu; the
// map of running requests is guarded by mu.
type server struct {
	wmu sync.Mutex
	enc *json.Encoder
	bw  *bufio.Writer

	mu      sync.Mutex
	running map[uint64]context.CancelFunc
	wg      sync.WaitGroup
}

// Serve reads Requests from in and writes Responses to out until in ends,
// a "shutdown" request arrives, or ctx is done. Each request runs in its own
// goroutine. It returns nil on a clean end of input or shutdown.
func Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	ctx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	bw := bufio.NewWriter(out)
	s := &server{bw: bw, enc: json.NewEncoder(bw), running: map[uint64]context.CancelFunc{}}

	dec := NewDecoder(bufio.NewReader(in))
	var err error
	for {
		var req Request
		if derr := dec.Decode(&req); derr != nil {
			if !errors.Is(derr, io.EOF) {
				err = fmt.Errorf("agent: reading request: %w", derr)
			}
			// The controller is gone (or confused): stop what runs.
			cancelAll()
			break
		}
		if req.Op == OpShutdown {
			s.wg.Wait()
			s.send(&Response{ID: req.ID})
			break
		}
		if req.Op == OpCancel {
			s.mu.Lock()
			if cancel := s.running[req.Cancel]; cancel != nil {
				cancel()
			}
			s.mu.Unlock()
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		s.mu.Lock()
		s.running[req.ID] = cancel
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			resp := s.handle(rctx, &req)
			s.mu.Lock()
			delete(s.running, req.ID)
			s.mu.Unlock()
			cancel()
			s.send(resp)
		}()
	}
	s.wg.Wait()
	return err
}

func (s *server) send(r *Response) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// A write error means the controller is gone; the read side will see
	// the end of input and stop the session.
	if err := s.enc.Encode(r); err != nil {
		return
	}
	_ = s.bw.Flush()
}

func (s *server) handle(ctx context.Context, req *Request) *Response {
	resp := &Response{ID: req.ID}
	switch req.Op {
	case OpHello:
		if req.Version != ProtocolVersion {
			resp.Error = fmt.Sprintf("protocol version mismatch: controller speaks %d, agent %s speaks %d; upload a matching agent binary",
				req.Version, Version, ProtocolVersion)
			return resp
		}
		resp.Facts = HostFacts()
	case OpRun:
		resp.Result = s.run(ctx, req)
	case OpProbe:
		resp.Result = s.probe(ctx, req)
	case OpCopy:
		if req.Copy == nil {
			resp.Error = "copy: missing copy spec"
		} else if err := Copy(req.Copy); err != nil {
			resp.Error = err.Error()
		}
	default:
		resp.Error = fmt.Sprintf("unknown op %q", req.Op)
	}
	return resp
}

// run runs a host-side module through the one driver: plan, and apply
// unless in check mode.
func (s *server) run(ctx context.Context, req *Request) *modules.Result {
	m, ok := modules.LookupHostSide(req.Module)
	if !ok {
		if _, pub := modules.Lookup(req.Module); pub {
			return failedf("module %s runs on the controller, not in the agent", req.Module)
		}
		return unknown("module", req.Module)
	}
	args := req.Args
	if args == nil {
		args = modules.Args{}
	}
	Normalize(args)
	env := &modules.Env{
		Host:     req.Host,
		Check:    req.Check,
		Notified: req.Notified,
		Log: func(format string, a ...any) {
			s.send(&Response{ID: req.ID, Log: fmt.Sprintf(format, a...)})
		},
	}
	res, _ := modules.Run(ctx, req.Module, m, env, args, nil)
	return res
}

// probe answers a read-only probe.
func (s *server) probe(ctx context.Context, req *Request) *modules.Result {
	args := req.Args
	if args == nil {
		args = modules.Args{}
	}
	Normalize(args)
	if _, ok := modules.LookupProbe(req.Module); !ok && Lean {
		return unknown("probe", req.Module)
	}
	return modules.RunProbe(ctx, req.Module, args)
}

// Lean is set by cmd/etcdplay-agent, the agent built with modules/hostside
// only.
var Lean bool

// unknown is the answer to a request for a module or probe this agent
// lacks. The lean agent lacking one means the controller chose the wrong
// agent for the host (a module missing its modules.FullAgentOnly mark).
func unknown(what, name string) *modules.Result {
	if Lean {
		return failedf("%s %q is not in etcdplay's lean agent: this host needed etcdplay itself as its agent "+
			"(a bug in etcdplay; as a workaround, pass --agent-binary with the path of etcdplay)", what, name)
	}
	return failedf("unknown %s %q in agent %s", what, name, Version)
}

func failedf(format string, a ...any) *modules.Result {
	return &modules.Result{Status: modules.StatusFailed, Msg: fmt.Sprintf(format, a...)}
}

// HostFacts describes this host and agent.
func HostFacts() *Facts {
	f := &Facts{
		OS:       runtime.GOOS,
		Arch:     runtime.GOARCH,
		UID:      os.Getuid(),
		Version:  Version,
		Protocol: ProtocolVersion,
	}
	f.Hostname, _ = os.Hostname()
	f.Executable, _ = os.Executable()
	return f
}
