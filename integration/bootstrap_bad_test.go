package integration

// Bad inputs to site.yml: each must fail with an error that names what is
// wrong (variable, URL, port, hosts) and leave every host byte-for-byte as
// it was, on bare hosts and on a running cluster.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/integration/harness"
	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/integration/mirror"
)

// badSums rewrites the tarball's line of a SHA256SUMS file to another
// (well-formed) digest, as a corrupted or tampered mirror would serve it.
func badSums(version string) func(string, []byte) []byte {
	fake := sha256.Sum256([]byte("tampered " + version))
	return func(name string, data []byte) []byte {
		if name != "SHA256SUMS" {
			return data
		}
		var out []string
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) == 2 && strings.TrimPrefix(f[1], "*") == mirror.TarballName(version) {
				line = hex.EncodeToString(fake[:]) + "  " + f[1]
			}
			out = append(out, line)
		}
		return []byte(strings.Join(out, "\n"))
	}
}

// badTarball flips one byte in the middle of the tarball and serves the
// genuine SHA256SUMS.
func badTarball(name string, data []byte) []byte {
	if !strings.HasSuffix(name, ".tar.gz") {
		return data
	}
	out := append([]byte(nil), data...)
	out[len(out)/2] ^= 0xff
	return out
}

// badInventory writes an inventory of the lab's hosts with extra per-host
// variables (YAML flow mappings, by host name).
func badInventory(t *testing.T, l *lab.Lab, extra map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("all:\n  children:\n    etcd:\n      hosts:\n")
	for _, h := range l.Hosts() {
		fmt.Fprintf(&b, "        %s: {ansible_host: %s", h.Name, h.Addr)
		if x := extra[h.Name]; x != "" {
			b.WriteString(", " + x)
		}
		b.WriteString("}\n")
	}
	fmt.Fprintf(&b, "      vars: {ansible_user: root, ansible_ssh_private_key_file: %s}\n", l.KeyFile)
	p := filepath.Join(t.TempDir(), "inventory.yml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadInputsChangeNothing(t *testing.T) {
	l := lab.ForTest(t, lab.Options{Name: "it-bad", Block: 41, Hosts: 3})
	pb := harness.Playbook("site.yml")
	good := harness.Mirror(t, bootVersion)
	etcd2, _ := l.Host("etcd2")
	ctx := context.Background()

	type badCase struct {
		name      string
		vars      map[string]string
		inventory string
		setup     func(t *testing.T) // may register cleanups
		// fresh runs with an empty user cache: the controller must
		// download the release to meet what the mirror serves.
		fresh bool
		code  int
		want  []string // all in the output
	}
	cases := []badCase{
		{
			name: "wrong checksum",
			vars: map[string]string{"etcd_release_url": harness.TamperedMirror(t, bootVersion, badSums(bootVersion))},
			code: 2,
			want: []string{"checksum", mirror.TarballName(bootVersion)},
		},
		{
			name:  "tampered tarball",
			vars:  map[string]string{"etcd_release_url": harness.TamperedMirror(t, bootVersion, badTarball)},
			fresh: true,
			code:  2,
			want:  []string{"checksum", mirror.TarballName(bootVersion)},
		},
		{
			name: "unreachable release URL",
			vars: map[string]string{"etcd_release_url": "http://127.0.0.1:1"},
			code: 2,
			want: []string{"http://127.0.0.1:1/" + bootVersion + "/", "etcd_release_url"},
		},
		{
			name: "unknown etcd_version",
			vars: map[string]string{"etcd_release_url": good, "etcd_version": "v3.6.99"},
			code: 2,
			want: []string{good + "/v3.6.99/", "404", "etcd_version"},
		},
		{
			name: "malformed etcd_version",
			vars: map[string]string{"etcd_release_url": good, "etcd_version": "3.6"},
			code: 4,
			want: []string{"site.yml:", `variable etcd_version: "3.6"`},
		},
		{
			name: "enable-v2 on 3.6",
			vars: map[string]string{"etcd_release_url": good, "etcd_enable_v2": "true"},
			code: 4,
			want: []string{"site.yml:", "variable etcd_enable_v2", "3.6"},
		},
		{
			name:      "duplicate etcd_name",
			vars:      map[string]string{"etcd_release_url": good},
			inventory: badInventory(t, l, map[string]string{"etcd2": "etcd_name: etcd1"}),
			code:      4,
			want:      []string{"variable etcd_name (host etcd2)", `"etcd1" is also the name of etcd1`},
		},
		{
			name:      "duplicate etcd_address",
			vars:      map[string]string{"etcd_release_url": good},
			inventory: badInventory(t, l, map[string]string{"etcd3": "etcd_address: " + etcd2.Addr}),
			code:      4,
			want:      []string{"variable etcd_address (host etcd3)", etcd2.Addr + " is also the address of etcd2"},
		},
		{
			name:      "one member on another release",
			vars:      map[string]string{"etcd_release_url": good},
			inventory: badInventory(t, l, map[string]string{"etcd3": "etcd_version: v3.5.21"}),
			code:      4,
			want:      []string{"variable etcd_version (host etcd3)", `"v3.5.21" here but "` + bootVersion + `" on etcd1`},
		},
		{
			name: "client port in use",
			vars: map[string]string{"etcd_release_url": good},
			// A second sshd on etcd2's client port: a real process on the
			// host that etcd would collide with.
			setup: func(t *testing.T) {
				cmd := fmt.Sprintf("/usr/sbin/sshd -f /dev/null -h /etc/ssh/ssh_host_ed25519_key -o ListenAddress=%s:2379 -o PidFile=/run/it-squatter.pid", etcd2.Addr)
				if out, err := l.Run(ctx, "etcd2", cmd); err != nil {
					t.Fatalf("squat port 2379 on etcd2: %v\n%s", err, out)
				}
				t.Cleanup(func() { _, _ = l.Run(ctx, "etcd2", "kill $(cat /run/it-squatter.pid)") })
			},
			code: 2,
			want: []string{"etcd2: port 2379 is in use by", "sshd", etcd2.Addr + ":2379", "etcd_client_port"},
		},
	}

	bare := harness.New(t, l).SnapshotAll(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := bootEnv(t, l)
			for k, v := range tc.vars {
				e.Vars[k] = v
			}
			if tc.inventory != "" {
				e.Inventory = tc.inventory
			}
			if tc.fresh {
				e.UserCache = t.TempDir()
			}
			if tc.setup != nil {
				tc.setup(t)
			}
			o := e.Etcdplay(t, "apply", pb)
			out := o.Stdout + o.Stderr
			if o.Code != tc.code {
				t.Errorf("exit %d, want %d\n%s", o.Code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			t.Logf("exit %d: %s", o.Code, badFirstLine(out, tc.want[0]))
			if d := e.ChangedSince(t, bare); len(d) > 0 {
				t.Errorf("a failed run changed hosts:\n%s", strings.Join(d, "\n"))
			}
			if _, err := os.Stat(filepath.Join(e.PKIDir(), "ca.key")); err == nil && tc.code == 4 {
				t.Errorf("a run refused at compile time created a CA on the controller")
			}
		})
	}
	// On a running cluster: an upgrade from a mirror with a wrong checksum
	// installs nothing and restarts nothing.
	t.Run("wrong checksum on a running cluster", func(t *testing.T) {
		e := bootEnv(t, l)
		e.MustApply(t, pb)
		hosts := bootHostNames(l)
		pids := bootPIDs(t, e, hosts)
		conv := e.SnapshotAll(t, harness.CheckDirs...)
		const next = "v3.7.3"
		e.Vars["etcd_release_url"] = harness.TamperedMirror(t, next, badSums(next))
		e.Vars["etcd_version"] = next
		// A version change goes through upgrade.yml (site.yml refuses it
		// on a running cluster, TestUpgrade checks that).
		o := e.Etcdplay(t, "apply", harness.Playbook("upgrade.yml"))
		out := o.Stdout + o.Stderr
		if o.Code != 2 || !strings.Contains(out, "checksum") || !strings.Contains(out, mirror.TarballName(next)) {
			t.Errorf("upgrade from a tampered mirror: exit %d, want 2 naming the checksum of %s:\n%s", o.Code, mirror.TarballName(next), out)
		}
		if d := e.ChangedSince(t, conv, harness.CheckDirs...); len(d) > 0 {
			t.Errorf("a failed upgrade changed hosts:\n%s", strings.Join(d, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
		if now := bootPIDs(t, e, hosts); !maps.Equal(now, pids) {
			t.Errorf("a failed upgrade restarted etcd: PIDs %v, were %v", now, pids)
		}
	})
}

// badFirstLine is the first line of out containing s, for the test log.
func badFirstLine(out, s string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
