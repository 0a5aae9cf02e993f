package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Kill cuts host's power: the container and everything in it get SIGKILL,
// with no shutdown. Its disk (overlay upper dir) is kept; Boot starts it again.
func (l *Lab) Kill(host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if err := h.kill(); err != nil {
		return err
	}
	return l.saveState()
}

// Boot starts a killed host again on its existing disk and waits for SSH.
func (l *Lab) Boot(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if h.pid() != 0 {
		return fmt.Errorf("host %s is already running", host)
	}
	if err := h.boot(); err != nil {
		return err
	}
	if err := l.saveState(); err != nil {
		return err
	}
	return l.waitSSH(ctx, h, l.opts.BootTimeout)
}

// Wipe replaces host by a blank machine at the same address: power cut,
// empty disk (the overlay upper dir), new host key in known_hosts, boot.
func (l *Lab) Wipe(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if err := h.kill(); err != nil {
		return err
	}
	if err := unmountAll(h.root()); err != nil {
		return fmt.Errorf("wipe %s: %w", host, err)
	}
	for _, d := range []string{h.upper(), h.work()} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("wipe %s: %w", host, err)
		}
	}
	if err := h.mount(l.base); err != nil {
		return fmt.Errorf("wipe %s: %w", host, err)
	}
	if err := l.provision(h); err != nil {
		return fmt.Errorf("wipe %s: %w", host, err)
	}
	if err := h.boot(); err != nil {
		return err
	}
	if err := l.saveState(); err != nil {
		return err
	}
	return l.waitSSH(ctx, h, l.opts.BootTimeout)
}

// StopUnit stops a systemd unit on host (etcd.service, say).
func (l *Lab) StopUnit(ctx context.Context, host, unit string) error {
	_, err := l.Run(ctx, host, "systemctl stop -- "+shellQuote(unit))
	return err
}

// BlockPort drops every TCP packet to host's address on port, as a network
// partition would: connections hang rather than being refused. It adds an
// iptables rule on this machine's loopback (the hosts share it), tagged with
// the lab name so Cleanup removes it.
func (l *Lab) BlockPort(host string, port int) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if l.hasRule(h.Addr, port) {
		return nil
	}
	return iptables(append([]string{"-I", "INPUT"}, l.ruleSpec(h.Addr, port)...)...)
}

// UnblockPort removes the rule BlockPort added.
func (l *Lab) UnblockPort(host string, port int) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	for l.hasRule(h.Addr, port) {
		if err := iptables(append([]string{"-D", "INPUT"}, l.ruleSpec(h.Addr, port)...)...); err != nil {
			return err
		}
	}
	return nil
}

func ruleComment(lab string) string { return "etcdplay-lab/" + lab }

func (l *Lab) ruleSpec(addr string, port int) []string {
	return []string{"-i", "lo", "-d", addr + "/32", "-p", "tcp", "--dport", strconv.Itoa(port),
		"-m", "comment", "--comment", ruleComment(l.Name), "-j", "DROP"}
}

func (l *Lab) hasRule(addr string, port int) bool {
	return iptables(append([]string{"-C", "INPUT"}, l.ruleSpec(addr, port)...)...) == nil
}

func iptables(args ...string) error {
	if _, err := lookPath("iptables"); err != nil {
		return fmt.Errorf("iptables not installed (apt-get install iptables): %w", err)
	}
	cmd := exec.Command("iptables", append([]string{"-w"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// removeRules deletes the INPUT rules tagged for lab (every lab when "").
func removeRules(lab string) error {
	if _, err := lookPath("iptables"); err != nil {
		return nil // no iptables: BlockPort cannot have added anything
	}
	out, err := exec.Command("iptables", "-w", "-S", "INPUT").Output()
	if err != nil {
		return fmt.Errorf("iptables -S INPUT: %w", err)
	}
	tag := ruleComment(lab)
	var errs []error
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A INPUT ") || !strings.Contains(line, tag) {
			continue
		}
		// The tag must match the whole comment for a named lab.
		if lab != "" && !strings.Contains(line, tag+" ") && !strings.Contains(line, tag+"\"") {
			continue
		}
		args := strings.Fields(strings.Replace(line, "-A INPUT", "-D INPUT", 1))
		for i := range args {
			args[i] = strings.Trim(args[i], `"`)
		}
		if err := iptables(args...); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove lab firewall rules: %v", errs)
	}
	return nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// HostRoot is the host's root filesystem as seen from this machine (its
// overlay mount), for tests that inspect a host's disk directly.
func (l *Lab) HostRoot(host string) (string, error) {
	h, err := l.host(host)
	if err != nil {
		return "", err
	}
	return h.root(), nil
}
