package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
)

// genericPlaybook writes an Ansible-compatible playbook of n tasks (file,
// copy and guarded command in turn) and returns its path.
func genericPlaybook(t testing.TB, n int) string {
	var b strings.Builder
	b.WriteString("- name: bench\n  hosts: all\n  gather_facts: false\n  tasks:\n")
	b.WriteString("    - name: bench dir\n      file:\n        path: /var/lib/bench\n        state: directory\n        mode: \"0755\"\n")
	for i := 1; i < n; i++ {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "    - name: dir %d\n      file:\n        path: /var/lib/bench/d%d\n        state: directory\n        mode: \"0750\"\n", i, i)
		case 1:
			fmt.Fprintf(&b, "    - name: file %d\n      copy:\n        dest: /var/lib/bench/f%d.conf\n        content: \"setting_%d = %d\\n\"\n        mode: \"0644\"\n", i, i, i, i)
		case 2:
			fmt.Fprintf(&b, "    - name: once %d\n      command:\n        cmd: touch /var/lib/bench/once%d\n        creates: /var/lib/bench/once%d\n", i, i, i)
		}
	}
	p := filepath.Join(t.TempDir(), fmt.Sprintf("bench-%d.yml", n))
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// median runs f n times and returns the median duration.
func median(n int, f func() time.Duration) time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = f()
	}
	sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
	return ds[n/2]
}

// BenchmarkEngineNoop measures a warm no-op apply of a 30-task and a
// 300-task generic playbook on 3 real lab hosts (targets: 30 tasks < 1 s;
// 300 tasks < 2x the 30-task time), and the same playbooks under
// ansible-playbook when it is installed.
func BenchmarkEngineNoop(b *testing.B) {
	l := lab.ForTest(b, lab.Options{Name: "bench-engine", Block: 50, Hosts: 3})
	e := harness.New(b, l)
	results := map[int]time.Duration{}
	for _, n := range []int{30, 300} {
		pb := genericPlaybook(b, n)
		e.MustApply(b, pb) // converge
		results[n] = median(5, func() time.Duration {
			o := e.MustApply(b, pb)
			if c := o.Changed(); c != 0 {
				b.Fatalf("no-op run changed %d", c)
			}
			return o.Elapsed
		})
		fmt.Printf("BENCH engine warm no-op apply, %3d tasks x 3 hosts: %6.3fs (median of 5; target %s)\n",
			n, results[n].Seconds(), map[int]string{30: "< 1s", 300: "< 2x the 30-task time"}[n])
		if ap, err := exec.LookPath("ansible-playbook"); err == nil {
			// The hosts are converged: Ansible's run is a no-op too.
			d := median(3, func() time.Duration {
				d, changed := runAnsible(b, ap, l.InventoryFile, pb, l.KnownHostsFile, 3, false)
				if changed != 0 {
					b.Fatalf("ansible-playbook no-op run changed %d", changed)
				}
				return d
			})
			fmt.Printf("BENCH ansible-playbook same playbook, warm: %.3fs (median of 3); etcdplay is %.1fx faster\n", d.Seconds(), d.Seconds()/results[n].Seconds())
		} else {
			fmt.Println("BENCH ansible-playbook not installed: no comparison run")
		}
	}
	fmt.Printf("BENCH ratio 300/30 tasks: %.2fx (target < 2x)\n", results[300].Seconds()/results[30].Seconds())
	b.ReportMetric(results[30].Seconds(), "s/noop30")
	b.ReportMetric(results[300].Seconds(), "s/noop300")
}

// BenchmarkValidate measures `etcdplay validate` of generic playbooks of
// 5,000 to 20,000 tasks against 3 hosts: the whole CLI, process start
// included (target for 20,000 tasks: <= 0.5 s), and how it grows.
func BenchmarkValidate(b *testing.B) {
	inv := filepath.Join(b.TempDir(), "inv.yml")
	if err := os.WriteFile(inv, []byte("all:\n  hosts:\n    h1: {ansible_host: 127.0.0.1}\n    h2: {ansible_host: 127.0.0.2}\n    h3: {ansible_host: 127.0.0.3}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := harness.Binary(b)
	var last time.Duration
	for _, n := range []int{5000, 10000, 20000} {
		pb := genericPlaybook(b, n)
		d := median(5, func() time.Duration {
			start := time.Now()
			if out, err := exec.Command(bin, "validate", pb, "-i", inv).CombinedOutput(); err != nil {
				b.Fatalf("validate %d tasks: %v\n%s", n, err, out)
			}
			return time.Since(start)
		})
		growth := ""
		if last > 0 {
			growth = fmt.Sprintf("; %.2fx the half-size playbook", d.Seconds()/last.Seconds())
		}
		fmt.Printf("BENCH etcdplay validate, %5d tasks x 3 hosts: %.3fs (median of 5%s)%s\n", n, d.Seconds(), growth,
			map[int]string{20000: "; target <= 0.5s"}[n])
		last = d
	}
	b.ReportMetric(last.Seconds(), "s/validate20k")
}
