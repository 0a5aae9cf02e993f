package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdplay/etcdplay/internal/transport/sshtest"
	"github.com/etcdplay/etcdplay/modules"
)

// startRelay runs a relay in this process (what `etcdplay relay` runs)
// on a socket of the test's own; done is closed when RelayMain returns,
// with its error in *err.
func startRelay(t *testing.T, persist time.Duration) (sock string, done <-chan struct{}, mainErrP *error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "relay")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock = filepath.Join(dir, "r", "relay.sock")
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	var mainErr error
	go func() { mainErr = RelayMain(ctx, sock, persist); close(ch) }()
	t.Cleanup(func() { cancel(); <-ch })
	waitFor(t, "the relay's socket", func() bool { _, err := os.Stat(sock); return err == nil })
	return sock, ch, &mainErr
}

func relayed(c *sshtest.Client, sock string) ConnectOptions {
	o := optsOf(c)
	o.Persist, o.RelaySocket = time.Minute, sock
	return o
}

// Two runs through the relay: the host sees one SSH login, and each run
// its own agent session; everything a run does over the connection (the
// agent's cold upload, requests, SFTP, a forwarded port) goes through.
func TestRelayReusesTheConnection(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	sock, _, _ := startRelay(t, time.Minute)
	ctx := context.Background()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from the host side"))
			c.Close()
		}
	}()

	for run, want := range []string{"a new connection", "its connection reused"} {
		if run > 0 {
			// The first run's agent has exited, and the relay has
			// started the next run's on the connection.
			waitFor(t, "the spare agent session", func() bool { return s.Execs.Load() == 2 && s.Running.Load() == 1 })
		}
		execs := s.Execs.Load()
		conn, err := connect(t, c, s, relayed(c, sock))
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if got, want := s.Execs.Load()-execs, int32(1-run); got != want {
			t.Errorf("run %d started %d agent sessions; want %d (the second run takes the one started for it)", run, got, want)
		}
		if !strings.Contains(conn.Describe(), want) {
			t.Errorf("run %d: %s", run, conn.Describe())
		}
		r, err := conn.Do(ctx, "sshtest_set", modules.Args{"want": 2, "have": 1}, false)
		if err != nil || r.Status != modules.StatusChanged {
			t.Fatalf("run %d: %+v %v", run, r, err)
		}
		dst := filepath.Join(s.Home, "f")
		content := strings.Repeat("relayed ", 1<<16)
		if err := conn.Upload(ctx, strings.NewReader(content), dst, 0o600); err != nil {
			t.Fatalf("run %d: upload: %v", run, err)
		}
		var buf bytes.Buffer
		if err := conn.Download(ctx, dst, &buf); err != nil || buf.String() != content {
			t.Fatalf("run %d: download: %d bytes, %v", run, buf.Len(), err)
		}
		nc, err := conn.Dial(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("run %d: dial: %v", run, err)
		}
		b := make([]byte, 64)
		n, _ := nc.Read(b)
		nc.Close()
		if string(b[:n]) != "hello from the host side" {
			t.Fatalf("run %d: read %q", run, b[:n])
		}
		conn.Close()
	}
	waitFor(t, "the third run's spare agent session", func() bool { return s.Execs.Load() == 3 && s.Running.Load() == 1 })
	s.Mu.Lock()
	logins := len(s.Users)
	s.Mu.Unlock()
	if logins != 1 {
		t.Errorf("%d logins; want 1", logins)
	}
}

