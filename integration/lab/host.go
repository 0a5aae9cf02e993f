package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

var lookPath = exec.LookPath

// hostState is one host: its overlay (dir/{upper,work,root}) and the
// systemd-nspawn process that boots it.
type hostState struct {
	Host
	dir     string
	hostKey ssh.PublicKey // guarded by Lab.mu

	mu          sync.Mutex
	cmd         *exec.Cmd     // nspawn, when started by this process
	done        chan struct{} // closed when cmd has been waited for
	detachedPID int           // nspawn started by another process (Open)
}

func (h *hostState) root() string  { return filepath.Join(h.dir, "root") }
func (h *hostState) upper() string { return filepath.Join(h.dir, "upper") }
func (h *hostState) work() string  { return filepath.Join(h.dir, "work") }
func (h *hostState) consoleLog() string {
	return filepath.Join(h.dir, "console.log")
}

func (h *hostState) mount(base string) error {
	for _, d := range []string{h.upper(), h.work(), h.root()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", base, h.upper(), h.work())
	if err := syscall.Mount("overlay", h.root(), "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", h.root(), err)
	}
	return nil
}

// provision writes the host's identity into its upper layer and returns its
// fresh host key.
func (h *hostState) provision(authorized ssh.PublicKey) (ssh.PublicKey, error) {
	r := h.root()
	old, _ := filepath.Glob(filepath.Join(r, "etc/ssh/ssh_host_*"))
	for _, k := range old {
		if err := os.Remove(k); err != nil {
			return nil, err
		}
	}
	priv, pub, err := newKeyPair("root@" + h.Name)
	if err != nil {
		return nil, err
	}
	lab := fmt.Sprintf(`# etcdplay lab host %s: sshd on its own loopback address only.
ListenAddress %s
HostKey /etc/ssh/ssh_host_ed25519_key
MaxSessions 64
MaxStartups 64:30:256
PasswordAuthentication no
UseDNS no
`, h.Name, h.Addr)
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n%s\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n", h.Addr, h.Name)
	files := []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{"etc/hostname", []byte(h.Name + "\n"), 0o644},
		{"etc/hosts", []byte(hosts), 0o644},
		{"etc/ssh/ssh_host_ed25519_key", priv, 0o600},
		{"etc/ssh/ssh_host_ed25519_key.pub", ssh.MarshalAuthorizedKey(pub), 0o644},
		{"etc/ssh/sshd_config.d/lab.conf", []byte(lab), 0o644},
		{"root/.ssh/authorized_keys", ssh.MarshalAuthorizedKey(authorized), 0o600},
	}
	for _, f := range files {
		p := filepath.Join(r, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, f.data, f.perm); err != nil {
			return nil, err
		}
		if err := os.Chmod(p, f.perm); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(r, "root/.ssh"), 0o700); err != nil {
		return nil, err
	}
	return pub, nil
}

// boot starts systemd-nspawn in its own session, so that it outlives this
// process when a lab is left up (etcdplay-lab up) and a Ctrl-C aimed at the
// foreground process group does not reach it: teardown is ours to do.
func (h *hostState) boot() error {
	logf, err := os.OpenFile(h.consoleLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	argv := []string{"systemd-nspawn",
		"-D", h.root(), "-M", h.Machine,
		"--boot", "--register=no", "--keep-unit",
		"--console=read-only"}
	cmd := exec.Command(argv[0], argv[1:]...)
	if procs := hostCgroups(h.Machine); len(procs) > 0 {
		// The shell moves itself into the host's cgroups, then becomes
		// nspawn (same PID), so the container starts there.
		script := `for f in ` + strings.Join(procs, " ") + `; do echo $$ > "$f" || exit 1; done; exec "$@"`
		cmd = exec.Command("/bin/sh", append([]string{"-c", script, "nspawn"}, argv...)...)
	}
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %s: start systemd-nspawn: %w", h.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	h.mu.Lock()
	h.cmd, h.done, h.detachedPID = cmd, done, 0
	h.mu.Unlock()
	return nil
}

func (h *hostState) pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		select {
		case <-h.done:
			return 0
		default:
			return h.cmd.Process.Pid
		}
	}
	if h.detachedPID != 0 && isNspawnFor(h.detachedPID, h.root()) {
		return h.detachedPID
	}
	return 0
}

// isNspawnFor guards against signalling a recycled PID.
func isNspawnFor(pid int, root string) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	r, ok := nspawnRoot(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"))
	return ok && filepath.Clean(r) == filepath.Clean(root)
}

// kill cuts the host's power and waits until nothing of it runs.
func (h *hostState) kill() error {
	pid := h.pid()
	if pid == 0 {
		return nil
	}
	kids := childrenOf(pid)
	powerCut(pid)
	h.waitExit(pid, 10*time.Second)
	if !waitGone(append(kids, pid), 10*time.Second) {
		return fmt.Errorf("host %s: container still running after SIGKILL", h.Name)
	}
	return nil
}

// stop asks the container to shut down (nspawn turns SIGTERM into a clean
// poweroff of the container) and cuts the power after grace.
func (h *hostState) stop(grace time.Duration) {
	pid := h.pid()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if h.waitExit(pid, grace) {
		return
	}
	_ = h.kill()
}

func (h *hostState) waitExit(pid int, timeout time.Duration) bool {
	h.mu.Lock()
	done := h.done
	own := h.cmd != nil && h.cmd.Process.Pid == pid
	h.mu.Unlock()
	if own {
		select {
		case <-done:
			return true
		case <-time.After(timeout):
			return false
		}
	}
	return waitGone([]int{pid}, timeout)
}
