// Package sshtest is a small real SSH server for tests of the transport
// and the scheduler: public-key auth, exec through /bin/sh (as the test's
// user, with HOME set), the sftp subsystem, direct-tcpip forwarding and
// keepalive replies, on 127.0.0.1. The test binary is the agent the
// servers run (Main), with the test modules sshtest_set and sshtest_block.
package sshtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/etcdplay/etcdplay/internal/agent"
	"github.com/etcdplay/etcdplay/modules"
)

// The test binary doubles as the agent binary the tests upload: run as
// `<binary> agent` it serves the protocol, with the test modules below.
// SFTPServerEnv makes the test binary an sftp server on stdin/stdout (see
// TestMain).
const SFTPServerEnv = "ETCDPLAY_TEST_SFTP_SERVER"

// Main is the TestMain of a package whose tests connect to Servers. It
// makes the test binary what the servers run: an sftp server when started
// as one by a Server, the agent when run as `<binary> agent`. Otherwise it
// runs the tests with a user cache dir of their own, so the agents they
// upload neither land in nor prune the real one, and exits.
func Main(m *testing.M) {
	// Here, not in an init: the test package's own test modules are
	// registered by then.
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		if err := agent.Main(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if os.Getenv(SFTPServerEnv) == "1" {
		srv, err := sftp.NewServer(struct {
			io.Reader
			io.WriteCloser
		}{os.Stdin, os.Stdout})
		if err != nil {
			os.Exit(1)
		}
		if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
			os.Exit(1)
		}
		os.Exit(0)
	}
	cache, err := os.MkdirTemp("", "etcdplay-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CACHE_HOME", cache)
	code := m.Run()
	os.RemoveAll(cache)
	os.Exit(code)
}

func init() {
	modules.Register("sshtest_set", setModule{})
	modules.Register("sshtest_block", blockModule{})
}

// setModule reports a change when "have" differs from "want".
type setModule struct{}

func (setModule) Validate(modules.Args) error { return nil }
func (setModule) Plan(_ context.Context, env *modules.Env, a modules.Args) (*modules.Change, error) {
	c := &modules.Change{}
	if a.Str("have", "") != a.Str("want", "") {
		c.Add("~", "value", a.Str("want", ""))
	}
	return c, nil
}
func (setModule) Apply(_ context.Context, env *modules.Env, c *modules.Change) (*modules.Result, error) {
	return &modules.Result{Data: map[string]any{"pid": os.Getpid(), "host": env.Host}}, nil
}

// blockModule waits for its context to end.
type blockModule struct{}

func (blockModule) Validate(modules.Args) error { return nil }
func (blockModule) Plan(ctx context.Context, _ *modules.Env, _ modules.Args) (*modules.Change, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (blockModule) Apply(context.Context, *modules.Env, *modules.Change) (*modules.Result, error) {
	return nil, nil
}

// Server is a small real SSH server on 127.0.0.1: public-key auth,
// exec (through /bin/sh, as the test's user, with HOME set), the sftp
// subsystem, direct-tcpip forwarding and keepalive replies.
type Server struct {
	t        testing.TB
	Addr     string
	Port     int
	Home     string
	HostKeys []ssh.Signer
	ln       net.Listener
	Env      []string // extra environment of commands
	Hang     bool     // accept exec requests but never run them

	// Drop is how many of the next connections are closed right after
	// accept, as sshd does past MaxStartups.
	Drop atomic.Int32

	Mu    sync.Mutex // guards Users
	conns []net.Conn
	Users []string // login users that authenticated

	Execs   atomic.Int32 // exec requests served
	SFTPs   atomic.Int32 // sftp subsystems started
	Running atomic.Int32 // commands still running
	Forward atomic.Int32 // direct-tcpip channels
}

func GenSigner(t testing.TB, kind string) ssh.Signer {
	t.Helper()
	var key any
	var err error
	switch kind {
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func NewServer(t testing.TB, client ssh.PublicKey, hostKeys ...ssh.Signer) *Server {
	t.Helper()
	if len(hostKeys) == 0 {
		hostKeys = []ssh.Signer{GenSigner(t, "ed25519")}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, Addr: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Home: t.TempDir(), HostKeys: hostKeys, ln: ln}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(m ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) == string(client.Marshal()) {
				s.Mu.Lock()
				s.Users = append(s.Users, m.User())
				s.Mu.Unlock()
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if s.Drop.Add(-1) >= 0 {
				c.Close()
				continue
			}
			s.Mu.Lock()
			s.conns = append(s.conns, c)
			s.Mu.Unlock()
			go s.serveConn(c, cfg)
		}
	}()
	t.Cleanup(s.Kill)
	return s
}

// Kill drops the listener and every connection, like a host that died.
func (s *Server) Kill() {
	s.ln.Close()
	s.Mu.Lock()
	defer s.Mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// AnswerGlobalRequests answers a server connection's global requests as
// sshd does: yes to keepalives (the controller's liveness check), no to
// the rest.
func AnswerGlobalRequests(reqs <-chan *ssh.Request) {
	for r := range reqs {
		if r.WantReply {
			r.Reply(r.Type == "keepalive@openssh.com", nil)
		}
	}
}

func (s *Server) serveConn(c net.Conn, cfg *ssh.ServerConfig) {
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	defer sc.Close()
	go AnswerGlobalRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go s.session(ch, creqs)
		case "direct-tcpip":
			var p struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			dst, err := net.Dial("tcp", net.JoinHostPort(p.Host, fmt.Sprint(p.Port)))
			if err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				dst.Close()
				continue
			}
			s.Forward.Add(1)
			go ssh.DiscardRequests(creqs)
			go func() { io.Copy(ch, dst); ch.CloseWrite() }()
			go func() { io.Copy(dst, ch); dst.Close() }()
		default:
			nc.Reject(ssh.UnknownChannelType, "no")
		}
	}
}