// The agent session the relay starts ahead is used only while it lives
// and only by a run that asks for the same probe: one whose agent has
// exited is not handed over, and one for another agent (here another
// agent dir) is closed.
func TestRelaySpareSession(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	sock, _, _ := startRelay(t, time.Minute)
	run := func(o ConnectOptions, what string, newExecs int32) {
		t.Helper()
		execs := s.Execs.Load()
		conn, err := connect(t, c, s, o)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := s.Execs.Load() - execs; got != newExecs {
			t.Errorf("%s started %d agent sessions; want %d", what, got, newExecs)
		}
		if r, err := conn.Do(context.Background(), "sshtest_set", modules.Args{"want": 2, "have": 2}, false); err != nil || r.Status != modules.StatusOK {
			t.Fatalf("%s: %+v %v", what, r, err)
		}
		conn.Close()
		waitFor(t, "a spare after "+what, func() bool { return s.Execs.Load() == execs+newExecs+1 && s.Running.Load() == 1 })
	}
	o := relayed(c, sock)
	run(o, "the first run", 1)

	// A session that is not an agent's (SFTP here) leaves the spare for
	// the next run.
	tg := targetOf(s)
	tg.KeyFile = c.KeyFile
	so := o
	if err := so.defaults(); err != nil {
		t.Fatal(err)
	}
	client, _, err := dialRelay(context.Background(), tg, &so)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	sess.Close()
	client.Close()
	run(o, "a run after an SFTP session", 0)

	killAgents(t, s.Home)
	waitFor(t, "the spare's end", func() bool { return s.Running.Load() == 0 })
	run(o, "a run after its spare died", 1)

	other := o
	other.RemoteDir = t.TempDir()
	run(other, "a run with another agent dir", 1)
	run(other, "its next run", 0)
}

// killAgents kills the agent running from under home (sshtest runs its
// sessions' commands as the test's own processes), once the probe's
// shell has become it.
func killAgents(t *testing.T, home string) {
	t.Helper()
	var pids []int
	waitFor(t, "the spare's agent process", func() bool {
		pids = nil
		files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil || !bytes.HasPrefix(b, []byte(home)) || !bytes.HasSuffix(b, []byte("\x00agent\x00")) {
				continue
			}
			var pid int
			fmt.Sscanf(f, "/proc/%d/cmdline", &pid)
			pids = append(pids, pid)
		}
		return len(pids) == 1
	})
	p, err := os.FindProcess(pids[0])
	if err == nil {
		err = p.Kill()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// A host the relay cannot use fails the run as it would without the
// relay: the same words, and the same type for IsUnreachable and
// errors.As.
func TestRelayErrorsAreConnects(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	untrusted := sshtest.NewServer(t, c.Pub)
	sock, _, _ := startRelay(t, time.Minute)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	tests := []struct {
		name string
		edit func(*Target)
		as   any
	}{
		{"host key not known", func(tg *Target) { tg.Port = untrusted.Port }, new(*HostKeyError)},
		{"key refused", func(tg *Target) { tg.KeyFile = sshtest.NewClient(t).KeyFile }, new(*AuthError)},
		{"port closed", func(tg *Target) { tg.Port = closedPort }, new(*UnreachableError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := targetOf(s)
			tg.KeyFile = c.KeyFile
			tt.edit(&tg)
			_, direct := Connect(context.Background(), tg, optsOf(c))
			_, viaRelay := Connect(context.Background(), tg, relayed(c, sock))
			if direct == nil || viaRelay == nil {
				t.Fatalf("connected: %v, %v", direct, viaRelay)
			}
			if direct.Error() != viaRelay.Error() {
				t.Errorf("through the relay:\n%v\nwithout:\n%v", viaRelay, direct)
			}
			if !IsUnreachable(viaRelay) || !errors.As(viaRelay, tt.as) {
				t.Errorf("%T: not a %T (without the relay: %T %v)", viaRelay, tt.as, direct, errors.As(direct, tt.as))
			}
		})
	}
}

// A host that went away since the last run is dialed again, not served
// from the dead connection.
func TestRelayRedialsAHostThatWentAway(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	sock, _, _ := startRelay(t, time.Minute)
	conn, err := connect(t, c, s, relayed(c, sock))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	s.Kill()
	_, err = connect(t, c, s, relayed(c, sock))
	if err == nil || !IsUnreachable(err) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("after the host died: %v", err)
	}
}

