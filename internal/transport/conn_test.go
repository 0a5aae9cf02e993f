package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/etcdplay/etcdplay/internal/transport/sshtest"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/etcdplay/etcdplay/modules"
)

func connected(t *testing.T) (*sshtest.Client, *sshtest.Server, *Conn) {
	t.Helper()
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	conn, err := connect(t, c, s, optsOf(c))
	if err != nil {
		t.Fatal(err)
	}
	return c, s, conn
}

// The first connect sends the agent gzipped into ~/.cache/etcdplay under
// its hash (one exec session that probes, waits for the upload over SFTP,
// staged in the login user's cache and removed after, then unpacks and
// execs the agent); the next one reuses it: a single session that probes
// and execs the agent.
func TestAgentUploadAndReuse(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	exe, _ := os.Executable()
	bin, err := loadAgentBin(exe)
	if err != nil {
		t.Fatal(err)
	}
	remote := filepath.Join(s.Home, ".cache", "etcdplay", bin.remoteName())

	conn, err := connect(t, c, s, optsOf(c))
	if err != nil {
		t.Fatal(err)
	}
	if s.Execs.Load() != 1 || s.SFTPs.Load() != 1 {
		t.Errorf("first connect: %d execs, %d sftp sessions; want 1 and 1", s.Execs.Load(), s.SFTPs.Load())
	}
	if staged, _ := filepath.Glob(filepath.Join(s.Home, ".cache", "etcdplay", "stage", "*")); len(staged) != 0 {
		t.Errorf("left in the staging dir: %v", staged)
	}
	if !strings.Contains(conn.Uploaded(), "gzipped") {
		t.Errorf("upload described as %q", conn.Uploaded())
	}
	st, err := os.Stat(remote)
	if err != nil || st.Size() != bin.size || st.Mode().Perm() != 0o755 {
		t.Fatalf("uploaded agent: %v %v", st, err)
	}
	f := conn.Facts()
	if f.SHA256 != bin.sha256 || f.OS != "linux" || f.Hostname == "" || f.Protocol == 0 || f.Executable != remote {
		t.Errorf("facts: %+v", f)
	}
	conn.Close()
	waitFor(t, "agent to exit after Close", func() bool { return s.Running.Load() == 0 })

	conn2, err := connect(t, c, s, optsOf(c))
	if err != nil {
		t.Fatal(err)
	}
	if s.Execs.Load() != 2 || s.SFTPs.Load() != 1 || conn2.Uploaded() != "" {
		t.Errorf("second connect: %d execs, %d sftp sessions in all (upload %q); want 2 and 1", s.Execs.Load(), s.SFTPs.Load(), conn2.Uploaded())
	}
	if r, err := conn2.Do(context.Background(), "sshtest_set", modules.Args{"want": 1}, false); err != nil || r.Status != modules.StatusChanged {
		t.Fatalf("Do: %+v %v", r, err)
	}
}

