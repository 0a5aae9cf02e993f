package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// TestBecomeWithSudo logs in to real hosts as an unprivileged user and
// converges them through sudo (ansible_become), the way most sites allow
// SSH: the agent runs under `sudo -n`, so files end up owned by root.
func TestBecomeWithSudo(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-become", Block: 13, Hosts: 2})
	ctx := context.Background()
	const setup = `set -e
useradd -m -s /bin/bash deploy
install -d -o deploy -g deploy -m 700 /home/deploy/.ssh
install -o deploy -g deploy -m 600 /root/.ssh/authorized_keys /home/deploy/.ssh/authorized_keys
echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy
chmod 440 /etc/sudoers.d/deploy`
	for _, h := range l.Hosts() {
		if out, err := l.Run(ctx, h.Name, setup); err != nil {
			t.Fatalf("set up deploy user on %s: %v\n%s", h.Name, err, out)
		}
	}
	inv, err := os.ReadFile(l.InventoryFile)
	if err != nil {
		t.Fatal(err)
	}
	asDeploy := strings.ReplaceAll(string(inv), "ansible_user: root", "ansible_user: deploy")
	if asDeploy == string(inv) {
		t.Fatalf("lab inventory has no ansible_user: root to replace:\n%s", inv)
	}
	// The same inventory twice: as is, and with ansible_become set the
	// Ansible way, in group_vars/all.yml beside it.
	plain := filepath.Join(t.TempDir(), "hosts.yml")
	writeFile(t, plain, asDeploy)
	dir := t.TempDir()
	become := filepath.Join(dir, "hosts.yml")
	writeFile(t, become, asDeploy)
	if err := os.Mkdir(filepath.Join(dir, "group_vars"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "group_vars", "all.yml"), "ansible_become: true\n")

	e := harness.New(t, l)
	pb := harness.Playbook("generic-demo.yml")

	e.Inventory = plain
	if o := e.Apply(t, pb); o.Code != 2 {
		t.Fatalf("without become an unprivileged user cannot write /etc: exit %d, want 2\n%s", o.Code, o.Summary())
	}

	e.Inventory = become
	e.MustApply(t, pb)
	for _, h := range l.Hosts() {
		out, err := l.Run(ctx, h.Name, "stat -c '%U %a' /etc/demo/demo.conf; systemctl is-active demo.service")
		if err != nil || !strings.Contains(out, "root 644") || !strings.Contains(out, "active") {
			t.Errorf("%s after apply through sudo: %v\n%s", h.Name, err, out)
		}
	}
	if o := e.MustApply(t, pb); o.Changed() != 0 {
		t.Errorf("second apply through sudo changed %d", o.Changed())
	}

	// sudo that asks for a password: etcdplay never types one (sudo -n),
	// so the host fails with the remedy and nothing on it changes.
	h2 := l.Hosts()[1].Name
	if out, err := l.Run(ctx, h2, "echo 'deploy ALL=(ALL) ALL' > /etc/sudoers.d/deploy && echo deploy:s3cret | chpasswd && rm -rf /etc/demo"); err != nil {
		t.Fatalf("make sudo ask for a password on %s: %v\n%s", h2, err, out)
	}
	before := e.SnapshotAll(t, "/etc", "/usr/local")
	o := e.Apply(t, pb)
	if o.Code == 0 || !strings.Contains(o.Summary(), "a password is required") || !strings.Contains(o.Summary(), "NOPASSWD") {
		t.Errorf("sudo asking for a password: exit %d, want a failure naming the password prompt and NOPASSWD\n%s", o.Code, o.Summary())
	}
	if changed := e.ChangedSince(t, before, "/etc", "/usr/local"); len(changed) != 0 {
		t.Errorf("a host whose sudo wants a password was changed:\n%s", strings.Join(changed, "\n"))
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