// Once no run has used it for its persist time, the relay closes its
// connections, removes its socket and exits.
func TestRelayExitsWhenIdle(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	sock, done, mainErr := startRelay(t, 300*time.Millisecond)
	o := relayed(c, sock)
	o.Persist = 300 * time.Millisecond
	conn, err := connect(t, c, s, o)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	exitsAfterTheRun(t, conn, done, mainErr, 0)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

// The socket's directory must be the user's alone: another user who can
// write there could stand in for the relay and see every session.
func TestRelayRefusesASharedDirectory(t *testing.T) {
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	o := relayed(c, filepath.Join(dir, "relay.sock"))
	if _, err := connect(t, c, s, o); err == nil || !strings.Contains(err.Error(), "mode 0755") {
		t.Fatalf("connected through a shared directory: %v", err)
	}
	if err := RelayMain(context.Background(), o.RelaySocket, time.Second); err == nil || !strings.Contains(err.Error(), "mode 0755") {
		t.Fatalf("relay served from a shared directory: %v", err)
	}
}

// Through a bastion, the relay keeps both connections: the second run
// logs in to neither.
func TestRelayThroughAJumpHost(t *testing.T) {
	c := sshtest.NewClient(t)
	bastion := sshtest.NewServer(t, c.Pub)
	target := sshtest.NewServer(t, c.Pub)
	c.Trust(t, bastion)
	c.Trust(t, target)
	sock, _, _ := startRelay(t, time.Minute)
	tg := targetOf(target)
	tg.KeyFile = c.KeyFile
	tg.JumpHost = fmt.Sprintf("jumper@127.0.0.1:%d", bastion.Port)
	for run := range 2 {
		conn, err := Connect(context.Background(), tg, relayed(c, sock))
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if r, err := conn.Do(context.Background(), "sshtest_set", nil, false); err != nil || r.Status != modules.StatusOK {
			t.Fatalf("run %d: Do via bastion: %+v %v", run, r, err)
		}
		conn.Close()
	}
	// Three agent sessions: the two runs', and the one the relay has
	// started for the next run.
	waitFor(t, "the next run's agent session", func() bool { return target.Execs.Load() == 3 })
	bastion.Mu.Lock()
	target.Mu.Lock()
	logins := []int{len(bastion.Users), len(target.Users)}
	target.Mu.Unlock()
	bastion.Mu.Unlock()
	if logins[0] != 1 || logins[1] != 1 || bastion.Forward.Load() != 1 || target.Execs.Load() != 3 {
		t.Errorf("logins %v, bastion forwards %d, target execs %d", logins, bastion.Forward.Load(), target.Execs.Load())
	}
}

// StopRelay: the relay takes no more runs at once (its socket goes), lets
// the run it serves finish over its connection, then exits.
func TestRelayStop(t *testing.T) {
	if running, err := StopRelay(filepath.Join(t.TempDir(), "relay.sock")); running || err != nil {
		t.Fatalf("no relay: running %v, %v", running, err)
	}
	c := sshtest.NewClient(t)
	s := sshtest.NewServer(t, c.Pub)
	c.Trust(t, s)
	sock, done, mainErr := startRelay(t, time.Minute)
	conn, err := connect(t, c, s, relayed(c, sock))
	if err != nil {
		t.Fatal(err)
	}
	if running, err := StopRelay(sock); !running || err != nil {
		t.Fatalf("stop: running %v, %v", running, err)
	}
	waitFor(t, "the socket to go", func() bool { _, err := os.Stat(sock); return os.IsNotExist(err) })
	if r, err := conn.Do(context.Background(), "sshtest_set", nil, false); err != nil || r.Status != modules.StatusOK {
		t.Fatalf("the run in progress lost its connection: %+v %v", r, err)
	}
	exitsAfterTheRun(t, conn, done, mainErr, 200*time.Millisecond)
}

// exitsAfterTheRun checks that the relay (done, mainErr: startRelay's)
// still runs after grace while conn is open, and exits cleanly once it
// is closed.
func exitsAfterTheRun(t *testing.T, conn *Conn, done <-chan struct{}, mainErr *error, grace time.Duration) {
	t.Helper()
	select {
	case <-done:
		t.Fatalf("exited while a run was connected: %v", *mainErr)
	case <-time.After(grace):
	}
	conn.Close()
	select {
	case <-done:
		if *mainErr != nil {
			t.Fatal(*mainErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after the last run left")
	}
}