// A file under the agent's name that is not ours, not whole, or not the
// agent's content (a same-size swap, stamped or not) is replaced, never run.
func TestAgentNotReusedWhenSuspect(t *testing.T) {
	exe, _ := os.Executable()
	bin, err := loadAgentBin(exe)
	if err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	swapped := append([]byte(nil), full...)
	swapped[len(swapped)/2] ^= 0xff
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		stamp   bool // a stamp that matched the file before it was swapped
	}{
		{"truncated", []byte("partial"), 0o755, false},
		{"group writable", full, 0o775, false},
		{"not executable", full, 0o644, false},
		{"same size, other content", swapped, 0o755, false},
		{"same size, other content, stale stamp", swapped, 0o755, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sshtest.NewClient(t)
			s := sshtest.NewServer(t, c.Pub)
			c.Trust(t, s)
			dir := filepath.Join(s.Home, ".cache", "etcdplay")
			os.MkdirAll(dir, 0o700)
			remote := filepath.Join(dir, bin.remoteName())
			if tt.stamp {
				// The real agent, connected to once: the probe stamps it.
				if err := os.WriteFile(remote, full, 0o755); err != nil {
					t.Fatal(err)
				}
				conn, err := connect(t, c, s, optsOf(c))
				if err != nil {
					t.Fatal(err)
				}
				conn.Close()
				waitFor(t, "agent to exit after Close", func() bool { return s.Running.Load() == 0 })
				if _, err := os.Stat(remote + ".ok"); err != nil {
					t.Fatalf("no stamp after a verified start: %v", err)
				}
				s.Execs.Store(0)
				time.Sleep(10 * time.Millisecond) // a change time the stamp cannot hold
			}
			if err := os.WriteFile(remote, tt.content, tt.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(remote, tt.mode)
			conn, err := connect(t, c, s, optsOf(c))
			if err != nil {
				t.Fatal(err)
			}
			if s.Execs.Load() != 1 || s.SFTPs.Load() == 0 || conn.Uploaded() == "" {
				t.Errorf("suspect agent file reused (%d exec sessions, %d sftp)", s.Execs.Load(), s.SFTPs.Load())
			}
			got, _ := os.ReadFile(remote)
			st, _ := os.Stat(remote)
			if !bytes.Equal(got, full) || st.Mode().Perm() != 0o755 {
				t.Errorf("agent file after connect: %v, content replaced: %v", st.Mode(), bytes.Equal(got, full))
			}
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDoCheckApplyAndConcurrency(t *testing.T) {
	_, _, conn := connected(t)
	ctx := context.Background()
	tests := []struct {
		args   modules.Args
		check  bool
		status modules.Status
	}{
		{modules.Args{"want": 1, "have": 1}, false, modules.StatusOK},
		{modules.Args{"want": 2, "have": 1}, true, modules.StatusChanged},
		{modules.Args{"want": 2, "have": 1}, false, modules.StatusChanged},
	}
	for _, tt := range tests {
		r, err := conn.Do(ctx, "sshtest_set", tt.args, tt.check)
		if err != nil || r.Status != tt.status {
			t.Fatalf("%v check=%v: %+v %v", tt.args, tt.check, r, err)
		}
		_, applied := r.Data["pid"]
		if applied != (tt.status == modules.StatusChanged && !tt.check) {
			t.Errorf("%v check=%v: applied=%v", tt.args, tt.check, applied)
		}
		if applied && r.Data["host"] != conn.Name() {
			t.Errorf("env.Host = %v", r.Data["host"])
		}
	}
	r, err := conn.Do(ctx, "no_such_module", nil, false)
	if err != nil || r.Status != modules.StatusFailed || !strings.Contains(r.Msg, "no_such_module") {
		t.Fatalf("unknown module: %+v %v", r, err)
	}

	// Many requests at once over the one session, each answered once.
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprint(i)
			r, err := conn.Do(ctx, "sshtest_set", modules.Args{"want": want, "have": "x"}, true)
			if err != nil {
				errs <- err
				return
			}
			if r.Change == nil || len(r.Change.Actions) != 1 || r.Change.Actions[0].Detail != want {
				errs <- fmt.Errorf("request %d got the answer %+v", i, r.Change)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDoCancel(t *testing.T) {
	_, _, conn := connected(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := conn.Do(ctx, "sshtest_block", nil, false)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("cancelled Do: %v after %v", err, time.Since(start))
	}
	// The connection stays usable.
	if r, err := conn.Do(context.Background(), "sshtest_set", nil, false); err != nil || r.Status != modules.StatusOK {
		t.Fatalf("Do after cancel: %+v %v", r, err)
	}
	if !conn.Reachable() {
		t.Error("not reachable after a cancel")
	}
}

// A host that dies fails the requests in flight as unreachable.
func TestDeadHostFailsInFlight(t *testing.T) {
	_, s, conn := connected(t)
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Do(context.Background(), "sshtest_block", nil, false)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	s.Kill()
	select {
	case err := <-errc:
		var ue *UnreachableError
		if !errors.As(err, &ue) || !IsUnreachable(err) || ue.Host != conn.Name() {
			t.Fatalf("in-flight Do: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight Do hung on a dead host")
	}
	if conn.Reachable() {
		t.Error("dead host still reachable")
	}
	if _, err := conn.Do(context.Background(), "sshtest_set", nil, false); !IsUnreachable(err) {
		t.Errorf("Do on a dead host: %v", err)
	}
}

// A host that stops answering (no FIN, no RST) is found out by keepalive.
func TestKeepAliveDetectsSilentHost(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	// Put a proxy between us and the server that we can freeze.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var frozen sync.WaitGroup
	frozen.Add(1)
	freeze := make(chan struct{})
	go func() {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port))
		if err != nil {
			return
		}
		pump := func(dst, src net.Conn) {
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if err != nil {
					return
				}
				select {
				case <-freeze:
					<-make(chan struct{}) // swallow everything from now on
				default:
				}
				dst.Write(buf[:n])
			}
		}
		go pump(out, in)
		pump(in, out)
	}()
	tg := targetOf(s)
	tg.Port = ln.Addr().(*net.TCPAddr).Port
	tg.KeyFile = c.KeyFile
	c.Trust(t, &sshtest.Server{Addr: "127.0.0.1", Port: tg.Port, HostKeys: s.HostKeys})
	o := optsOf(c)
	o.KeepAlive, o.Timeout = 100*time.Millisecond, 300*time.Millisecond
	conn, err := Connect(context.Background(), tg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Do(context.Background(), "sshtest_block", nil, false)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	close(freeze)
	select {
	case err := <-errc:
		if !IsUnreachable(err) || !strings.Contains(err.Error(), "keepalive") {
			t.Fatalf("in-flight Do: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("keepalive did not notice a silent host")
	}
}

func TestUploadDownload(t *testing.T) {
	_, s, conn := connected(t)
	ctx := context.Background()
	dst := filepath.Join(s.Home, "etc", "etcd.yaml")
	os.MkdirAll(filepath.Dir(dst), 0o755)
	for i, content := range []string{"first\n", "second, longer content\n"} {
		if err := conn.Upload(ctx, strings.NewReader(content), dst, 0o640); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		b, err := os.ReadFile(dst)
		if err != nil || string(b) != content {
			t.Fatalf("upload %d: %q %v", i, b, err)
		}
		if st, _ := os.Stat(dst); st.Mode().Perm() != 0o640 {
			t.Errorf("mode %v", st.Mode())
		}
		var buf bytes.Buffer
		if err := conn.Download(ctx, dst, &buf); err != nil || buf.String() != content {
			t.Fatalf("download %d: %q %v", i, buf.String(), err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	if err := conn.Upload(ctx, strings.NewReader("x"), filepath.Join(s.Home, "missing", "f"), 0o600); err == nil {
		t.Error("upload into a missing directory succeeded")
	}
	if err := conn.Download(ctx, filepath.Join(s.Home, "missing"), &bytes.Buffer{}); err == nil {
		t.Error("download of a missing file succeeded")
	}
}

func TestDial(t *testing.T) {
	_, s, conn := connected(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello from the host side"))
			c.Close()
		}
	}()
	nc, err := conn.Dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b := make([]byte, 64)
	n, _ := nc.Read(b)
	if string(b[:n]) != "hello from the host side" || s.Forward.Load() != 1 {
		t.Fatalf("read %q via %d forwards", b[:n], s.Forward.Load())
	}
}

func TestJumpHost(t *testing.T) {
	c := sshtest.NewClient(t)
	bastion := sshtest.NewServer(t, c.Pub)
	target := sshtest.NewServer(t, c.Pub)
	c.Trust(t, bastion)
	c.Trust(t, target)
	tg := targetOf(target)
	tg.KeyFile = c.KeyFile
	tg.JumpHost = fmt.Sprintf("jumper@127.0.0.1:%d", bastion.Port)
	conn, err := Connect(context.Background(), tg, optsOf(c))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if r, err := conn.Do(context.Background(), "sshtest_set", nil, false); err != nil || r.Status != modules.StatusOK {
		t.Fatalf("Do via bastion: %+v %v", r, err)
	}
	if bastion.Forward.Load() != 1 || bastion.Execs.Load() != 0 || target.Execs.Load() != 1 {
		t.Errorf("bastion forwards %d execs %d, target execs %d", bastion.Forward.Load(), bastion.Execs.Load(), target.Execs.Load())
	}

	// The bastion's host key is checked like any other.
	c2 := sshtest.NewClient(t)
	c2.KeyFile = c.KeyFile
	c2.Trust(t, target)
	_, err = Connect(context.Background(), tg, optsOf(c2))
	var he *HostKeyError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "jump host") {
		t.Fatalf("unknown bastion: %v", err)
	}
}

func TestConnectErrors(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	silent, _ := net.Listen("tcp", "127.0.0.1:0")
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	loose := filepath.Join(t.TempDir(), "id_loose")
	b, _ := os.ReadFile(c.KeyFile)
	os.WriteFile(loose, b, 0o644)
	other := sshtest.NewClient(t)

	tests := []struct {
		name        string
		edit        func(*Target)
		unreachable bool
		want        string
	}{
		{"refused port", func(tg *Target) { tg.Port = closedPort }, true, "connection refused"},
		{"silent host times out", func(tg *Target) { tg.Port = silent.Addr().(*net.TCPAddr).Port }, true, "handshake"},
		{"key readable by others", func(tg *Target) { tg.KeyFile = loose }, false, "too open"},
		{"missing key", func(tg *Target) { tg.KeyFile = loose + ".nope" }, false, "no such file"},
		{"wrong key", func(tg *Target) { tg.KeyFile = other.KeyFile }, true, "authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := targetOf(s)
			tg.KeyFile = c.KeyFile
			tt.edit(&tg)
			o := optsOf(c)
			o.Timeout = 500 * time.Millisecond
			start := time.Now()
			_, err := Connect(context.Background(), tg, o)
			if err == nil {
				t.Fatal("connected")
			}
			if IsUnreachable(err) != tt.unreachable || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v (unreachable %v)", err, IsUnreachable(err))
			}
			if time.Since(start) > 3*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}

// Ctrl-C while a host hangs after the handshake returns at once, and is
// not mistaken for an unreachable host.
func TestConnectCancelledWhileHostHangs(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	s.Hang = true
	tg := targetOf(s)
	tg.KeyFile = c.KeyFile
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Connect(ctx, tg, optsOf(c))
	if !errors.Is(err, context.DeadlineExceeded) || IsUnreachable(err) || time.Since(start) > 2*time.Second {
		t.Fatalf("got %v after %v (unreachable %v)", err, time.Since(start), IsUnreachable(err))
	}
}

// With no key file, the keys of a running ssh-agent are used.
func TestSSHAgentAuth(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	raw, err := os.ReadFile(c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ssh.ParseRawPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	keyring := sshagent.NewKeyring()
	if err := keyring.Add(sshagent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go sshagent.ServeAgent(keyring, nc)
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	t.Setenv("HOME", t.TempDir()) // no default keys to fall back on
	tg := targetOf(s)
	conn, err := Connect(context.Background(), tg, optsOf(c))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()

	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := Connect(context.Background(), tg, optsOf(c)); err == nil || !strings.Contains(err.Error(), "no SSH key") {
		t.Fatalf("without key or agent: %v", err)
	}
}

// -u and --private-key (ConnectOptions.User, KeyFile) stand in for an
// inventory that sets neither; an inventory's ansible_user wins.
func TestDefaultUserAndKey(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	o := optsOf(c)
	o.User, o.KeyFile = "alice", c.KeyFile
	tg := targetOf(s)
	tg.User = ""
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := Connect(ctx, tg, o)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	tg.User = "bob"
	if conn, err = Connect(ctx, tg, o); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	s.Mu.Lock()
	defer s.Mu.Unlock()
	if len(s.Users) < 2 || s.Users[0] != "alice" || s.Users[len(s.Users)-1] != "bob" {
		t.Errorf("logins %v, want alice (the -u default) then bob (the inventory's)", s.Users)
	}
}

// A server that drops connections mid-handshake (sshd past MaxStartups,
// or a host whose boot has not yet lifted pam_nologin) is tried again, up
// to ConnectionAttempts, each retry reported; refusals that cannot pass
// by waiting are never retried.
func TestConnectRetriesDroppedHandshakes(t *testing.T) {
	tests := []struct {
		name     string
		drop     int32
		wrongKey bool
		ok       bool
		retries  int
	}{
		{"first connection dropped", 1, false, true, 1},
		{"two dropped, third attempt works", 2, false, true, 2},
		{"every attempt dropped", 3, false, false, 2},
		{"refused key is not retried", 0, true, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sshtest.NewClient(t)
			s := sshtest.NewServer(t, c.Pub)
			c.Trust(t, s)
			s.Drop.Store(tt.drop)
			var retried []string
			o := optsOf(c)
			o.OnRetry = func(host string, attempt int, err error) {
				retried = append(retried, fmt.Sprintf("%s attempt %d: %v", host, attempt, err))
			}
			tg := targetOf(s)
			tg.KeyFile = c.KeyFile
			if tt.wrongKey {
				tg.KeyFile = sshtest.NewClient(t).KeyFile
			}
			conn, err := Connect(context.Background(), tg, o)
			if conn != nil {
				conn.Close()
			}
			if (err == nil) != tt.ok {
				t.Fatalf("Connect: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !IsUnreachable(err) {
				t.Errorf("error %v is not unreachable", err)
			}
			if len(retried) != tt.retries {
				t.Errorf("retries reported: %q, want %d", retried, tt.retries)
			}
		})
	}
}

// TestHandshakesWaitForASlot: with every handshake slot taken, a connect
// waits for one (and gives up with the caller's context, saying it was
// waiting); the per-host timeout starts only once it has a slot, so a
// long queue does not time out hosts that answer.
func TestHandshakesWaitForASlot(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	tg := targetOf(s)
	tg.KeyFile = c.KeyFile
	o := optsOf(c)
	o.Timeout = 2 * time.Second

	for range cap(handshakeSlots) {
		handshakeSlots <- struct{}{}
	}
	held := cap(handshakeSlots)
	t.Cleanup(func() {
		for range held {
			<-handshakeSlots
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if conn, err := Connect(ctx, tg, o); err == nil || !IsUnreachable(err) || !strings.Contains(err.Error(), "waiting to connect") {
		if conn != nil {
			conn.Close()
		}
		t.Fatalf("connect with no free slot: %v, want unreachable while waiting to connect", err)
	}

	done := make(chan error, 1)
	go func() {
		conn, err := Connect(context.Background(), tg, o)
		if conn != nil {
			conn.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("connect went ahead with no free slot: %v", err)
	case <-time.After(3 * time.Second): // longer than o.Timeout
	}
	<-handshakeSlots
	held--
	if err := <-done; err != nil {
		t.Fatalf("connect after a slot freed, having queued longer than its timeout: %v", err)
	}
}

// A lean agent's digest is the caller's word (internal/leanagent verified
// it), and its gzip is checked against it before any host gets it: a
// file that changed after it was verified is refused, never sent, and a
// right one is sent as the gzipped bytes given.
func TestKnownAgentFile(t *testing.T) {
	exe, _ := os.Executable()
	native, err := loadAgentBin(exe)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := native.compressed()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    AgentFile
		wantErr string
	}{
		{"digest right", AgentFile{Path: exe, SHA256: native.sha256, Gzipped: func() []byte { return gz }}, ""},
		{"file changed since", AgentFile{Path: exe, SHA256: strings.Repeat("ab", 32), Gzipped: func() []byte { return gz }}, "unpacks to sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sshtest.NewClient(t)
			s := sshtest.NewServer(t, c.Pub)
			c.Trust(t, s)
			o := optsOf(c)
			o.LeanAgent = tt.file
			conn, err := connect(t, c, s, o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("connect: %v, want an error naming %q", err, tt.wantErr)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if f := conn.Facts(); f.SHA256 != native.sha256 || !strings.Contains(conn.Uploaded(), "gzipped") {
				t.Errorf("facts %+v, upload %q", f, conn.Uploaded())
			}
		})
	}
}
