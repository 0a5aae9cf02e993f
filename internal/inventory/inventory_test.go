package inventory

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func names(hs []*Host) string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return strings.Join(out, " ")
}

func load(t *testing.T, path string) *Inventory {
	t.Helper()
	inv, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestYAMLInventory(t *testing.T) {
	inv := load(t, "testdata/yaml/hosts.yml")
	if got := names(inv.Hosts()); got != "bastion etcd1 etcd2 etcd3 etcd4 prom1 prom2" {
		t.Errorf("hosts = %q", got)
	}
	groups := inv.Groups()
	wantGroups := map[string][]string{
		"all":        {"bastion", "etcd1", "etcd2", "etcd3", "etcd4", "prom1", "prom2"},
		"ungrouped":  {"bastion"},
		"etcd":       {"etcd1", "etcd2", "etcd3", "etcd4"},
		"etcd_new":   {"etcd4"},
		"monitoring": {"etcd1", "prom1", "prom2"},
		"empty":      {},
	}
	if !reflect.DeepEqual(groups, wantGroups) {
		t.Errorf("groups = %v\nwant %v", groups, wantGroups)
	}
	e1, _ := inv.Host("etcd1")
	if !reflect.DeepEqual(e1.Groups, []string{"etcd", "monitoring"}) {
		t.Errorf("etcd1 groups = %v", e1.Groups)
	}
	e4, _ := inv.Host("etcd4")
	if !reflect.DeepEqual(e4.Groups, []string{"etcd", "etcd_new"}) {
		t.Errorf("etcd4 groups = %v", e4.Groups)
	}

	// Precedence: inline group vars by depth < group_vars/all <
	// group_vars/<group> by depth < inline host vars < host_vars.
	tests := []struct {
		host, key string
		want      any
	}{
		{"bastion", "level", "all-file"},
		{"bastion", "ntp_pool", "pool.ntp.org"},
		{"etcd1", "level", "etcd-file"},
		{"etcd2", "level", "host-inline"},
		{"etcd4", "level", "host-file"},
		{"etcd1", "role", "member"},
		{"etcd4", "role", "learner"},
		{"etcd3", "etcd_tls", true},
		{"etcd3", "etcd_data_dir", "/var/lib/etcd"},
		{"prom1", "level", "all-file"},
		{"prom1", "etcd_version", nil},
	}
	for _, tt := range tests {
		h, ok := inv.Host(tt.host)
		if !ok {
			t.Fatalf("no host %s", tt.host)
		}
		if got := h.Vars[tt.key]; !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s %s = %#v, want %#v", tt.host, tt.key, got, tt.want)
		}
	}

	home, _ := os.UserHomeDir()
	conn := []struct {
		host, addr, user, key, become, jump string
		port                                int
	}{
		{"bastion", "127.0.0.1", "deploy", home + "/.ssh/id_ed25519", "false root", "", 2200},
		{"etcd1", "127.0.1.1", "deploy", home + "/.ssh/id_ed25519", "true root", "", 22},
		{"etcd4", "127.0.1.4", "deploy", home + "/.ssh/id_ed25519", "true etcd", "", 22},
		{"prom2", "prom2", "deploy", home + "/.ssh/id_ed25519", "false root", "jump@127.0.0.1:2200", 22},
	}
	for _, c := range conn {
		h, _ := inv.Host(c.host)
		got := []any{h.Address(), h.User(), h.KeyFile(), strings.Join([]string{boolStr(h.Become()), h.BecomeUser()}, " "), h.JumpHost(), h.Port()}
		want := []any{c.addr, c.user, c.key, c.become, c.jump, c.port}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s connection = %v, want %v", c.host, got, want)
		}
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestINIInventory(t *testing.T) {
	inv := load(t, "testdata/ini/hosts")
	if got := names(inv.Hosts()); got != "bastion etcd1 etcd2 etcd3 etcd4" {
		t.Errorf("hosts = %q", got)
	}
	want := map[string][]string{
		"all":       {"bastion", "etcd1", "etcd2", "etcd3", "etcd4"},
		"ungrouped": {"bastion"},
		"etcd":      {"etcd1", "etcd2", "etcd3", "etcd4"},
		"cluster":   {"etcd1", "etcd2", "etcd3", "etcd4"},
	}
	if got := inv.Groups(); !reflect.DeepEqual(got, want) {
		t.Errorf("groups = %v", got)
	}
	e4, _ := inv.Host("etcd4")
	if e4.Port() != 2222 || e4.Address() != "127.0.1.4" || e4.Vars["note"] != "two words" {
		t.Errorf("etcd4: port %d addr %s note %q", e4.Port(), e4.Address(), e4.Vars["note"])
	}
	if e4.Vars["quota"] != 8589934592 || e4.Vars["ansible_become"] != true || !e4.Become() || e4.BecomeUser() != "etcd" {
		t.Errorf("etcd4 typed vars: %#v", e4.Vars)
	}
	e2, _ := inv.Host("etcd2")
	if e2.User() != "admin" || e2.Vars["cluster_name"] != "prod" || e2.JumpHost() != "ops@bastion.example:22" {
		t.Errorf("etcd2: user %s vars %v jump %q", e2.User(), e2.Vars, e2.JumpHost())
	}
	e1, _ := inv.Host("etcd1")
	if e1.JumpHost() != "root@127.0.0.9" {
		t.Errorf("etcd1 jump = %q, want host_vars' etcdplay_jump_host", e1.JumpHost())
	}
	b, _ := inv.Host("bastion")
	home, _ := os.UserHomeDir()
	if b.Port() != 2200 || b.User() != "" || b.Become() || b.KeyFile() != home+"/.ssh/lab" {
		t.Errorf("bastion defaults: %d %s %v %q", b.Port(), b.User(), b.Become(), b.KeyFile())
	}
}

func TestMatch(t *testing.T) {
	inv := load(t, "testdata/yaml/hosts.yml")
	tests := []struct {
		pattern, want string
	}{
		{"all", "bastion etcd1 etcd2 etcd3 etcd4 prom1 prom2"},
		{"*", "bastion etcd1 etcd2 etcd3 etcd4 prom1 prom2"},
		{"etcd", "etcd1 etcd2 etcd3 etcd4"},
		{"etcd2", "etcd2"},
		{"etcd3,etcd1", "etcd1 etcd3"},
		{"etcd3:etcd1", "etcd1 etcd3"},
		{"etcd*", "etcd1 etcd2 etcd3 etcd4"},
		{"prom?", "prom1 prom2"},
		{"etcd:!etcd_new", "etcd1 etcd2 etcd3"},
		{"!etcd_new:etcd", "etcd1 etcd2 etcd3"},
		{"etcd:&monitoring", "etcd1"},
		{"etcd,&monitoring", "etcd1"},
		{"!etcd", "bastion prom1 prom2"},
		{"etcd[0]", "etcd1"},
		{"etcd[-1]", "etcd4"},
		{"etcd[1:2]", "etcd2 etcd3"},
		{"etcd[2:]", "etcd3 etcd4"},
		{"~prom[12]", "prom1 prom2"},
		{"~rom", ""}, // anchored at the start, as re.match
		{"~etcd[13]$", "etcd1 etcd3"},
		{"ungrouped", "bastion"},
		{"nosuch", ""},
		{"nosuch,etcd2", "etcd2"},
		{"empty", ""},
		{" etcd1 , etcd2 ", "etcd1 etcd2"},
	}
	for _, tt := range tests {
		hs, err := inv.Match(tt.pattern)
		if err != nil {
			t.Errorf("Match(%q): %v", tt.pattern, err)
			continue
		}
		if got := names(hs); got != tt.want {
			t.Errorf("Match(%q) = %q, want %q", tt.pattern, got, tt.want)
		}
	}
	for _, bad := range []string{"", " , ", "etcd:!", "~(", "etcd[", "&"} {
		if _, err := inv.Match(bad); err == nil {
			t.Errorf("Match(%q): want an error", bad)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, file, content, want string
	}{
		{"yaml syntax", "inv.yml", "all:\n  hosts:\n    a: [\n", "inv.yml:3: did not find expected node content"},
		{"yaml unknown key", "inv.yml", "all:\n  children:\n    etcd:\n      host:\n        a:\n", `inv.yml:4:7: etcd.host: unknown key in group "etcd", want hosts, vars or children (did you mean "hosts"?)`},
		{"yaml hosts list", "inv.yml", "all:\n  hosts:\n    - a\n    - b\n", "inv.yml:3:5: all.hosts: must be a mapping of host names, got a list"},
		{"yaml vars scalar", "inv.yml", "etcd:\n  hosts:\n    a: 3\n", `inv.yml:3:8: etcd.hosts.a: must be a mapping of variables, got int "3"`},
		{"yaml not a map", "inv.yml", "- a\n", "inv.yml:1:1: an inventory must be a mapping of groups (all: ...), got a list"},
		{"yaml bad range", "inv.yml", "all:\n  hosts:\n    etcd[3:1]:\n", `inv.yml:3:5: all.hosts: host range "etcd[3:1]": bad bounds`},
		{"ini bad section", "inv.ini", "[etcd]\na\n[etcd:hosts2]\n", `inv.ini:3:1: etcd:hosts2: unknown section kind "hosts2", want :vars or :children`},
		{"ini bad host var", "inv.ini", "[etcd]\n  a port\n", `inv.ini:2:3: a: expected key=value, got "port"`},
		{"ini bad vars line", "inv.ini", "[etcd:vars]\nnovalue\n", `inv.ini:2:1: etcd:vars: expected key=value, got "novalue"`},
		{"ini unclosed", "inv.ini", "[etcd\n", `inv.ini:1:1: section header "[etcd" is missing its closing ]`},
		{"ini quote", "inv.ini", "a x=\"open\n", `inv.ini:1:1: ungrouped: unterminated " quote`},
		{"yaml: every problem, in order", "inv.yml", "etcd:\n  host:\n    a:\n  hosts:\n    b: 3\nclient:\n  children: [x]\n",
			`inv.yml:2:3: etcd.host: unknown key in group "etcd", want hosts, vars or children (did you mean "hosts"?)` + "\n" +
				`inv.yml:5:8: etcd.hosts.b: must be a mapping of variables, got int "3"` + "\n" +
				`inv.yml:7:13: client.children: must be a mapping of group names, got a list`},
		{"ini: every problem, in order", "inv.ini", "[etcd\na\n[etcd]\nb port\n[etcd:vars]\nnovalue\n",
			`inv.ini:1:1: section header "[etcd" is missing its closing ]` + "\n" +
				`inv.ini:4:1: b: expected key=value, got "port"` + "\n" +
				`inv.ini:6:1: etcd:vars: expected key=value, got "novalue"`},
		{"group cycle", "inv.ini", "[a:children]\nb\n[b:children]\na\n", "inv.ini: children: group cycle: a -> b -> a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			wd, _ := os.Getwd()
			defer os.Chdir(wd)
			_ = os.Chdir(dir)
			_, err := Load(tt.file)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestVarsFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(p, s string) {
		_ = os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("hosts.yml", "etcd:\n  hosts:\n    a:\n")
	write("group_vars/etcd.yml", "- not a map\n")
	_, err := Load(filepath.Join(dir, "hosts.yml"))
	if err == nil || !strings.Contains(err.Error(), "group_vars/etcd.yml:1:1: vars: must be a mapping of variables, got a list") {
		t.Errorf("got %v", err)
	}
	write("group_vars/etcd.yml", "$ANSIBLE_VAULT;1.1;AES256\n6162\n")
	_, err = Load(filepath.Join(dir, "hosts.yml"))
	if err == nil || !strings.Contains(err.Error(), "ansible-vault") {
		t.Errorf("got %v", err)
	}
}

func TestExpandRange(t *testing.T) {
	tests := []struct{ in, want string }{
		{"etcd", "etcd"},
		{"etcd[1:3]", "etcd1 etcd2 etcd3"},
		{"etcd[01:03].lan", "etcd01.lan etcd02.lan etcd03.lan"},
		{"n[0:6:3]", "n0 n3 n6"},
		{"db-[a:c]", "db-a db-b db-c"},
		{"r[1:2]x[a:b]", "r1xa r1xb r2xa r2xb"},
	}
	for _, tt := range tests {
		got, err := expandRange(tt.in)
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("expandRange(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestProxyJump(t *testing.T) {
	tests := []struct{ in, want string }{
		{"-o ProxyJump=u@h:2", "u@h:2"},
		{`-o "ProxyJump=u@h"`, "u@h"},
		{"-oProxyJump=h", "h"},
		{"-o proxyjump=h", "h"},
		{"-J u@h", "u@h"},
		{"-Ju@h", "u@h"},
		{"-o StrictHostKeyChecking=no", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := proxyJump(tt.in); got != tt.want {
			t.Errorf("proxyJump(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestINIValueTyping checks iniValue against Python's ast.literal_eval,
// which Ansible's ini plugin applies to every value (the expectations are
// python3's answers for the same text).
func TestINIValueTyping(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"1.", 1.0}, {".", "."}, {"1e3", 1000.0}, {"-5", -5}, {"+3", 3},
		{"0644", "0644"}, {"0", 0}, {"00", 0}, {"1_000", 1000}, {"1__0", "1__0"}, {"0x1F", 31},
		{"inf", "inf"}, {"e3", "e3"}, {"1.5", 1.5},
		{"True", true}, {"False", false}, {"None", nil}, {"true", "true"}, {"FALSE", "FALSE"}, {"yes", "yes"},
		{`"2379"`, "2379"}, {`'a b'`, "a b"},
		{`[1, "a"]`, []any{1, "a"}}, {`{"a": 1}`, map[string]any{"a": 1}}, {"(1,2)", []any{1, 2}},
		{"[unclosed", "[unclosed"}, {"v3.6.16", "v3.6.16"}, {"127.0.0.1", "127.0.0.1"},
	}
	for _, tt := range tests {
		if got := iniValue(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("iniValue(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}
