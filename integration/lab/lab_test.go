package lab

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"gopkg.in/yaml.v3"
)

// Blocks 201..209 belong to this package's tests.

func TestLabHostsAndFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := ForTest(t, Options{Name: "labtest-faults", Block: 201, Hosts: 2})

	hosts := l.Hosts()
	if len(hosts) != 2 || hosts[0].Addr != "127.0.201.1" || hosts[1].Addr != "127.0.201.2" {
		t.Fatalf("hosts = %+v, want etcd1, etcd2 at 127.0.201.1, .2", hosts)
	}
	if st, err := os.Stat(l.KeyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v, mode %v; want 0600", l.KeyFile, err, st.Mode())
	}
	checkInventory(t, l)

	for _, h := range hosts {
		out, err := l.Run(ctx, h.Name, "hostname; systemctl is-active ssh.service")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Fields(out), []string{h.Name, "active"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: hostname/ssh = %q, want %q", h.Name, got, want)
		}
	}

	// Host keys are checked: etcd2 presenting etcd1's key must be refused.
	keys, err := readKnownHosts(l.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	if keys["127.0.201.1"] == nil || keys["127.0.201.2"] == nil {
		t.Fatalf("known_hosts lacks a host: %v", keys)
	}
	swapped := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{"127.0.201.2"}, keys["127.0.201.1"]) + "\n"
	if err := os.WriteFile(swapped, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	var keyErr *knownhosts.KeyError
	if err := dialWith(ctx, l, "127.0.201.2", swapped); !errors.As(err, &keyErr) {
		t.Fatalf("dial with a wrong host key: err = %v, want a knownhosts.KeyError", err)
	}

	// systemd works inside: a unit starts, and StopUnit stops it.
	if _, err := l.Run(ctx, "etcd2", "systemd-run --unit=labprobe sleep 600 && systemctl is-active labprobe"); err != nil {
		t.Fatal(err)
	}
	if err := l.StopUnit(ctx, "etcd2", "labprobe.service"); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Run(ctx, "etcd2", "systemctl is-active labprobe"); err == nil {
		t.Fatalf("labprobe still active after StopUnit: %q", out)
	}

	// Power cut keeps the disk; Boot brings the host back with it.
	if _, err := l.Run(ctx, "etcd1", "echo kept > /root/marker && sync"); err != nil {
		t.Fatal(err)
	}
	if err := l.Kill("etcd1"); err != nil {
		t.Fatal(err)
	}
	root, err := l.HostRoot("etcd1")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "root/marker")); err != nil || string(b) != "kept\n" {
		t.Fatalf("marker on etcd1's disk after Kill: %q, %v", b, err)
	}
	if _, err := l.Run(ctx, "etcd1", "true"); err == nil {
		t.Fatal("etcd1 still answers after Kill")
	}
	if err := l.Boot(ctx, "etcd1"); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Run(ctx, "etcd1", "cat /root/marker"); err != nil || strings.TrimSpace(out) != "kept" {
		t.Fatalf("after Kill+Boot: marker = %q, %v; want kept", out, err)
	}

	// Wipe: a blank disk and a new host key, same address.
	if err := l.Kill("etcd1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Wipe(ctx, "etcd1"); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Run(ctx, "etcd1", "test ! -e /root/marker && hostname"); err != nil || strings.TrimSpace(out) != "etcd1" {
		t.Fatalf("after Wipe: %q, %v; want no marker, hostname etcd1", out, err)
	}
	newKeys, err := readKnownHosts(l.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	if k := newKeys["127.0.201.1"]; k == nil || string(k.Marshal()) == string(keys["127.0.201.1"].Marshal()) {
		t.Fatal("Wipe kept etcd1's old host key")
	}

	// A blocked port hangs, as behind a partition; unblocking restores it.
	if err := l.BlockPort("etcd2", 22); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", "127.0.201.2:22", time.Second)
	if err == nil {
		conn.Close()
		t.Fatal("port 22 of etcd2 reachable while blocked")
	}
	if err := l.UnblockPort("etcd2", 22); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Run(ctx, "etcd2", "true"); err != nil {
		t.Fatalf("after UnblockPort: %v", err)
	}

	h3, err := l.AddHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h3.Name != "etcd3" || h3.Addr != "127.0.201.3" {
		t.Fatalf("AddHost = %+v, want etcd3 at 127.0.201.3", h3)
	}
	if out, err := l.Run(ctx, "etcd3", "hostname"); err != nil || strings.TrimSpace(out) != "etcd3" {
		t.Fatalf("etcd3: %q, %v", out, err)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l.Dir)
}

