package etcd_tune

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// listener is one listening TCP socket from /proc/net/tcp{,6}.
type listener struct {
	IP    net.IP
	Port  int
	Inode uint64
}

// parseProcNetTCP reads /proc/net/tcp or tcp6 and returns the sockets in
// LISTEN state (st 0A). Addresses are hex, each 32-bit word in host
// (little-endian) byte order.
func parseProcNetTCP(data []byte) ([]listener, error) {
	var out []listener
	sc := bufio.NewScanner(bytes.NewReader(data))
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		ipHex, portHex, ok := strings.Cut(f[1], ":")
		if !ok {
			return nil, fmt.Errorf("bad local address %q", f[1])
		}
		raw, err := hex.DecodeString(ipHex)
		if err != nil || (len(raw) != 4 && len(raw) != 16) {
			return nil, fmt.Errorf("bad local address %q", f[1])
		}
		ip := make(net.IP, len(raw))
		for w := 0; w < len(raw); w += 4 {
			ip[w], ip[w+1], ip[w+2], ip[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
		}
		port, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("bad port in %q", f[1])
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad inode %q", f[9])
		}
		out = append(out, listener{IP: ip, Port: int(port), Inode: inode})
	}
	return out, sc.Err()
}

// conflicts reports whether a listener on l blocks binding addrs:port.
// A wildcard on either side conflicts with everything; otherwise only the
// same address does (lab hosts share one loopback network, where other
// members listen on the same port at their own address).
func conflicts(l listener, addrs []net.IP, port int) bool {
	if l.Port != port {
		return false
	}
	if l.IP.IsUnspecified() || len(addrs) == 0 {
		return true
	}
	for _, a := range addrs {
		if a.IsUnspecified() || a.Equal(l.IP) {
			return true
		}
	}
	return false
}

// process is who holds a socket.
type process struct {
	PID    int
	Exe    string
	Cmd    string
	Cgroup string
}

// socketOwner finds the process holding socket inode by scanning
// /proc/*/fd (root sees every process of its PID namespace).
func socketOwner(procRoot string, inode uint64) (*process, error) {
	want := fmt.Sprintf("socket:[%d]", inode)
	pids, err := filepath.Glob(filepath.Join(procRoot, "[0-9]*"))
	if err != nil {
		return nil, err
	}
	for _, dir := range pids {
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || link != want {
				continue
			}
			pid, _ := strconv.Atoi(filepath.Base(dir))
			p := &process{PID: pid}
			p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
			p.Exe = strings.TrimSuffix(p.Exe, " (deleted)")
			if cmd, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
				p.Cmd = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
			}
			if cg, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
				p.Cgroup = string(cg)
			}
			return p, nil
		}
	}
	return nil, nil
}

// ours reports whether p is the etcd that etcdplay installs: the binary
// from the install root or the stable link, or anything in etcd.service.
func ours(p *process, installRoot, binary string) bool {
	if p == nil {
		return false
	}
	switch {
	case p.Exe == binary:
		return true
	case installRoot != "" && strings.HasPrefix(p.Exe, strings.TrimRight(installRoot, "/")+"/") && filepath.Base(p.Exe) == "etcd":
		return true
	case strings.Contains(p.Cgroup, "/etcd.service"):
		return true
	}
	return false
}

// portReport is what the probe says about one port.
type portReport struct {
	Port   int    `json:"port"`
	Busy   bool   `json:"busy"`
	Ours   bool   `json:"ours,omitempty"`
	Holder string `json:"holder,omitempty"` // "pid 812 /usr/sbin/nginx" or why unknown
	Listen string `json:"listen,omitempty"` // the conflicting listen address
}

// checkPorts looks at each port the member will bind.
func checkPorts(procRoot string, addrs []net.IP, ports []int, installRoot, binary string) ([]portReport, error) {
	var ls []listener
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		data, err := os.ReadFile(filepath.Join(procRoot, f))
		if err != nil {
			if os.IsNotExist(err) {
				continue // no IPv6
			}
			return nil, err
		}
		l, err := parseProcNetTCP(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		ls = append(ls, l...)
	}
	var out []portReport
	for _, port := range ports {
		r := portReport{Port: port}
		for _, l := range ls {
			if !conflicts(l, addrs, port) {
				continue
			}
			r.Busy = true
			r.Listen = net.JoinHostPort(l.IP.String(), strconv.Itoa(l.Port))
			p, err := socketOwner(procRoot, l.Inode)
			switch {
			case err != nil:
				r.Holder = "unknown process (" + err.Error() + ")"
			case p == nil:
				r.Holder = "a process not visible from this host"
			default:
				r.Ours = ours(p, installRoot, binary)
				r.Holder = fmt.Sprintf("pid %d %s", p.PID, firstNonEmpty(p.Exe, p.Cmd))
			}
			if !r.Ours {
				break
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
