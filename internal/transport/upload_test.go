package transport

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/etcdplay/etcdplay/internal/transport/sshtest"
)

func TestUnamePlatform(t *testing.T) {
	tests := map[string]string{
		"Linux x86_64":  "linux/amd64",
		"Linux aarch64": "linux/arm64",
		"Linux armv7l":  "linux/arm",
		"Linux i686":    "linux/386",
		"Linux riscv64": "linux/riscv64",
		"Darwin arm64":  "darwin/arm64",
		"garbage":       "unknown/garbage",
	}
	for in, want := range tests {
		if got := unamePlatform(in); got != want {
			t.Errorf("unamePlatform(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAgentBinFor(t *testing.T) {
	exe, _ := os.Executable()
	native, err := loadAgentBin(exe)
	if err != nil {
		t.Fatal(err)
	}
	if native.platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("platform of the test binary read as %s", native.platform)
	}
	other := "linux/s390x"
	if runtime.GOARCH == "s390x" {
		other = "linux/amd64"
	}
	envName := "ETCDPLAY_AGENT_" + strings.ToUpper(strings.ReplaceAll(other, "/", "_"))

	t.Setenv(envName, "")
	_, err = agentBinFor(&ConnectOptions{}, "etcd9", other, native)
	var pe *PlatformError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "--agent-binary "+other+"=PATH") || !strings.Contains(err.Error(), envName+"=PATH") || !strings.Contains(err.Error(), "etcd9") {
		t.Fatalf("missing binary: %v", err)
	}
	// A binary supplied for the platform must really be built for it.
	t.Setenv(envName, exe)
	if _, err := agentBinFor(&ConnectOptions{}, "etcd9", other, native); err == nil || !strings.Contains(err.Error(), "built for "+native.platform) {
		t.Fatalf("wrong-platform binary accepted: %v", err)
	}
	if _, err := agentBinFor(&ConnectOptions{AgentBinaries: map[string]string{other: exe}}, "etcd9", other, native); err == nil {
		t.Fatal("wrong-platform binary from the flag accepted")
	}
	if b, err := agentBinFor(&ConnectOptions{}, "etcd9", native.platform, native); err != nil || b != native {
		t.Fatalf("native: %v %v", b, err)
	}
}

func TestParseJump(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		err  bool
	}{
		{"bastion", Target{Name: "bastion", Addr: "bastion", Port: 22, User: "me"}, false},
		{"ops@bastion:2222", Target{Name: "bastion", Addr: "bastion", Port: 2222, User: "ops"}, false},
		{"[::1]:2200", Target{Name: "::1", Addr: "::1", Port: 2200, User: "me"}, false},
		{"ops@", Target{}, true},
		{"bastion:http", Target{}, true},
	}
	for _, tt := range tests {
		got, err := parseJump(tt.in, "me")
		if (err != nil) != tt.err || (!tt.err && got != tt.want) {
			t.Errorf("parseJump(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

// fakeSudo puts a `sudo` on the server's PATH that runs the command as
// the same user (or fails like sudo without a password), so the become
// paths run for real short of the user switch.
func fakeSudo(t *testing.T, s *sshtest.Server, script string) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sudo"), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Env = append(s.Env, "PATH="+dir+":"+os.Getenv("PATH"))
}

func TestBecome(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	fakeSudo(t, s, `[ "$1 $2 $3 $4" = "-n -u etcd --" ] || { echo "bad sudo args: $*" >&2; exit 1; }
shift 4; exec "$@"
`)
	tg := targetOf(s)
	tg.KeyFile, tg.Become, tg.BecomeUser = c.KeyFile, true, "etcd"
	conn, err := Connect(context.Background(), tg, optsOf(c))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !conn.stage {
		t.Fatal("become as another user should stage files")
	}
	ctx := context.Background()
	dst := filepath.Join(s.Home, "etcd.conf")
	if err := conn.Upload(ctx, strings.NewReader("via the agent\n"), dst, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "via the agent\n" {
		t.Fatalf("uploaded %q", b)
	}
	var buf bytes.Buffer
	if err := conn.Download(ctx, dst, &buf); err != nil || buf.String() != "via the agent\n" {
		t.Fatalf("download %q %v", buf.String(), err)
	}
	stage := filepath.Join(s.Home, ".cache", "etcdplay", "stage")
	st, err := os.Stat(stage)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("staging dir: %v %v", st, err)
	}
	if left, _ := os.ReadDir(stage); len(left) != 0 {
		t.Errorf("staged files left: %v", left)
	}
}

func TestBecomeNeedsPassword(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	fakeSudo(t, s, "echo 'sudo: a password is required' >&2; exit 1\n")
	tg := targetOf(s)
	tg.KeyFile, tg.Become, tg.BecomeUser = c.KeyFile, true, "etcd"
	_, err := Connect(context.Background(), tg, optsOf(c))
	if err == nil || IsUnreachable(err) || !strings.Contains(err.Error(), "sudo: a password is required") || !strings.Contains(err.Error(), "NOPASSWD") {
		t.Fatalf("sudo without password: %v (unreachable %v)", err, IsUnreachable(err))
	}
}

func TestParseProbe(t *testing.T) {
	line := func(stat, exec, gz string) string {
		return strings.Join([]string{probeMagic, "Linux x86_64", "/root", "/var/lib/etcdplay/agent", "0", "0", stat, exec, gz}, "\t") + "\n"
	}
	tests := []struct {
		name        string
		in          string
		wantSize    int64
		wantMode    uint32
		wantStarted bool
		wantGunzip  bool
		// wantPlatform is "-" for none, else "linux/amd64"
		wantPlatform string
		wantErr      string
	}{
		{name: "absent agent, host can gunzip", in: line("missing", "no", "yes"), wantSize: -1, wantGunzip: true},
		{name: "agent there and started", in: line("24117248 0 755", "yes", "yes"), wantSize: 24117248, wantMode: 0o755, wantStarted: true, wantGunzip: true},
		{name: "no gzip or sha256sum", in: line("missing", "no", "no"), wantSize: -1},
		{name: "started without uname", in: strings.Replace(line("24117248 0 755", "yes", "no"), "Linux x86_64", "-", 1), wantSize: 24117248, wantMode: 0o755, wantStarted: true, wantPlatform: "-"},
		{name: "old 8-field probe", in: strings.Join([]string{probeMagic, "Linux x86_64", "/root", "/d", "0", "0", "missing", "no"}, "\t"), wantErr: "unexpected output"},
		{name: "motd in front", in: "Welcome!", wantErr: "unexpected output"},
		{name: "uid not a number", in: strings.Replace(line("missing", "no", "yes"), "\t0\t0\t", "\tx\t0\t", 1), wantErr: "id -u"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, started, err := parseProbe(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.size != tt.wantSize || p.mode != tt.wantMode || started != tt.wantStarted || p.gunzip != tt.wantGunzip {
				t.Errorf("got size %d mode %o started %v gunzip %v", p.size, p.mode, started, p.gunzip)
			}
			wantPlatform := map[string]string{"-": ""}[tt.wantPlatform]
			if tt.wantPlatform == "" {
				wantPlatform = "linux/amd64"
			}
			if p.platform != wantPlatform {
				t.Errorf("platform %q, want %q", p.platform, wantPlatform)
			}
		})
	}
}

// TestUnpackCommandRefusesForeignDir runs the unpack script with the
// local sh: a symlinked or foreign-owned agent directory is refused and
// nothing is written through it; a good upload lands 0755 with its stamp;
// the staged file goes in every case.
func TestUnpackCommandRefusesForeignDir(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to make a directory owned by another user")
	}
	exe, _ := os.Executable()
	b, err := loadAgentBin(exe)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := b.compressed()
	if err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(t.TempDir(), "agent.gz")
	runStream := func(dir, sha string) (string, error) {
		if err := os.WriteFile(staged, gz, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", unpackCommand(dir, b.remoteName(), sha, staged)).CombinedOutput()
		if _, serr := os.Stat(staged); serr == nil {
			t.Errorf("the staged agent was left behind (%v)", err)
		}
		return string(out), err
	}
	run := func(dir string) (string, error) { return runStream(dir, b.gzSHA) }
	root := t.TempDir()
	loot := filepath.Join(root, "loot")
	if err := os.Mkdir(loot, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link")
	if err := os.Symlink(loot, link); err != nil {
		t.Fatal(err)
	}
	if out, err := run(link); err == nil || !strings.Contains(out, "is a symlink") {
		t.Errorf("symlinked dir: err %v, output %q", err, out)
	}
	foreign := filepath.Join(root, "foreign")
	if err := os.Mkdir(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(foreign, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if out, err := run(foreign); err == nil || !strings.Contains(out, "belongs to uid 4242") {
		t.Errorf("foreign dir: err %v, output %q", err, out)
	}
	for _, d := range []string{loot, foreign} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("%s: something was written: %v", d, ents)
		}
	}
	bad := filepath.Join(root, "bad")
	if out, err := runStream(bad, strings.Repeat("0", 64)); err == nil || !strings.Contains(out, "arrived with sha256 "+b.gzSHA) {
		t.Errorf("hash mismatch: err %v, output %q", err, out)
	}
	if ents, _ := os.ReadDir(bad); len(ents) != 0 {
		t.Errorf("hash mismatch left %v behind", ents)
	}
	good := filepath.Join(root, "good", "agent")
	if out, err := run(good); err != nil {
		t.Fatalf("good dir: %v: %s", err, out)
	}
	st, err := os.Stat(filepath.Join(good, b.remoteName()))
	if err != nil || st.Mode().Perm() != 0o755 || st.Size() != b.size {
		t.Fatalf("agent landed as %v, %v", st, err)
	}
	if st, err := os.Stat(filepath.Dir(good)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("parent made as %v, %v; want 0700", st, err)
	}
	if _, err := os.Stat(filepath.Join(good, b.remoteName()+".ok")); err != nil {
		t.Errorf("no verification stamp: %v", err)
	}
}

func TestProgressReader(t *testing.T) {
	data := bytes.Repeat([]byte("x"), progressMin+1)
	var got []Transfer
	r := withProgress(bytes.NewReader(data), "agent", sizeOf(bytes.NewReader(data)), func(tr Transfer) { got = append(got, tr) })
	buf := make([]byte, 1<<20)
	for {
		if _, err := r.Read(buf); err != nil {
			break
		}
	}
	if len(got) < 2 || got[0].Done != 0 || got[0].Total != int64(len(data)) {
		t.Fatalf("reports %+v, want the start (0 bytes done) first", got)
	}
	last := got[len(got)-1]
	if last.Done != int64(len(data)) || last.Total != int64(len(data)) || last.What != "agent" {
		t.Errorf("last report %+v, want all %d bytes", last, len(data))
	}
	for _, tr := range got[:len(got)-1] {
		if tr.Done >= tr.Total {
			t.Errorf("the end was reported twice: %+v", got)
		}
	}
	small := bytes.NewReader([]byte("small"))
	if r := withProgress(small, "x", sizeOf(small), func(Transfer) { t.Error("a small transfer reported progress") }); r != io.Reader(small) {
		t.Error("a small transfer was wrapped")
	}
}

// The simulated fleet answers with InstalledAgentHeader; the transport
// must read it as an installed, reusable agent it can talk to at once.
func TestInstalledAgentHeaderParses(t *testing.T) {
	b := &agentBin{size: 27_934_882, sha256: strings.Repeat("ab", 32)}
	if !IsProbe(probeCommand("/var/lib/etcdplay/agent", b.remoteName(), b, "")) {
		t.Fatal("IsProbe does not recognise the probe command")
	}
	p, started, err := parseProbe(InstalledAgentHeader("/sim/h1", "/var/lib/etcdplay/agent", 0, 0, b.size))
	if err != nil {
		t.Fatal(err)
	}
	if !started || !p.reusable(b) || !p.gunzip || p.platform != "" || p.home != "/sim/h1" {
		t.Errorf("started %v, probe %+v: want an installed, reusable agent (its platform unprobed)", started, p)
	}
}

func TestWritesInFlight(t *testing.T) {
	for _, c := range []struct {
		rtt  time.Duration
		want int
	}{{0, 16}, {200 * time.Microsecond, 16}, {4 * time.Millisecond, 17}, {8 * time.Millisecond, 33}, {20 * time.Millisecond, 64}, {time.Second, 64}} {
		if got := writesInFlight(c.rtt); got != c.want {
			t.Errorf("writesInFlight(%s) = %d, want %d", c.rtt, got, c.want)
		}
	}
}

// TestCompressedAgentCache: the gzipped agent is kept in the user's cache
// dir and reused by the next process; a cut or edited copy is made again,
// never sent; only the newest few builds are kept.
func TestCompressedAgentCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	exe, _ := os.Executable()
	fresh := func() *agentBin {
		b, err := loadAgentBin(exe)
		if err != nil {
			t.Fatal(err)
		}
		return &agentBin{path: b.path, sha256: b.sha256, size: b.size, platform: b.platform}
	}
	agent, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	gunzip := func(gz []byte) []byte {
		r, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	b := fresh()
	cached := agentCachePath(b.sha256)
	for _, f := range []string{"agent-old1.gz", "agent-old2.gz", "agent-old3.gz"} {
		if err := os.MkdirAll(filepath.Dir(cached), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(cached), f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name   string
		before func()
		reused bool
	}{
		{"first run compresses and keeps it", func() {}, false},
		{"next process reuses it", func() {}, true},
		{"a cut copy is made again", func() {
			data, _ := os.ReadFile(cached)
			if err := os.WriteFile(cached, data[:len(data)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"an edited copy is made again", func() {
			data, _ := os.ReadFile(cached)
			data[100] ^= 0xff
			if err := os.WriteFile(cached, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.before()
			before, _ := os.Stat(cached)
			gz, err := fresh().compressed()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gunzip(gz), agent) {
				t.Fatal("the gzipped agent is not the agent")
			}
			if g, ok := readCachedAgent(cached); !ok || !bytes.Equal(g, gz) {
				t.Fatal("the cache does not hold what was sent")
			}
			fi, err := os.Stat(cached)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("cache file: %v %v", fi, err)
			}
			if reused := before != nil && os.SameFile(before, fi); reused != tt.reused {
				t.Errorf("cache reused: %v, want %v", reused, tt.reused)
			}
		})
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(cached), "agent-*.gz"))
	if len(left) != keepCachedAgents {
		t.Errorf("cache holds %d agents, want %d: %v", len(left), keepCachedAgents, left)
	}
}

// TestProbeScript runs the probe with the local sh on a stand-in agent (a
// script that says it ran): a missing agent gets the platform probed and
// is not started; a file without a stamp is hashed, stamped and started; a
// stamped one is started without being hashed again; a stamp that no
// longer matches the file sends it back to the hash, which refuses it.
func TestProbeScript(t *testing.T) {
	agentScript := []byte("#!/bin/sh\necho \"ran $1\"\n")
	sum := sha256.Sum256(agentScript)
	b := &agentBin{size: int64(len(agentScript)), sha256: hex.EncodeToString(sum[:])}
	dir := t.TempDir()
	agentFile := filepath.Join(dir, b.remoteName())
	// A sha256sum that leaves a trace, so the test sees whether the probe
	// hashed the file or trusted its stamp.
	shims := t.TempDir()
	hashed := filepath.Join(shims, "hashed")
	real, err := exec.LookPath("sha256sum")
	if err != nil {
		t.Skip("no sha256sum")
	}
	if err := os.WriteFile(filepath.Join(shims, "sha256sum"), []byte("#!/bin/sh\necho >> "+hashed+"\nexec "+real+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir() // a cold probe makes the staging dir in it
	run := func(t *testing.T) (header string, p *probe, started bool, hashes int, rest string) {
		t.Helper()
		os.Remove(hashed)
		cmd := exec.Command("sh", "-c", probeCommand(shellQuote(dir), b.remoteName(), b, ""))
		cmd.Env = append(os.Environ(), "PATH="+shims+":"+os.Getenv("PATH"), "HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("probe: %v\n%s", err, out)
		}
		header, rest, _ = strings.Cut(string(out), "\n")
		p, started, err = parseProbe(header + "\n")
		if err != nil {
			t.Fatal(err)
		}
		if p.uid != os.Getuid() || p.gid != os.Getgid() {
			t.Errorf("probe says uid %d gid %d, want %d %d", p.uid, p.gid, os.Getuid(), os.Getgid())
		}
		if data, err := os.ReadFile(hashed); err == nil {
			hashes = bytes.Count(data, []byte("\n"))
		}
		return header, p, started, hashes, rest
	}
	steps := []struct {
		name        string
		setup       func(t *testing.T)
		wantStarted bool
		wantHashes  int
	}{
		{"missing", func(*testing.T) {}, false, 0},
		{"unstamped", func(t *testing.T) {
			if err := os.WriteFile(agentFile, agentScript, 0o755); err != nil {
				t.Fatal(err)
			}
		}, true, 1},
		{"stamped", func(*testing.T) {}, true, 0},
		{"stamp of another file", func(t *testing.T) {
			time.Sleep(10 * time.Millisecond) // a change time the stamp cannot hold
			swapped := bytes.ToUpper(agentScript)
			if err := os.WriteFile(agentFile, swapped, 0o755); err != nil {
				t.Fatal(err)
			}
		}, false, 1},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.setup(t)
			header, p, started, hashes, rest := run(t)
			if started != st.wantStarted || hashes != st.wantHashes {
				t.Fatalf("started %v after %d hashes, want %v after %d\n%s", started, hashes, st.wantStarted, st.wantHashes, header)
			}
			if started {
				if rest != "ran agent\n" || p.platform != "" {
					t.Errorf("started agent printed %q, platform %q; want it run and uname not", rest, p.platform)
				}
				return
			}
			if want := runtime.GOOS + "/" + runtime.GOARCH; p.platform != want {
				t.Errorf("platform %q, want %q", p.platform, want)
			}
			if rest != "" {
				t.Errorf("an agent not to be trusted ran: %q", rest)
			}
			// Cold: the gzipped upload's staging dir is made, private.
			if st, err := os.Stat(filepath.Join(home, stageSubdir)); !p.gunzip || err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("gzip upload %v, staging dir %v %v; want it there, 0700", p.gunzip, st, err)
			}
		})
	}
}

// TestUploadKeepsWritesInFlight: sftpPut sends a file's writes without
// waiting for each answer (pkg/sftp does so only for a reader it can
// size, and ours wrap the caller's): the server's answers are held back
// once writes arrive, until several have, which one write per round trip
// never reaches. Over a 50 ms link to a bastion that was 0.6 MB/s.
func TestUploadKeepsWritesInFlight(t *testing.T) {
	data := bytes.Repeat([]byte("etcdplay"), 64<<10) // 512 KB: 16 writes
	for _, tt := range []struct {
		name string
		r    io.Reader
	}{
		{"bytes", bytes.NewReader(data)},
		{"with progress", withProgress(bytes.NewReader(data), "x", int64(len(data)), func(Transfer) {})},
		{"unknown size", io.MultiReader(bytes.NewReader(data))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cr, sw := io.Pipe() // server -> client
			sr, cw := io.Pipe() // client -> server
			writes := make(chan struct{}, 1024)
			gate := &gatedWriter{w: sw, writes: writes, want: 4}
			srv, err := sftp.NewServer(struct {
				io.Reader
				io.WriteCloser
			}{io.TeeReader(sr, &packetCounter{typ: 6, seen: writes}), gate}, sftp.WithServerWorkingDirectory(dir))
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve()
			c, err := sftp.NewClientPipe(cr, cw, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(16))
			if err != nil {
				t.Fatal(err)
			}
			// The server first: the client's Close waits for its reader,
			// which ends when the server's side closes.
			defer func() { srv.Close(); c.Close() }()
			dst := path.Join(dir, "f")
			if err := sftpPut(context.Background(), c, tt.r, dst, 0o600, -1, -1, false); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
				t.Fatalf("uploaded %d bytes, want %d", len(got), len(data))
			}
			if gate.failed {
				t.Errorf("only %d SFTP writes in flight before the first answer, want %d", gate.atFailure, gate.want)
			}
		})
	}
}

// packetCounter signals seen for each SFTP packet of type typ in the
// stream written to it.
type packetCounter struct {
	typ  byte
	seen chan<- struct{}
	buf  []byte
}

func (p *packetCounter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for len(p.buf) >= 5 {
		n := int(p.buf[0])<<24 | int(p.buf[1])<<16 | int(p.buf[2])<<8 | int(p.buf[3])
		if len(p.buf) < 4+n {
			break
		}
		if p.buf[4] == p.typ {
			p.seen <- struct{}{}
		}
		p.buf = p.buf[4+n:]
	}
	return len(b), nil
}

// gatedWriter passes the server's packets on, but once a write request
// has arrived it holds the next status answer until want writes have, or
// a second has passed (failed: then it lets it through, so a client that
// waits for each answer fails the test instead of hanging it).
type gatedWriter struct {
	w       io.WriteCloser
	writes  <-chan struct{}
	want    int
	counted int
	failed  bool
	// atFailure is how many writes had arrived when the gate gave up.
	atFailure int
}

func (g *gatedWriter) Write(b []byte) (int, error) {
	const statusPacket = 101
	for drained := false; !drained; {
		select {
		case <-g.writes:
			g.counted++
		default:
			drained = true
		}
	}
	if len(b) >= 5 && b[4] == statusPacket && g.counted > 0 && g.counted < g.want && !g.failed {
		timeout := time.After(time.Second)
		for g.counted < g.want && !g.failed {
			select {
			case <-g.writes:
				g.counted++
			case <-timeout:
				g.failed, g.atFailure = true, g.counted
			}
		}
	}
	return g.w.Write(b)
}

func (g *gatedWriter) Close() error { return g.w.Close() }
