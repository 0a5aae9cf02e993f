package etcd_tune

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// prober is the host side of etcd_tune: it measures, it never changes
// anything (the fsync test file is removed again). It is a probe, so
// etcd_tune's Plan, and --check, may run it.
type prober struct{}

func init() { modules.RegisterProbe(probeName, prober{}) }

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
	// fsync_new_only: no samples where the data dir holds a member.
	"fsync_new_only": {Kind: modules.Bool},
	"rtt_samples":    {Kind: modules.Int},
	"timeout_ms":     {Kind: modules.Int},
}

// probeResult is what the probe reports.
type probeResult struct {
	Now       time.Time       `json:"now"`
	DiskPath  string          `json:"disk_path,omitempty"`
	FreeBytes uint64          `json:"free_bytes,omitempty"`
	Fsync     []time.Duration `json:"fsync,omitempty"`
	FsyncErr  string          `json:"fsync_error,omitempty"`
	// FsyncSkipped: the data dir holds a member already, and sampling
	// was asked for new members only.
	FsyncSkipped bool                       `json:"fsync_skipped,omitempty"`
	Ports        []portReport               `json:"ports,omitempty"`
	RTT          map[string][]time.Duration `json:"rtt,omitempty"`
	RTTErr       map[string]string          `json:"rtt_error,omitempty"`
}

func (prober) Probe(ctx context.Context, args modules.Args) (any, error) {
	if err := probeSpec.Check(args); err != nil {
		return nil, err
	}
	r := probeResult{Now: time.Now()}
	if args.Str("mode", "full") == "full" {
		if err := measure(ctx, args, &r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func measure(ctx context.Context, args modules.Args, r *probeResult) error {
	dataDir := args.Str("data_dir", "/var/lib/etcd")
	free, dir, err := hostfile.FreeBytes(dataDir)
	if err != nil {
		return err
	}
	r.DiskPath, r.FreeBytes = dir, free
	_, statErr := os.Stat(etcd.MemberDir(dataDir))
	r.FsyncSkipped = args.Bool("fsync_new_only", false) && statErr == nil
	if n := args.Int("fsync_samples", 10); n > 0 && !r.FsyncSkipped {
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
