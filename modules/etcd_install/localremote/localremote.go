// Package localremote is a modules.Remote whose "host" is the local
// machine: it runs host-side modules in process, the way the agent does, so
// controller-side modules can be tested against real files in temp dirs.
// It is for tests; the real Remote is the runner's SSH session.
package localremote

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/etcdplay/etcdplay/modules"
)

// Remote runs modules locally and records what crossed the "wire".
type Remote struct {
	Host string

	mu      sync.Mutex
	Uploads []string // paths uploaded, in order
	Calls   []string // "module check" or "module apply"
}

// New returns a Remote named host.
func New(host string) *Remote { return &Remote{Host: host} }

func (r *Remote) Name() string    { return r.Host }
func (r *Remote) Address() string { return "127.0.0.1" }
func (r *Remote) Reachable() bool { return true }

// Do plans the module and applies unless check, as the agent does. Args
// go through JSON first, as they do on the wire.
func (r *Remote) Do(ctx context.Context, module string, args modules.Args, check bool) (*modules.Result, error) {
	m, ok := modules.Lookup(module)
	if !ok {
		return nil, fmt.Errorf("unknown module %q", module)
	}
	b, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	var wire modules.Args
	if err := json.Unmarshal(b, &wire); err != nil {
		return nil, err
	}
	r.mu.Lock()
	mode := "apply"
	if check {
		mode = "check"
	}
	r.Calls = append(r.Calls, module+" "+mode)
	r.mu.Unlock()
	if err := m.Validate(wire); err != nil {
		return &modules.Result{Status: modules.StatusFailed, Msg: err.Error()}, nil
	}
	env := &modules.Env{Host: r.Host, Check: check}
	c, err := m.Plan(ctx, env, wire)
	if err != nil {
		return &modules.Result{Status: modules.StatusFailed, Msg: err.Error()}, nil
	}
	if c.Empty() {
		return &modules.Result{Status: modules.StatusOK, Change: c}, nil
	}
	if check {
		return &modules.Result{Status: modules.StatusChanged, Change: c}, nil
	}
	res, err := m.Apply(ctx, env, c)
	if err != nil {
		return &modules.Result{Status: modules.StatusFailed, Msg: err.Error(), Change: c}, nil
	}
	return res, nil
}

// Upload writes r to path atomically. Like the runner's, it does not
// create the parent directory.
func (r *Remote) Upload(_ context.Context, src io.Reader, path string, mode uint32) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(os.FileMode(mode)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	r.mu.Lock()
	r.Uploads = append(r.Uploads, path)
	r.mu.Unlock()
	return os.Rename(f.Name(), path)
}

// Download copies path to w.
func (r *Remote) Download(_ context.Context, path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// Dial dials from the local machine.
func (r *Remote) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
