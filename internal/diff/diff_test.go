package diff

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/modules"
)

const pemKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----\n"

var etcdYAML = "name: etcd1\ndata-dir: /var/lib/etcd\ninitial-cluster-token: tok-1\nauth-token: simple\n" +
	"heartbeat-interval: 100\nelection-timeout: 1000\nsnapshot-count: 10000\nquota-backend-bytes: 2147483648\n" +
	"listen-client-urls: https://127.0.0.1:2379\nlog-level: info\n"

func TestRenderGolden(t *testing.T) {
	tests := []struct {
		name string
		fd   modules.FileDiff
	}{
		{"new_file", NewFileDiff("/etc/etcd/etcd.yaml", "", "a\nb\n", false)},
		{"delete_all", NewFileDiff("/etc/x", "a\nb\n", "", false)},
		{"one_line_changed", NewFileDiff("/etc/etcd/etcd.yaml", etcdYAML, strings.Replace(etcdYAML, "heartbeat-interval: 100", "heartbeat-interval: 250", 1), false)},
		{"two_hunks", NewFileDiff("/etc/etcd/etcd.yaml", etcdYAML, strings.Replace(strings.Replace(etcdYAML, "name: etcd1", "name: etcd2", 1), "log-level: info", "log-level: debug", 1), false)},
		{"merged_hunk", NewFileDiff("/etc/x", "1\n2\n3\n4\n5\n6\n7\n8\n", "1\nX\n3\n4\n5\n6\nY\n8\n", false)},
		{"no_newline_at_end", NewFileDiff("/etc/x", "a\nb", "a\nb\n", false)},
		{"insert_middle", NewFileDiff("/etc/x", "1\n2\n3\n4\n5\n6\n", "1\n2\n3\nnew\n4\n5\n6\n", false)},
		{"private_key", NewFileDiff("/etc/etcd/pki/server-key.pem", "", pemKey, false)},
		{"private_key_rotated", NewFileDiff("/etc/etcd/pki/server-key.pem", pemKey, strings.Replace(pemKey, "Bkg", "Xyz", 1), false)},
		{"password_var", NewFileDiff("/etc/default/etcdctl", "ETCDCTL_USER=root\n", "ETCDCTL_USER=root\nETCDCTL_PASSWORD=hunter2\n", false)},
		{"secret_flag", NewFileDiff("/etc/x", "plain\n", "also plain\n", true)},
		{"hand_built_secret", modules.FileDiff{Path: "/etc/x", Before: "old secret\n", After: "new secret\n", Secret: true}},
		{"binary", NewFileDiff("/usr/local/bin/etcd", "\x7fELF\x00\x01", "\x7fELF\x00\x02", false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Render(tt.fd)
			golden.Check(t, filepath.Join("testdata", tt.name+".diff"), got)
			if tt.fd.Secret {
				for _, s := range []string{"hunter2", "MHcCAQ", "secret\n", "plain", "ELF"} {
					if strings.Contains(got, s) || strings.Contains(tt.fd.Before+tt.fd.After, s) && tt.name != "hand_built_secret" {
						t.Errorf("secret %q leaked", s)
					}
				}
			}
		})
	}
}

func TestRenderEqualIsEmpty(t *testing.T) {
	if got := Render(NewFileDiff("/x", "a\n", "a\n", false)); got != "" {
		t.Errorf("equal files rendered %q", got)
	}
	if got := Render(NewFileDiff("/x", pemKey, pemKey, false)); got != "" {
		t.Errorf("equal secrets rendered %q", got)
	}
}

func TestIsSecret(t *testing.T) {
	tests := []struct {
		content string
		want    bool
	}{
		{pemKey, true},
		{"-----BEGIN PRIVATE KEY-----\n", true},
		{"-----BEGIN RSA PRIVATE KEY-----\n", true},
		{"-----BEGIN CERTIFICATE-----\nMIIB\n", false},
		{"password: s3cret\n", true},
		{"  db_password = \"x\"\n", true},
		{"export ETCDCTL_PASSWORD=x\n", true},
		{"client_secret: abc\n", true},
		{"api-key: abc\n", true},
		{"token: abc\n", true},
		{"users:\n- name: admin\n  user:\n    client-certificate-data: LS0tLS1CRUdJTiBDRVJU\n    client-key-data: LS0tLS1CRUdJTiBFQyBQUklWQVRF\n", true},
		{"clusters:\n- cluster:\n    certificate-authority-data: LS0tLS1CRUdJTiBDRVJU\n", false},
		{"ssh_private_key: AAAAB3\n", true},
		{"password:\n", false},
		{"password: \"\"\n", false},
		{"password_file: /etc/pw\n", false},
		{"initial-cluster-token: etcd-cluster-1\n", false},
		{"--initial-cluster-token=etcd-cluster-1\n", false},
		{"auth-token: jwt,pub-key=/a,priv-key=/b\n", false},
		{etcdYAML, false},
		{"# the token is rotated daily\n", false},
	}
	for _, tt := range tests {
		if got := IsSecret(tt.content); got != tt.want {
			t.Errorf("IsSecret(%q) = %v, want %v", tt.content, got, tt.want)
		}
	}
}

