// Package localhost is a modules.HostWriter whose host is this machine: it
// runs host-side modules and probes in process, through the same driver
// and the same JSON trip the agent uses, so controller-side modules can be
// tested against real files in temp dirs. It is for tests; the real
// HostWriter is the runner's SSH session (transport.Conn).
package localhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
)

// Host runs modules locally and records what crossed the "wire".
type Host struct {
	name string

	mu      sync.Mutex
	uploads []string
	calls   []string
}

// New returns a Host named name.
func New(name string) *Host { return &Host{name: name} }

func (h *Host) Name() string    { return h.name }
func (h *Host) Address() string { return "127.0.0.1" }
func (h *Host) Reachable() bool { return true }

// Uploads lists the paths uploaded, in order.
func (h *Host) Uploads() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.uploads...)
}

// Calls lists "MODULE plan", "MODULE apply" and "PROBE probe", in order.
func (h *Host) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

func (h *Host) record(s string) {
	h.mu.Lock()
	h.calls = append(h.calls, s)
	h.mu.Unlock()
}

// Plan runs a host-side module's Plan only.
func (h *Host) Plan(ctx context.Context, module string, args modules.Args) (*modules.Result, error) {
	h.record(module + " plan")
	return h.run(ctx, module, args, true)
}

// Apply runs a host-side module, plan then apply.
func (h *Host) Apply(ctx context.Context, module string, args modules.Args) (*modules.Result, error) {
	h.record(module + " apply")
	return h.run(ctx, module, args, false)
}

func (h *Host) run(ctx context.Context, module string, args modules.Args, check bool) (*modules.Result, error) {
	m, ok := modules.LookupHostSide(module)
	if !ok {
		return nil, fmt.Errorf("no host-side module %q", module)
	}
	wire, err := viaJSON(args)
	if err != nil {
		return nil, err
	}
	res, _ := modules.Run(ctx, module, m, &modules.Env{Host: h.name, Check: check}, wire, nil)
	return res, nil
}

// Probe answers a probe, its answer through JSON as on the wire.
func (h *Host) Probe(ctx context.Context, probe string, args modules.Args, out any) error {
	h.record(probe + " probe")
	wire, err := viaJSON(args)
	if err != nil {
		return err
	}
	return modules.DecodeAnswer(probe, modules.RunProbe(ctx, probe, wire), out)
}

func viaJSON(args modules.Args) (modules.Args, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	var wire modules.Args
	if err := json.Unmarshal(b, &wire); err != nil {
		return nil, err
	}
	return wire, nil
}

// Upload writes src to path atomically. Like the runner's, it does not
// create the parent directory.
func (h *Host) Upload(_ context.Context, src io.Reader, path string, mode uint32) error {
	var b bytes.Buffer
	if _, err := io.Copy(&b, src); err != nil {
		return err
	}
	if err := hostfile.WriteAtomic(path, b.Bytes(), os.FileMode(mode), -1, -1); err != nil {
		return err
	}
	h.mu.Lock()
	h.uploads = append(h.uploads, path)
	h.mu.Unlock()
	return nil
}

// Download copies path to w.
func (h *Host) Download(_ context.Context, path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// Dial dials from the local machine.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

var _ modules.HostWriter = (*Host)(nil)
