package etcd_tune

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/etcdplay/etcdplay/modules"
)

// probeModule is the host side of etcd_tune: it measures, it never
// changes anything (the fsync test file is removed again). etcd_tune calls
// it through the agent; playbooks have no reason to.
type probeModule struct{}

func init() { modules.Register(probeName, probeModule{}) }

const probeName = "etcd_tune_probe"

var probeSpec = modules.Spec{
	"mode":          {Kind: modules.String, OneOf: []string{"time", "full"}},
	"data_dir":      {Kind: modules.String},
	"address":       {Kind: modules.String},
	"ports":         {Kind: modules.List},
	"install_root":  {Kind: modules.String},
	"binary":        {Kind: modules.String},
	"peers":         {Kind: modules.List},
	"fsync_samples": {Kind: modules.Int},
	"rtt_samples":   {Kind: modules.Int},
	"timeout_ms":    {Kind: modules.Int},
}

// probeResult is what the probe reports (as JSON in Data["probe"], so
// types survive the trip).
type probeResult struct {
	Now       time.Time                  `json:"now"`
	DiskPath  string                     `json:"disk_path,omitempty"`
	FreeBytes uint64                     `json:"free_bytes,omitempty"`
	Fsync     []time.Duration            `json:"fsync,omitempty"`
	FsyncErr  string                     `json:"fsync_error,omitempty"`
	Ports     []portReport               `json:"ports,omitempty"`
	RTT       map[string][]time.Duration `json:"rtt,omitempty"`
	RTTErr    map[string]string          `json:"rtt_error,omitempty"`
}

func (probeModule) Validate(args modules.Args) error { return probeSpec.Check(args) }

// Plan says it will measure; Apply measures (so Data comes back).
func (probeModule) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	c := &modules.Change{Payload: args}
	c.Add("!", "measure", args.Str("mode", "full"))
	return c, nil
}

func (probeModule) Apply(ctx context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	args, _ := c.Payload.(modules.Args)
	r := probeResult{Now: time.Now()}
	if args.Str("mode", "full") == "full" {
		if err := measure(ctx, args, &r); err != nil {
			return nil, fmt.Errorf("%s on %s: %w", probeName, env.Host, err)
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return &modules.Result{Status: modules.StatusOK, Data: map[string]any{"probe": string(b)}}, nil
}

func measure(ctx context.Context, args modules.Args, r *probeResult) error {
	dir, err := existingAncestor(args.Str("data_dir", "/var/lib/etcd"))
	if err != nil {
		return err
	}
	r.DiskPath = dir
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	r.FreeBytes = st.Bavail * uint64(st.Bsize)
	if n := args.Int("fsync_samples", 10); n > 0 {
		r.Fsync, err = fsyncLatency(dir, n)
		if err != nil {
			r.FsyncErr = err.Error()
		}
	}

	var ports []int
	for _, p := range args.Strings("ports") {
		var n int
		if _, err := fmt.Sscan(p, &n); err == nil {
			ports = append(ports, n)
		}
	}
	if len(ports) > 0 {
		addrs := resolve(ctx, args.Str("address", ""))
		r.Ports, err = checkPorts("/proc", addrs, ports, args.Str("install_root", ""), args.Str("binary", ""))
		if err != nil {
			return err
		}
	}

	peers := args.Strings("peers")
	if len(peers) > 0 {
		r.RTT, r.RTTErr = map[string][]time.Duration{}, map[string]string{}
		timeout := time.Duration(args.Int("timeout_ms", 1000)) * time.Millisecond
		for _, p := range peers {
			s, err := connectRTT(ctx, p, args.Int("rtt_samples", 5), timeout)
			if err != nil {
				r.RTTErr[p] = err.Error()
			}
			r.RTT[p] = s
		}
	}
	return nil
}

// existingAncestor is dir, or its nearest existing parent: before the
// first apply the data dir does not exist, but its filesystem does.
func existingAncestor(dir string) (string, error) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil && fi.IsDir() {
			return d, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if d == "/" {
			return "", fmt.Errorf("no existing directory above %s", dir)
		}
	}
}

// fsyncLatency appends n 2 KiB blocks to a fresh file in dir, timing each
// write+fdatasync: the pattern of etcd's WAL (and of the fio test the
// operators' runbook suggests), without needing fio on the host.
func fsyncLatency(dir string, n int) ([]time.Duration, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	path := filepath.Join(dir, ".etcdplay-fsync-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	defer f.Close()
	block := make([]byte, 2048)
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := f.Write(block); err != nil {
			return out, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return out, fmt.Errorf("fdatasync: %w", err)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// connectRTT times TCP connects to addr. A refused connection (nothing
// listens yet, before bootstrap) still costs exactly one round trip, so it
// counts; only silence (a firewall dropping packets) is an error.
func connectRTT(ctx context.Context, addr string, n int, timeout time.Duration) ([]time.Duration, error) {
	var out []time.Duration
	d := net.Dialer{Timeout: timeout}
	for range max(n, 1) {
		start := time.Now()
		conn, err := d.DialContext(ctx, "tcp", addr)
		took := time.Since(start)
		if err == nil {
			conn.Close()
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			return out, err
		}
		out = append(out, took)
	}
	return out, nil
}

func resolve(ctx context.Context, addr string) []net.IP {
	if addr == "" {
		return nil
	}
	if ip := net.ParseIP(addr); ip != nil {
		return []net.IP{ip}
	}
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", addr)
	if err != nil {
		return nil // unknown: every listener on the port counts
	}
	return ips
}
