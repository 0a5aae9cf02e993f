// Integration tests of the engine on real hosts: systemd-nspawn containers
// with real sshd and systemd (integration/lab), driven by the real etcdplay
// binary over SSH with host key checking on.
package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/modules"
)

// Directories the generic playbook touches, plus the accounts database.
var generic = []string{"/etc", "/var/lib/demo", "/usr/local"}

// TestGenericPlaybookCheckApplyIdempotent exercises check mode, apply and
// idempotence of the generic modules (user, group, file, copy, command,
// systemd, handlers) on 3 real hosts.
func TestGenericPlaybookCheckApplyIdempotent(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-engine", Block: 10, Hosts: 3})
	e := harness.New(t, l)
	pb := harness.Playbook("generic-demo.yml")
	ctx := context.Background()

	before := map[string]map[string]string{}
	for _, h := range l.Hosts() {
		before[h.Name] = e.Snapshot(t, h.Name, generic...)
	}
	check := e.Apply(t, pb, "--check", "--diff")
	if check.Code != 0 {
		t.Fatalf("--check: exit %d\n%s%s", check.Code, check.Summary(), check.Stderr)
	}
	for _, h := range l.Hosts() {
		if d := harness.SnapshotDiff(before[h.Name], e.Snapshot(t, h.Name, generic...)); len(d) > 0 {
			t.Errorf("--check changed %s:\n%s", h.Name, strings.Join(d, "\n"))
		}
		if r := check.Recap[h.Name]; r.Changed != 9 {
			t.Errorf("--check on %s: changed=%d, want 9 (8 tasks and the notified handler)", h.Name, r.Changed)
		}
	}

	apply := e.MustApply(t, pb)
	for _, h := range l.Hosts() {
		if r := apply.Recap[h.Name]; r.Changed == 0 || r.Failed != 0 {
			t.Errorf("apply on %s: %+v", h.Name, r)
		}
		out, err := l.Run(ctx, h.Name, "systemctl is-active demo.service; stat -c '%U %a' /var/lib/demo; cat /etc/demo/demo.conf; id -u demo")
		if err != nil {
			t.Fatalf("inspect %s: %v\n%s", h.Name, err, out)
		}
		for _, want := range []string{"active", "demo 700", "greeting = hello"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s after apply: %q missing from\n%s", h.Name, want, out)
			}
		}
	}

	again := e.MustApply(t, pb)
	if n := again.Changed(); n != 0 {
		t.Errorf("second apply changed %d things, want 0:\n%s", n, again.Stdout)
	}
	noop := e.MustApply(t, pb, "--check", "--diff")
	if n := noop.Changed(); n != 0 {
		t.Errorf("--check on a converged host reports %d changes, want 0", n)
	}
}

// TestUnreachableHostDoesNotStopOthers stops sshd on one real host: it is
// reported unreachable (exit 3) while the others converge.
func TestUnreachableHostDoesNotStopOthers(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-unreach", Block: 11, Hosts: 3})
	e := harness.New(t, l)
	ctx := context.Background()
	if err := l.StopUnit(ctx, "etcd2", "ssh.service"); err != nil {
		t.Fatal(err)
	}
	o := e.Apply(t, harness.Playbook("generic-demo.yml"), "--timeout", "3s")
	if o.Code != 3 {
		t.Fatalf("exit %d, want 3 (a host unreachable)\n%s", o.Code, o.Stdout)
	}
	if r := o.Recap["etcd2"]; r.Unreachable != 1 {
		t.Errorf("etcd2 recap %+v, want unreachable=1", r)
	}
	for _, h := range []string{"etcd1", "etcd3"} {
		if r := o.Recap[h]; r.Failed != 0 || r.Changed == 0 || r.Unreachable != 0 {
			t.Errorf("%s recap %+v: want converged", h, r)
		}
	}
}