// TestUnifiedRoundTrip applies each diff to before and checks it yields
// after, over random edits, so the hunks are right and not just stable.
func TestUnifiedRoundTrip(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := range 500 {
		a := randomText(r, r.Intn(40))
		b := mutate(r, a)
		d := Unified("/f", a, b)
		if a == b {
			if d != "" {
				t.Fatalf("case %d: equal inputs gave a diff", i)
			}
			continue
		}
		got, err := apply(a, d)
		if err != nil || got != b {
			t.Fatalf("case %d: patch does not reproduce after (err %v)\nbefore %q\nafter  %q\ngot    %q\ndiff:\n%s", i, err, a, b, got, d)
		}
	}
}

func TestUnifiedLargeFallsBackToReplace(t *testing.T) {
	var a, b strings.Builder
	for i := range 3 * maxEdits {
		fmt.Fprintf(&a, "a%d\n", i)
		fmt.Fprintf(&b, "b%d\n", i)
	}
	d := Unified("/f", a.String(), b.String())
	got, err := apply(a.String(), d)
	if err != nil || got != b.String() {
		t.Fatalf("large replace does not apply: %v", err)
	}
}

func randomText(r *rand.Rand, n int) string {
	var sb strings.Builder
	for range n {
		sb.WriteString(string(rune('a' + r.Intn(5))))
		sb.WriteByte('\n')
	}
	if n > 0 && r.Intn(4) == 0 {
		return strings.TrimSuffix(sb.String(), "\n")
	}
	return sb.String()
}

func mutate(r *rand.Rand, s string) string {
	lines := strings.SplitAfter(s, "\n")
	var out []string
	for _, l := range lines {
		switch r.Intn(6) {
		case 0: // drop
		case 1:
			out = append(out, l, string(rune('a'+r.Intn(7)))+"\n")
		case 2:
			out = append(out, string(rune('a'+r.Intn(7)))+"\n")
		default:
			out = append(out, l)
		}
	}
	res := strings.Join(out, "")
	if r.Intn(5) == 0 {
		res = strings.TrimSuffix(res, "\n")
	}
	return res
}

// apply is a strict patch(1) for one file: every context and removed line
// must match before exactly.
func apply(before, d string) (string, error) {
	src := splitLines(before)
	lines := strings.SplitAfter(d, "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		return "", fmt.Errorf("bad headers")
	}
	var out []string
	pos := 0
	var last *string
	for i := 2; i < len(lines) && lines[i] != ""; i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "@@ "):
			f := strings.Fields(l)
			start, _ := strconv.Atoi(strings.Split(strings.TrimPrefix(f[1], "-"), ",")[0])
			n := 1
			if p := strings.Split(f[1], ","); len(p) == 2 {
				n, _ = strconv.Atoi(p[1])
			}
			if n > 0 {
				start--
			}
			if start < pos {
				return "", fmt.Errorf("hunk goes backwards")
			}
			out = append(out, src[pos:start]...)
			pos = start
			last = nil
		case l == "\\ No newline at end of file\n":
			if last == nil {
				return "", fmt.Errorf("stray no-newline marker")
			}
			*last = strings.TrimSuffix(*last, "\n")
		default:
			body := l[1:]
			switch l[0] {
			case ' ', '-':
				if pos >= len(src) || strings.TrimSuffix(src[pos], "\n") != strings.TrimSuffix(body, "\n") {
					return "", fmt.Errorf("line %d does not match %q", pos+1, body)
				}
				pos++
				if l[0] == ' ' {
					out = append(out, body)
					last = &out[len(out)-1]
				} else {
					last = new(string)
				}
			case '+':
				out = append(out, body)
				last = &out[len(out)-1]
			default:
				return "", fmt.Errorf("bad line %q", l)
			}
		}
	}
	out = append(out, src[pos:]...)
	return strings.Join(out, ""), nil
}
