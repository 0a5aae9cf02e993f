package etcd_restore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/etcdplay/etcdplay/internal/etcdtest"
	"github.com/etcdplay/etcdplay/internal/golden"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/hostprobe"
)

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		args modules.Args
		ok   bool
	}{
		{modules.Args{"snapshot": "/b/s.db"}, true},
		{modules.Args{"snapshot": "latest", "skip_hash_check": "true", "timeout": "5m", "token": "prod-2"}, true},
		{modules.Args{}, false},
		{modules.Args{"snapshot": " "}, false},
		{modules.Args{"snapshot": "/s.db", "token": "a b"}, false},
		{modules.Args{"snapshot": "/s.db", "skip_hash_check": "maybe"}, false},
		{modules.Args{"snapshot": "/s.db", "snapshto": "x"}, false},
	} {
		if err := (Module{}).Validate(tt.args); (err == nil) != tt.ok {
			t.Errorf("Validate(%v) = %v", tt.args, err)
		}
	}
}

// fakeHost is a read-only host (a modules.Host, never a writer) that
// answers the probes from its probe text and records anything else: Plan
// must never ask for anything but the probes.
type fakeHost struct {
	name   string
	probe  string
	mu     sync.Mutex
	calls  []string
	probes int
}

func (f *fakeHost) Name() string    { return f.name }
func (f *fakeHost) Address() string { return "127.0.0.1" }
func (f *fakeHost) Reachable() bool { return true }
func (f *fakeHost) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
func (f *fakeHost) Download(_ context.Context, p string, _ io.Writer) error {
	f.record("download " + p)
	return nil
}
func (f *fakeHost) Plan(_ context.Context, module string, args modules.Args) (*modules.Result, error) {
	f.record("plan " + module)
	return &modules.Result{Status: modules.StatusFailed, Msg: "not allowed in a test of Plan"}, nil
}
func (f *fakeHost) Probe(_ context.Context, probe string, args modules.Args, out any) error {
	var answer any
	switch probe {
	case hostprobe.Name:
		f.record("probe")
		answer = f.facts(args)
	case "etcd_datadir":
		dirs := args.Strings("dirs")
		if f.kv()["uploadlink"] == "yes" && slices.Contains(dirs, "/var/tmp/etcdplay") {
			return fmt.Errorf("/var/tmp/etcdplay exists and is not a directory (L---------)")
		}
		answer = f.layout(dirs)
	default:
		return fmt.Errorf("unexpected probe %s", probe)
	}
	b, err := json.Marshal(answer)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// kv is the fake's probe text as a map.
func (f *fakeHost) kv() map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(f.probe, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// facts answers the host probe from active=, etcdutl=, user=, upavail=
// (KiB free where the snapshot is uploaded) and taken= (first: the
// restore's own paths exist at the first probe; always).
func (f *fakeHost) facts(args modules.Args) hostprobe.Facts {
	kv := f.kv()
	f.mu.Lock()
	f.probes++
	taken := kv["taken"] == "always" || kv["taken"] == "first" && f.probes == 1
	f.mu.Unlock()
	fs := hostprobe.Facts{Units: map[string]hostprobe.Unit{}, Paths: map[string]hostprobe.Path{},
		Users: map[string]bool{}, Free: map[string]uint64{}}
	for _, u := range args.Strings("units") {
		fs.Units[u] = hostprobe.Unit{Load: "loaded", Active: kv["active"]}
	}
	for _, p := range args.Strings("paths") {
		if strings.HasSuffix(p, "/etcdutl") {
			fs.Paths[p] = hostprobe.Path{Exists: kv["etcdutl"] == "yes", Executable: kv["etcdutl"] == "yes"}
		} else if taken {
			fs.Paths[p] = hostprobe.Path{Exists: true}
		}
	}
	for _, u := range args.Strings("users") {
		fs.Users[u] = kv["user"] == "yes"
	}
	up, _ := strconv.ParseUint(kv["upavail"], 10, 64)
	for _, p := range args.Strings("free") {
		fs.Free[p] = up << 10
	}
	return fs
}

// layout answers etcd_datadir's probe from the fake's probe text: data=,
// wal= (yes: it holds a member dir), mount= (the data dir is a mount point)
// and avail= (KiB free).
func (f *fakeHost) layout(dirs []string) []etcd_install.DirLayout {
	kv := f.kv()
	avail, _ := strconv.ParseUint(kv["avail"], 10, 64)
	var out []etcd_install.DirLayout
	for i, d := range dirs {
		has := kv["data"] == "yes"
		if i > 0 {
			has = kv["wal"] == "yes"
		}
		l := etcd_install.DirLayout{Path: d, Exists: has, Mount: i == 0 && kv["mount"] == "yes", FreeBytes: avail << 10}
		if l.Mount {
			l.Exists = true
		}
		if has {
			l.Data = []string{"member"}
		}
		switch {
		case kv["leftover"] != "yes":
		case d == "/var/tmp/etcdplay":
			l.Data = []string{"restore-20260101T000000Z.db", "etcd-v3.6.16-linux-amd64.etcdplay.tar.zst"}
		case i == 0:
			l.Besides = []string{d + ".pre-restore-20260101T000000Z", d + ".restore-20260101T000000Z", d + ".restore-mine"}
		}
		out = append(out, l)
	}
	return out
}

func (f *fakeHost) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

const goodProbe = "data=yes\nactive=active\netcdutl=yes\nuser=yes\navail=10485760\nupavail=10485760\n"

func labEnv(probes map[string]string) (*modules.Env, map[string]*fakeHost) {
	hosts := []any{}
	hostvars := map[string]any{}
	remotes := map[string]modules.Host{}
	fakes := map[string]*fakeHost{}
	for i := 1; i <= 3; i++ {
		h := fmt.Sprintf("etcd%d", i)
		hosts = append(hosts, h)
		hostvars[h] = map[string]any{"ansible_host": fmt.Sprintf("127.0.30.%d", i), "etcd_cluster_token": "prod"}
		p := goodProbe
		if s, ok := probes[h]; ok {
			p = s
		}
		f := &fakeHost{name: h, probe: p}
		fakes[h] = f
		remotes[h] = f
	}
	vars := map[string]any{
		"inventory_hostname": "etcd1", "etcd_cluster_token": "prod",
		"groups": map[string]any{"etcd": hosts}, "hostvars": hostvars,
	}
	return &modules.Env{Host: "etcd1", Vars: vars, Remote: remotes["etcd1"], Hosts: remotes, Check: true}, fakes
}

// realSnapshot streams a snapshot of an in-process cluster with 42 keys.
func realSnapshot(t *testing.T) string {
	t.Helper()
	tc := etcdtest.Start(t, 1)
	ctx := context.Background()
	cli := tc.Client()
	for i := range 42 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	p := filepath.Join(t.TempDir(), "snap.db")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	return p
}

// planFor plans a restore of a real snapshot on the fake lab with these
// probe texts, which must succeed.
func planFor(t *testing.T, probes map[string]string) (snap string, ch *modules.Change, j *job, fakes map[string]*fakeHost) {
	t.Helper()
	snap = realSnapshot(t)
	env, fakes := labEnv(probes)
	ch, err := Module{}.Plan(context.Background(), env, modules.Args{"snapshot": snap})
	if err != nil {
		t.Fatal(err)
	}
	return snap, ch, ch.Payload.(*job), fakes
}

var (
	stampRE = regexp.MustCompile(`\d{8}T\d{6}Z`)
	shaRE   = regexp.MustCompile(`sha256 [0-9a-f]{64}`)
	sizeRE  = regexp.MustCompile(`\d+ bytes`)
)

// TestPlanGolden is the --check output of a restore of a 3-member
// cluster: every step, in order, with the dirs, token and cluster.
func TestPlanGolden(t *testing.T) {
	snap, ch, _, fakes := planFor(t, map[string]string{"etcd3": strings.Replace(goodProbe, "data=yes", "data=no", 1)})
	var b strings.Builder
	for _, a := range ch.Actions {
		line := strings.ReplaceAll(a.String(), snap, "SNAPSHOT")
		line = stampRE.ReplaceAllString(line, "STAMP")
		line = shaRE.ReplaceAllString(line, "sha256 SHA")
		line = sizeRE.ReplaceAllString(line, "N bytes")
		b.WriteString(line + "\n")
	}
	golden.Check(t, filepath.Join("testdata", "plan.golden"), b.String())
	for h, f := range fakes {
		if strings.Join(f.calls, ",") != "probe" {
			t.Errorf("%s: Plan ran %v, want only the probe", h, f.calls)
		}
	}
	j := ch.Payload.(*job)
	if !strings.HasPrefix(j.Token, "prod-restore-") || j.Members[2].Aside != "" || j.Members[0].Aside == "" {
		t.Errorf("job: token %s, asides %q %q", j.Token, j.Members[0].Aside, j.Members[2].Aside)
	}
}

// TestPlanRefuses covers what must stop a restore before any member is
// touched: a damaged snapshot (no host is even asked), a host that cannot
// restore, an unreachable member.
func TestPlanRefuses(t *testing.T) {
	snap := realSnapshot(t)
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.db")
	os.WriteFile(truncated, data[:len(data)-100], 0o600)
	flipped := append([]byte(nil), data...)
	flipped[5000] ^= 1
	corrupt := filepath.Join(dir, "corrupt.db")
	os.WriteFile(corrupt, flipped, 0o600)

	for _, tt := range []struct {
		name   string
		args   modules.Args
		probes map[string]string
		vars   map[string]any
		down   string
		want   string
		noHost bool // no host may be contacted at all
	}{
		{name: "truncated", args: modules.Args{"snapshot": truncated}, want: "no integrity hash", noHost: true},
		{name: "truncated, skip_hash_check", args: modules.Args{"snapshot": truncated, "skip_hash_check": true}, want: "corrupt", noHost: true},
		{name: "corrupt", args: modules.Args{"snapshot": corrupt}, want: "integrity hash mismatch", noHost: true},
		{name: "missing file", args: modules.Args{"snapshot": filepath.Join(dir, "nope.db")}, want: "no such file", noHost: true},
		{name: "latest without backups", args: modules.Args{"snapshot": "latest"}, want: "no backup in", noHost: true},
		{name: "same token", args: modules.Args{"snapshot": snap, "token": "prod"}, want: "must differ", noHost: true},
		{name: "no etcdutl", args: modules.Args{"snapshot": snap},
			probes: map[string]string{"etcd2": strings.Replace(goodProbe, "etcdutl=yes", "etcdutl=no", 1)}, want: "etcd2: /usr/local/bin/etcdutl is missing"},
		{name: "disk full", args: modules.Args{"snapshot": snap},
			probes: map[string]string{"etcd3": strings.Replace(goodProbe, "avail=10485760", "avail=100", 1)}, want: "etcd3: only 0 MiB free"},
		{name: "upload filesystem full", args: modules.Args{"snapshot": snap},
			probes: map[string]string{"etcd2": strings.Replace(goodProbe, "upavail=10485760", "upavail=0", 1)}, want: "etcd2: only 0 MiB free for the uploaded snapshot"},
		{name: "WAL dir inside the data dir", args: modules.Args{"snapshot": snap}, vars: map[string]any{"etcd_wal_dir": "/var/lib/etcd/wal"}, want: "inside etcd_data_dir", noHost: true},
		{name: "member unreachable", args: modules.Args{"snapshot": snap}, down: "etcd2", want: "not reachable in this play: etcd2", noHost: true},
		{name: "restore paths taken in every second tried", args: modules.Args{"snapshot": snap},
			probes: map[string]string{"etcd3": goodProbe + "taken=always\n"}, want: "etcd3: /var/tmp/etcdplay/restore-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env, fakes := labEnv(tt.probes)
			env.StateDir = t.TempDir()
			for k, v := range tt.vars {
				env.Vars[k] = v
			}
			if tt.down != "" {
				env.Hosts[tt.down] = downHost{fakes[tt.down]}
			}
			_, err := Module{}.Plan(context.Background(), env, tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			for h, f := range fakes {
				for _, c := range f.calls {
					if tt.noHost || c != "probe" {
						t.Errorf("%s: Plan ran %q", h, c)
					}
				}
			}
		})
	}
}

// TestPlanSkipsTakenStamp: a restore run again within the second of one a
// killed controller left behind finds that run's upload and staging dir
// (etcdutl refused to restore into it): it takes the next second's names.
func TestPlanSkipsTakenStamp(t *testing.T) {
	_, _, j, fakes := planFor(t, map[string]string{"etcd2": goodProbe + "taken=first\n"})
	if fakes["etcd2"].probes != 2 {
		t.Errorf("etcd2 probed %d times, want 2 (the taken stamp, then the next)", fakes["etcd2"].probes)
	}
	for _, mp := range j.Members {
		if !strings.HasSuffix(mp.Stage, "restore-"+j.Stamp) || !strings.HasSuffix(mp.Upload, "restore-"+j.Stamp+".db") {
			t.Errorf("%s: stage %s, upload %s: not named after the stamp %s", mp.Member.Host, mp.Stage, mp.Upload, j.Stamp)
		}
	}
	if !strings.HasSuffix(j.Token, "-restore-"+j.Stamp) {
		t.Errorf("token %s is not named after the stamp %s", j.Token, j.Stamp)
	}
}

// TestPlanRemovesLeftoversOnceVerified: the staging dir and upload a
// killed restore left are listed for removal after this one is verified;
// set-aside data dirs and files not named like a restore's are not.
func TestPlanRemovesLeftoversOnceVerified(t *testing.T) {
	_, ch, j, _ := planFor(t, map[string]string{"etcd2": goodProbe + "leftover=yes\n"})
	want := "/var/lib/etcd.restore-20260101T000000Z /var/tmp/etcdplay/restore-20260101T000000Z.db"
	if got := strings.Join(j.Members[1].Leftovers, " "); got != want {
		t.Errorf("leftovers %q, want %q", got, want)
	}
	if len(j.Members[0].Leftovers) > 0 {
		t.Errorf("etcd1 has leftovers %v", j.Members[0].Leftovers)
	}
	// A planted symlink for the upload dir is staging's to refuse, by
	// name; the plan only lists no uploads there.
	_, _, j, _ = planFor(t, map[string]string{"etcd2": goodProbe + "leftover=yes\nuploadlink=yes\n"})
	if got := strings.Join(j.Members[1].Leftovers, " "); got != "/var/lib/etcd.restore-20260101T000000Z" {
		t.Errorf("leftovers with the upload dir a symlink: %q", got)
	}
	last := ch.Actions[len(ch.Actions)-1].String()
	if !strings.HasPrefix(last, "- etcd2:/var/tmp/etcdplay/restore-20260101T000000Z.db: left by an interrupted restore") {
		t.Errorf("last action %q, want the upload's removal after the check", last)
	}
}

type downHost struct{ *fakeHost }

func (downHost) Reachable() bool { return false }

// TestPlanMountPointDataDir: a data dir on its own disk cannot be renamed,
// so staging and the moved-aside data live inside it, on its filesystem,
// and its free space is the one checked.
func TestPlanMountPointDataDir(t *testing.T) {
	snap, ch, j, _ := planFor(t, map[string]string{"etcd2": goodProbe + "mount=yes\n"})
	mp := j.Members[1]
	if want := "/var/lib/etcd/etcd.pre-restore-" + j.Stamp; mp.Aside != want {
		t.Errorf("aside %q, want %q", mp.Aside, want)
	}
	if want := "/var/lib/etcd/etcd.restore-" + j.Stamp; mp.Stage != want {
		t.Errorf("stage %q, want %q", mp.Stage, want)
	}
	if j.Members[0].Aside != "/var/lib/etcd.pre-restore-"+j.Stamp {
		t.Errorf("plain dir aside %q", j.Members[0].Aside)
	}
	var plan []string
	for _, a := range ch.Actions {
		plan = append(plan, a.String())
	}
	if p := strings.Join(plan, "\n"); !strings.Contains(p, "~ etcd2:/var/lib/etcd: moved aside to /var/lib/etcd/etcd.pre-restore-") {
		t.Errorf("plan does not show the in-place move:\n%s", p)
	}

	env, _ := labEnv(map[string]string{"etcd2": strings.Replace(goodProbe, "avail=10485760", "avail=100", 1) + "mount=yes\n"})
	if _, err := (Module{}).Plan(context.Background(), env, modules.Args{"snapshot": snap}); err == nil || !strings.Contains(err.Error(), "etcd2: only 0 MiB free on the filesystem of /var/lib/etcd") {
		t.Errorf("full data disk: %v", err)
	}
}

// etcdutl's output is its whole log; a failure keeps its gist.
func TestEtcdutlFailure(t *testing.T) {
	full := "command failed: 2026-12-04T20:33:05Z\tinfo\tsnapshot/v3_snapshot.go:396\tbumping latest revision\t{\"latest-revision\": 401}\n" +
		"2026-12-04T20:33:05Z\tinfo\tbbolt\tbackend/backend.go:203\tOpening db file (/var/lib/etcd/x/member/snap/db)\t{}\n" +
		"2026-12-04T20:33:05Z\twarn\twal/wal.go:147\tfailed to preallocate an initial WAL file\t{\"path\": \"/var/lib/etcd/x/member/wal.tmp/0.wal\", \"error\": \"no space left on device\"}\n" +
		"Error: no space left on device\n"
	for _, tt := range []struct{ name, out, want string }{
		{"error and the warning before it", full,
			`no space left on device (etcdutl: failed to preallocate an initial WAL file {"path": "/var/lib/etcd/x/member/wal.tmp/0.wal", "error": "no space left on device"})`},
		{"a warning with a logger name", "t\twarn\tbbolt\tbbolt@v1.4.3/db.go:1\tcannot grow\t{}\nError: x\n", "x (etcdutl: cannot grow {})"},
		{"error only", "Error: snapshot file has wrong hash\n", "snapshot file has wrong hash"},
		{"not etcdutl's log", "exec: no such file", "exec: no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := etcdutlFailure(tt.out); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
