package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process as read from /proc.
type proc struct {
	pid, ppid int
	cmdline   []string
}

func listProcs() []proc {
	ents, _ := os.ReadDir("/proc")
	var ps []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name in parentheses may hold spaces: parse after it.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		raw, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		var args []string
		if len(raw) > 0 {
			args = strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		}
		ps = append(ps, proc{pid: pid, ppid: ppid, cmdline: args})
	}
	return ps
}

// nspawnRoot returns the -D directory of a systemd-nspawn command line.
func nspawnRoot(args []string) (string, bool) {
	if len(args) == 0 || filepath.Base(args[0]) != "systemd-nspawn" {
		return "", false
	}
	for i, a := range args {
		if a == "-D" && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--directory="); ok {
			return v, true
		}
	}
	return "", false
}

// rootsUnder reports whether a process's root filesystem (as its own mount
// namespace sees it) is an overlay whose layers live under dir: this finds a
// container's processes even after their nspawn parent is gone.
func rootsUnder(pid int, dir string) bool {
	mi, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "mountinfo"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == "/" {
			return strings.Contains(line, "upperdir="+dir)
		}
	}
	return false
}

// labProcs finds the nspawn processes whose root directory is under dir and
// every process running inside a container rooted under dir.
func labProcs(dir string) (nspawns, inside []int) {
	self := os.Getpid()
	dir = filepath.Clean(dir) + "/"
	for _, p := range listProcs() {
		if p.pid == self {
			continue
		}
		if root, ok := nspawnRoot(p.cmdline); ok {
			if strings.HasPrefix(filepath.Clean(root)+"/", dir) {
				nspawns = append(nspawns, p.pid)
			}
			continue
		}
		if rootsUnder(p.pid, dir) {
			inside = append(inside, p.pid)
		}
	}
	return nspawns, inside
}

func childrenOf(pid int) []int {
	var kids []int
	for _, p := range listProcs() {
		if p.ppid == pid {
			kids = append(kids, p.pid)
		}
	}
	return kids
}

func alive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && !bytes.HasPrefix(bytes.TrimSpace(stat[i+1:]), []byte("Z"))
}

// powerCut kills a container like pulling its plug: SIGKILL to its init
// (which takes the whole PID namespace down with it) and to nspawn. Killing
// only nspawn would leave the container running, re-parented to PID 1.
func powerCut(nspawnPID int) {
	for _, kid := range childrenOf(nspawnPID) {
		_ = syscall.Kill(kid, syscall.SIGKILL)
	}
	_ = syscall.Kill(nspawnPID, syscall.SIGKILL)
}

// waitGone waits until none of pids is alive, or timeout.
func waitGone(pids []int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		left := false
		for _, p := range pids {
			if alive(p) {
				left = true
				break
			}
		}
		if !left {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