// TestHostKeys checks known_hosts handling against real sshd host keys: a
// changed key is refused even with --accept-new-host-keys; an unknown host
// is refused unless --accept-new-host-keys, which records its key.
func TestHostKeys(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-hostkeys", Block: 12, Hosts: 2})
	e := harness.New(t, l)
	orig, err := os.ReadFile(l.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	etcd1, _ := l.Host("etcd1")
	etcd2, _ := l.Host("etcd2")
	var line1, line2 string
	for _, ln := range strings.Split(strings.TrimSpace(string(orig)), "\n") {
		switch {
		case strings.HasPrefix(ln, etcd1.Addr+" "):
			line1 = ln
		case strings.HasPrefix(ln, etcd2.Addr+" "):
			line2 = ln
		}
	}
	if line1 == "" || line2 == "" {
		t.Fatalf("known_hosts lacks the lab hosts:\n%s", orig)
	}
	pb := harness.Playbook("generic-demo.yml")

	// etcd1 presents a key that differs from the one on record.
	wrong := line1[:strings.Index(line1, " ")] + line2[strings.Index(line2, " "):] + "\n" + line2 + "\n"
	write(t, l.KnownHostsFile, wrong)
	o := e.Apply(t, pb, "--accept-new-host-keys", "-l", "etcd1")
	if o.Code != 3 || !strings.Contains(strings.ToLower(o.Summary()), "host key") {
		t.Fatalf("changed host key: exit %d, want 3 with a host key error\n%s", o.Code, o.Summary())
	}
	if got, _ := os.ReadFile(l.KnownHostsFile); string(got) != wrong {
		t.Errorf("a refused key must not be recorded; known_hosts now:\n%s", got)
	}

	// etcd1 is not in known_hosts at all.
	write(t, l.KnownHostsFile, line2+"\n")
	o = e.Apply(t, pb, "-l", "etcd1", "--check")
	if o.Code != 3 {
		t.Fatalf("unknown host: exit %d, want 3\n%s", o.Code, o.Summary())
	}
	o = e.Apply(t, pb, "-l", "etcd1", "--check", "--accept-new-host-keys")
	if o.Code != 0 {
		t.Fatalf("unknown host with --accept-new-host-keys: exit %d\n%s", o.Code, o.Summary())
	}
	got, _ := os.ReadFile(l.KnownHostsFile)
	if !strings.Contains(string(got), etcd1.Addr) {
		t.Errorf("accepted key not recorded:\n%s", got)
	}
	// And now it is known: the plain run connects.
	if o := e.Apply(t, pb, "-l", "etcd1", "--check"); o.Code != 0 {
		t.Errorf("after recording: exit %d\n%s", o.Code, o.Summary())
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
}

// TestSSHConfigAliases: an inventory that names hosts only by alias, as
// an operator's ~/.ssh/config knows them (HostName, User, IdentityFile):
// etcdplay reaches them as ssh would, host keys checked against their
// real addresses, and converges them.
func TestSSHConfigAliases(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-sshconfig", Block: 14, Hosts: 2})
	e := harness.New(t, l)
	dir := t.TempDir()
	var cfg, inv strings.Builder
	inv.WriteString("all:\n  hosts:\n")
	for i, h := range l.Hosts() {
		alias := fmt.Sprintf("db-%c", 'a'+i)
		fmt.Fprintf(&inv, "    %s: {}\n", alias)
		fmt.Fprintf(&cfg, "Host %s\n  HostName %s\n\n", alias, h.Addr)
	}
	fmt.Fprintf(&cfg, "Host db-*\n  User root\n  IdentityFile %s\n", l.KeyFile)
	cfgFile := filepath.Join(dir, "ssh_config")
	e.Inventory = filepath.Join(dir, "inventory.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.Inventory, []byte(inv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// Without the config the aliases do not resolve.
	if o := e.Apply(t, harness.Playbook("generic-demo.yml"), "--ssh-config", "none", "--timeout", "3s"); o.Code != 3 {
		t.Errorf("without the ssh config: exit %d, want 3 (unreachable)", o.Code)
	}
	o := e.MustApply(t, harness.Playbook("generic-demo.yml"), "-F", cfgFile, "-vvv")
	for _, alias := range []string{"db-a", "db-b"} {
		if r := o.Recap[alias]; r.Changed == 0 || r.Failed != 0 {
			t.Errorf("%s: %+v, want converged", alias, r)
		}
	}
	var connected int
	for _, ev := range o.Events {
		for _, h := range l.Hosts() {
			if ev.Type == runner.EventHostConnect && ev.Status == modules.StatusOK && strings.Contains(ev.Msg, "ssh root@"+h.Addr+":22") {
				connected++
			}
		}
	}
	if connected != 2 {
		t.Errorf("connection events naming the config's user and address: %d, want 2", connected)
	}
}

// TestAnsibleExpressions applies a playbook written with Ansible's
// expressions (playbooks/examples/ansible-expressions.yml) to real hosts:
// the rendered files and the when: decisions are Ansible's, and a second
// run changes nothing, nor does ansible-playbook's. Then ansible-playbook
// runs the same file on the same hosts from scratch: the same files with
// the same content, and etcdplay finds nothing to change in them.
func TestAnsibleExpressions(t *testing.T) {
	ansible, err := exec.LookPath("ansible-playbook")
	if err != nil {
		t.Fatalf("ansible-playbook is needed to run the example under both tools (make test installs ansible-core as root on Debian): %v", err)
	}
	l := lab.ForTest(t, lab.Options{Name: "it-jinja", Block: 15, Hosts: 2})
	e := harness.New(t, l)
	e.Inventory = inventoryWithHostVars(t, e.Inventory, "etcd2", map[string]any{"tier": "gold"})
	pb := filepath.Join(harness.RepoRoot(), "playbooks", "examples", "ansible-expressions.yml")
	etcd1, _ := l.Host("etcd1")
	checkHosts := func(tool string) {
		t.Helper()
		for host, want := range map[string]string{
			"etcd1": "members = etcd1,etcd2\ncount = 2\nfirst = " + etcd1.Addr + "\ntier = standard\nhost = ETCD1\n",
			"etcd2": "members = etcd1,etcd2\ncount = 2\nfirst = " + etcd1.Addr + "\ntier = gold\nhost = ETCD2\n",
		} {
			got, err := e.Lab.Run(context.Background(), host, "cat /etc/ansible-expressions/peers.conf")
			if err != nil || got != want {
				t.Errorf("%s: %s peers.conf:\n%s\nwant\n%s (%v)", tool, host, got, want, err)
			}
		}
		for host, want := range map[string][]string{"etcd1": {"first", "peers.conf"}, "etcd2": {"peers.conf", "tier"}} {
			got := hostGlob(t, e, host, "etc/ansible-expressions/*")
			var names []string
			for _, g := range got {
				names = append(names, filepath.Base(g))
			}
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("%s: %s: %v, want %v (when: decided as Ansible does)", tool, host, names, want)
			}
		}
	}
	e.MustApply(t, pb)
	checkHosts("etcdplay")
	if again := e.MustApply(t, pb); again.Changed() != 0 {
		t.Errorf("second run changed %d", again.Changed())
	}
	if _, changed := runAnsible(t, ansible, e.Inventory, pb, l.KnownHostsFile, 2, false); changed != 0 {
		t.Errorf("ansible-playbook after etcdplay changed %d (the tools disagree)", changed)
	}

	for _, h := range []string{"etcd1", "etcd2"} {
		if out, err := l.Run(context.Background(), h, "rm -r /etc/ansible-expressions"); err != nil {
			t.Fatalf("%s: %v\n%s", h, err, out)
		}
	}
	if _, changed := runAnsible(t, ansible, e.Inventory, pb, l.KnownHostsFile, 2, false); changed == 0 {
		t.Error("ansible-playbook changed nothing on hosts without the files")
	}
	checkHosts("ansible-playbook")
	if after := e.MustApply(t, pb); after.Changed() != 0 {
		t.Errorf("etcdplay after ansible-playbook changed %d (the tools disagree):\n%s", after.Changed(), after.Stdout)
	}
}

// TestAgentKilledMidTask kills the agent with SIGKILL on one real host
// while a task runs there: that host is reported with the reason, the
// other converges, and the next run (a fresh agent) converges both.
func TestAgentKilledMidTask(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-agentkill", Block: 79, Hosts: 2})
	e := harness.New(t, l)
	ctx := context.Background()
	pb := filepath.Join(t.TempDir(), "slow.yml")
	writeFile(t, pb, `- hosts: all
  tasks:
    - name: before
      copy: {dest: /etc/it-before, content: "one\n"}
    - name: slow
      command: sleep 3
    - name: after
      copy: {dest: /etc/it-after, content: "two\n"}
`)
	done := make(chan *harness.Outcome, 1)
	go func() { done <- e.Apply(t, pb) }()

	// Wait for the slow task on etcd1, then kill its agent (the process
	// name is the first 15 bytes of etcdplay-agent-<sha>).
	killed := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !killed; time.Sleep(100 * time.Millisecond) {
		out, _ := l.Run(ctx, "etcd1", "pgrep -x sleep >/dev/null && pkill -9 '^etcdplay-agent' && echo killed")
		killed = strings.Contains(out, "killed")
	}
	o := <-done
	if !killed {
		t.Fatalf("never saw the slow task running on etcd1 to kill its agent\n%s", o.Summary())
	}
	if o.Code == 0 || !strings.Contains(o.Summary(), "agent session ended") {
		t.Fatalf("agent killed mid-task: exit %d, want a failure saying the agent session ended\n%s", o.Code, o.Summary())
	}
	if r := o.Recap["etcd1"]; r.Unreachable+r.Failed != 1 {
		t.Errorf("etcd1 recap %+v, want the host reported once", r)
	}
	if r := o.Recap["etcd2"]; r.Failed != 0 || r.Unreachable != 0 || r.Changed != 3 {
		t.Errorf("etcd2 recap %+v, want converged (3 changed)", r)
	}
	if out, _ := l.Run(ctx, "etcd1", "cat /etc/it-after 2>&1"); !strings.Contains(out, "No such file") {
		t.Errorf("etcd1 ran the task after the agent died: /etc/it-after: %s", out)
	}

	again := e.Apply(t, pb)
	if again.Code != 0 {
		t.Fatalf("re-run after the agent was killed: exit %d\n%s", again.Code, again.Summary())
	}
	if r := again.Recap["etcd1"]; r.Changed != 2 {
		t.Errorf("re-run: etcd1 recap %+v, want the slow command and the last copy changed", r)
	}
	for _, h := range []string{"etcd1", "etcd2"} {
		if got := string(e.HostFile(t, h, "/etc/it-after")); got != "two\n" {
			t.Errorf("%s: /etc/it-after = %q after the re-run", h, got)
		}
	}
}

// TestSecretsNeverPrinted: files whose content looks secret (a kubeconfig's
// client-key-data, a password line) and a no_log command are applied to a
// lab host under --check --diff, then for real with --diff, in JSON and in
// text. No output carries a secret: the diffs show sha256 hashes, the
// no_log task its status and a count. What the no_log task registered
// still holds its output: a later task decides on it.
func TestSecretsNeverPrinted(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-secrets", Block: 90, Hosts: 1})
	e := harness.New(t, l)
	pb := filepath.Join(t.TempDir(), "secrets.yml")
	writeFile(t, pb, `- hosts: all
  tasks:
    - name: kubeconfig
      copy:
        dest: /etc/demo-kubeconfig
        mode: "0600"
        content: |
          users:
          - name: admin
            user:
              client-key-data: S3CRETKEYDATA
    - name: password file
      copy:
        dest: /etc/demo-db.conf
        mode: "0600"
        content: "db_password = hunter2\n"
    - name: hidden command
      command:
        cmd: echo TOPSECRET-OUTPUT
      no_log: true
      register: out
    - name: decided on what the hidden command registered
      copy:
        dest: /etc/demo-registered
        content: "seen\n"
      when: "out.stdout is defined and '-OUTPUT' in out.stdout"
`)
	secrets := []string{"S3CRETKEYDATA", "hunter2", "TOPSECRET"}
	check := func(what string, o *harness.Outcome) {
		t.Helper()
		if o.Code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", what, o.Code, o.Stdout, o.Stderr)
		}
		for _, s := range secrets {
			if strings.Contains(o.Stdout+o.Stderr, s) {
				t.Errorf("%s printed %q:\n%s", what, s, o.Stdout)
			}
		}
		if !strings.Contains(o.Stdout, "sha256:") {
			t.Errorf("%s: no hashed diff shown:\n%s", what, o.Stdout)
		}
	}
	check("--check --diff, JSON", e.Apply(t, pb, "--check", "--diff"))
	check("--check --diff, text", e.Etcdplay(t, "apply", pb, "--check", "--diff", "--output", "text"))
	applied := e.Apply(t, pb, "--diff")
	check("--diff, JSON", applied)
	if got := string(e.HostFile(t, "etcd1", "/etc/demo-registered")); got != "seen\n" {
		t.Errorf("the task deciding on the no_log task's registered output did not run: %q", got)
	}
	if got := string(e.HostFile(t, "etcd1", "/etc/demo-kubeconfig")); !strings.Contains(got, "S3CRETKEYDATA") {
		t.Errorf("the kubeconfig on the host is not what was written: %q", got)
	}
	l.MustRun(t, "etcd1", "rm /etc/demo-kubeconfig /etc/demo-db.conf /etc/demo-registered")
	check("--diff, text", e.Etcdplay(t, "apply", pb, "--diff", "--output", "text"))
}