func (s *Server) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for r := range reqs {
		switch r.Type {
		case "exec":
			var p struct{ Cmd string }
			ssh.Unmarshal(r.Payload, &p)
			r.Reply(true, nil)
			if s.Hang {
				continue
			}
			s.Execs.Add(1)
			s.Running.Add(1)
			cmd := exec.Command("/bin/sh", "-c", p.Cmd)
			cmd.Env = append(append(os.Environ(), "HOME="+s.Home), s.Env...)
			cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
			// Like sshd, end the session when the command exits, even
			// if the client still holds stdin open: feed stdin from a
			// goroutine Run does not wait for.
			stdin, _ := cmd.StdinPipe()
			go func() { io.Copy(stdin, ch); stdin.Close() }()
			code := 0
			if err := cmd.Run(); err != nil {
				code = 255
				if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
					code = ee.ExitCode()
				}
			}
			s.Running.Add(-1)
			status := make([]byte, 4)
			binary.BigEndian.PutUint32(status, uint32(code))
			ch.SendRequest("exit-status", false, status)
			return
		case "subsystem":
			var p struct{ Name string }
			ssh.Unmarshal(r.Payload, &p)
			if p.Name != "sftp" {
				r.Reply(false, nil)
				continue
			}
			r.Reply(true, nil)
			s.SFTPs.Add(1)
			// The sftp server runs in a process of its own, as sshd's
			// sftp-server does. In this process, a fork for another
			// session's exec would inherit (until its own exec) the
			// write descriptor of an agent binary being uploaded, and a
			// concurrent exec of that binary would fail with "text file
			// busy" (golang/go#22315), which no real sshd does.
			self, err := os.Executable()
			if err != nil {
				return
			}
			cmd := exec.Command(self)
			cmd.Env = append(os.Environ(), SFTPServerEnv+"=1")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
			_ = cmd.Run()
			return
		default:
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}
}

// Client is a client key on disk and a known_hosts path.
type Client struct {
	KeyFile    string
	Pub        ssh.PublicKey
	KnownHosts string
}

func NewClient(t testing.TB) *Client {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return &Client{KeyFile: keyFile, Pub: sp, KnownHosts: filepath.Join(dir, "known_hosts")}
}

// Trust records s's keys in the client's known_hosts.
func (c *Client) Trust(t testing.TB, s *Server, keys ...ssh.Signer) {
	t.Helper()
	if len(keys) == 0 {
		keys = s.HostKeys
	}
	f, err := os.OpenFile(c.KnownHosts, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, k := range keys {
		fmt.Fprintf(f, "[%s]:%d %s", s.Addr, s.Port, ssh.MarshalAuthorizedKey(k.PublicKey()))
	}
}