// TestCleanupAfterCrash boots a lab in a child test process, SIGKILLs that
// process (no teardown runs), and checks Cleanup removes every trace.
func TestCleanupAfterCrash(t *testing.T) {
	if os.Getenv("ETCDPLAY_LAB_CRASH_CHILD") == "1" {
		l, err := New(context.Background(), Options{Name: "labtest-crash", Block: 202, Hosts: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.BlockPort("etcd1", 2379); err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("LAB READY\n")
		time.Sleep(10 * time.Minute)
		return
	}
	if err := Supported(); err != nil {
		t.Skipf("integration test skipped: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCleanupAfterCrash$", "-test.v")
	cmd.Env = append(os.Environ(), "ETCDPLAY_LAB_CRASH_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if strings.Contains(sc.Text(), "LAB READY") {
				ok = true
				break
			}
		}
		ready <- ok
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatal("child exited before its lab was up")
		}
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("child lab did not come up")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	dir := filepath.Join(DefaultStateRoot(), "labtest-crash")
	if n, _ := labProcs(dir); len(n) != 2 {
		t.Fatalf("after the crash %d nspawn processes run, want the 2 left behind", len(n))
	}
	if err := Cleanup("labtest-crash"); err != nil {
		t.Fatal(err)
	}
	assertGone(t, dir)
	if rules, _ := exec.Command("iptables", "-S", "INPUT").Output(); strings.Contains(string(rules), "etcdplay-lab/labtest-crash") {
		t.Fatalf("firewall rule left behind:\n%s", rules)
	}
}

func assertGone(t *testing.T, dir string) {
	t.Helper()
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), dir) {
		t.Errorf("mounts left under %s:\n%s", dir, mounts)
	}
	if n, in := labProcs(dir); len(n)+len(in) > 0 {
		t.Errorf("processes left: nspawn %v, in containers %v", n, in)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state dir %s still exists (%v)", dir, err)
	}
}

func checkInventory(t *testing.T, l *Lab) {
	t.Helper()
	raw, err := os.ReadFile(l.InventoryFile)
	if err != nil {
		t.Fatal(err)
	}
	var inv struct {
		All struct {
			Children map[string]struct {
				Hosts map[string]map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &inv); err != nil {
		t.Fatal(err)
	}
	hosts := inv.All.Children["etcd"].Hosts
	for _, h := range l.Hosts() {
		v := hosts[h.Name]
		if v["ansible_host"] != h.Addr || v["ansible_user"] != "root" || v["ansible_ssh_private_key_file"] != l.KeyFile {
			t.Errorf("inventory entry for %s = %v", h.Name, v)
		}
	}
}

func dialWith(ctx context.Context, l *Lab, addr, knownHostsFile string) error {
	raw, err := os.ReadFile(l.KeyFile)
	if err != nil {
		return err
	}
	signer, err := ssh.ParsePrivateKey(raw)
	if err != nil {
		return err
	}
	hk, err := knownhosts.New(knownHostsFile)
	if err != nil {
		return err
	}
	c, err := dialSSH(ctx, addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hk, Timeout: 5 * time.Second})
	if err == nil {
		c.Close()
	}
	return err
}
