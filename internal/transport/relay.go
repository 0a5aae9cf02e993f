package transport

// The relay keeps SSH connections open between runs, as ssh's
// ControlMaster with ControlPersist does: a run with Persist set asks a
// long-lived `etcdplay relay` process of the same user, over a unix
// socket, for a connection to each host, and speaks SSH to the relay
// instead of to the host. The relay opens every channel the run asks for
// (the agent's session, SFTP, forwarded ports) on its own connection to
// the host and copies the bytes. The next run within Persist skips the
// TCP connect, the key exchange, the authentication and the host's
// per-login setup (sshd's re-exec and PAM), which are most of a warm
// run's cost; its sessions, and so its agents, are its own (the agent
// session may have been started before the run asked: relayspare.go).
//
// What is trusted: the socket's directory is the user's alone (0700,
// checked on both sides), the relay accepts only peers of its own uid
// (SO_PEERCRED), and a run pins the relay's host key, which the relay
// writes into that directory at start. Host keys are verified by the
// relay when it dials, against the known_hosts the run names; a
// connection is shared only by runs whose target, options, key file and
// known_hosts contents are all the same, so a key removed from
// known_hosts takes effect at the next run.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// relayConnect is the global request a run sends the relay after the
// handshake: which host to relay to. The reply's payload is a
// relayReply.
const relayConnect = "connect@etcdplay"

// relayStop asks the relay to take no more runs and to exit once the
// runs it serves have ended (StopRelay).
const relayStop = "stop@etcdplay"

// relayRequest is what the relay needs to dial a host as the run would.
type relayRequest struct {
	Target         Target
	KnownHostsFile string
	AcceptNew      bool
	Hash           bool
	Timeout        time.Duration
	Attempts       int
	AgentSock      string
	Persist        time.Duration
}

// key names the connection runs with this request may share: everything
// that decides how the host is dialed and trusted, contents included.
func (r *relayRequest) key() string {
	k := *r
	k.Timeout, k.Persist, k.AgentSock, k.Attempts = 0, 0, "", 0
	k.Target.Name, k.Target.Become, k.Target.BecomeUser, k.Target.FullAgent = "", false, "", false
	h := sha256.New()
	b, _ := json.Marshal(k)
	h.Write(b)
	for _, f := range []string{r.KnownHostsFile, SystemKnownHosts, r.Target.KeyFile} {
		if f == "" {
			continue
		}
		data, _ := os.ReadFile(f)
		fmt.Fprintf(h, "\x00%s\x00%d\x00", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// relayReply is the relay's answer: an error, typed as Connect's own so
// that a run reports an unreachable or refused host the same way through
// the relay as without it.
type relayReply struct {
	Reused  bool          `json:",omitempty"`
	Kind    string        `json:",omitempty"` // "", "unreachable", "auth" or "hostkey"
	Msg     string        `json:",omitempty"` // the error as the run should print it
	Host    string        `json:",omitempty"`
	User    string        `json:",omitempty"`
	Cause   string        `json:",omitempty"`
	HostKey *HostKeyError `json:",omitempty"`
	KeyErr  string        `json:",omitempty"` // HostKey.Err
}

func replyFor(err error) relayReply {
	r := relayReply{Msg: err.Error()}
	var ue *UnreachableError
	var ae *AuthError
	var he *HostKeyError
	switch {
	case errors.As(err, &he):
		r.Kind, r.HostKey = "hostkey", he
		if he.Err != nil {
			r.KeyErr = he.Err.Error()
		}
	case errors.As(err, &ae):
		r.Kind, r.Host, r.User, r.Cause = "auth", ae.Host, ae.User, ae.Err.Error()
	case errors.As(err, &ue):
		r.Kind, r.Host, r.Cause = "unreachable", ue.Host, ue.Err.Error()
	}
	return r
}

// err rebuilds the relay's error: its text as the relay printed it, its
// type as Connect's callers test it (errors.As, IsUnreachable).
func (r *relayReply) err() error {
	var cause error
	switch r.Kind {
	case "hostkey":
		he := *r.HostKey
		if r.KeyErr != "" {
			he.Err = errors.New(r.KeyErr)
		}
		cause = &he
	case "auth":
		cause = &AuthError{Host: r.Host, User: r.User, Err: errors.New(r.Cause)}
	case "unreachable":
		cause = &UnreachableError{Host: r.Host, Err: errors.New(r.Cause)}
	}
	return &relayedError{msg: r.Msg, cause: cause}
}

// relayedError is an error of the host's that the relay reported (not
// of the relay itself).
type relayedError struct {
	msg   string
	cause error
}

func (e *relayedError) Error() string { return e.msg }
func (e *relayedError) Unwrap() error { return e.cause }

// DefaultRelaySocket is where the relay of this user listens: under
// $XDG_RUNTIME_DIR (a tmpfs of the user's session) when there is one,
// else under the user cache directory.
func DefaultRelaySocket() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "etcdplay", "relay.sock")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "etcdplay", "relay", "relay.sock")
}

// privateDir makes dir if needed and checks that it is this user's
// alone: whoever can write there could stand in for the relay.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return fmt.Errorf("relay: %s is not a directory", dir)
	case !ok || int(sys.Uid) != os.Getuid():
		return fmt.Errorf("relay: %s belongs to another user: remove it (it is made again, 0700)", dir)
	case st.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("relay: %s is mode %04o: other users must not reach the socket (chmod 700 %s)", dir, st.Mode().Perm(), dir)
	}
	return nil
}

// samePeer checks that the other end of a unix socket runs as this user.
func samePeer(c net.Conn) error {
	cred, err := peerCred(c)
	if err != nil {
		return err
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("relay: peer runs as uid %d, not %d", cred.Uid, os.Getuid())
	}
	return nil
}

// peerCred is who runs the process at the other end of a unix socket.
func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errors.New("relay: not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if credErr != nil {
		return nil, fmt.Errorf("relay: peer credentials: %w", credErr)
	}
	return cred, nil
}

// RelayPID is the process id of the relay serving sock: for accounting
// its costs apart from the runs' (the benchmarks).
func RelayPID(sock string) (int, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	cred, err := peerCred(c)
	if err != nil {
		return 0, err
	}
	return int(cred.Pid), nil
}

func relayPubFile(sock string) string { return filepath.Join(filepath.Dir(sock), "relay.pub") }

// dialRelay connects to t through the relay, starting one if none
// answers on the socket. reused says whether the relay's connection to
// the host was open already.
func dialRelay(ctx context.Context, t Target, o *ConnectOptions) (client *ssh.Client, reused bool, err error) {
	sock := o.RelaySocket
	if sock == "" {
		sock = DefaultRelaySocket()
	}
	if err := privateDir(filepath.Dir(sock)); err != nil {
		return nil, false, err
	}
	// A relay that was just then closing for idleness drops the run:
	// the second try starts the next one.
	for try := 1; ; try++ {
		conn, err := relaySocket(ctx, sock, o.Persist)
		if err != nil {
			return nil, false, err
		}
		client, reused, err = relayHandshake(ctx, conn, sock, t, o)
		if err == nil {
			return client, reused, nil
		}
		conn.Close()
		var host *relayedError
		if try == 2 || errors.As(err, &host) || ctx.Err() != nil {
			return nil, false, err
		}
	}
}

// relaySocket dials the relay's socket, starting the relay when nothing
// listens there. Runs that start one at once each spawn it; all but one
// find the relay's lock taken and exit, and every run dials the one left.
func relaySocket(ctx context.Context, sock string, persist time.Duration) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		// One connect of this run starts the relay; the others wait for
		// it rather than each starting a process.
		relayStart.Lock()
		conn, err = d.DialContext(ctx, "unix", sock)
		if err != nil {
			if err = spawnRelay(sock, persist); err == nil {
				deadline := time.Now().Add(5 * time.Second)
				for {
					if conn, err = d.DialContext(ctx, "unix", sock); err == nil || time.Now().After(deadline) || ctx.Err() != nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if err != nil {
					err = fmt.Errorf("relay did not start listening on %s (its log: %s): %w", sock, relayLogFile(sock), err)
				}
			}
		}
		relayStart.Unlock()
		if err != nil {
			return nil, err
		}
	}
	if err := samePeer(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

var relayStart sync.Mutex

func relayLogFile(sock string) string { return filepath.Join(filepath.Dir(sock), "relay.log") }

// spawnRelay starts `etcdplay relay` in a session of its own, so that
// Ctrl-C in the run's terminal does not reach it.
func spawnRelay(sock string, persist time.Duration) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("starting the relay: %w", err)
	}
	logf, err := os.OpenFile(relayLogFile(sock), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("starting the relay: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "relay", "--socket", sock, "--persist", persist.String())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/" // not hold the run's directory (a mount) busy
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the relay (%s relay): %w", exe, err)
	}
	return cmd.Process.Release()
}

// relayClientConfig is how a run speaks SSH to the relay on sock: its
// host key pinned to the one the relay wrote beside the socket.
func relayClientConfig(sock string, timeout time.Duration) (*ssh.ClientConfig, error) {
	pubText, err := os.ReadFile(relayPubFile(sock))
	if err != nil {
		return nil, fmt.Errorf("relay: its host key: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		return nil, fmt.Errorf("relay: its host key %s: %w", relayPubFile(sock), err)
	}
	return &ssh.ClientConfig{User: "etcdplay", HostKeyCallback: ssh.FixedHostKey(pub), Timeout: timeout}, nil
}

// relayHandshake speaks SSH to the relay over conn and asks it for t.
func relayHandshake(ctx context.Context, conn net.Conn, sock string, t Target, o *ConnectOptions) (*ssh.Client, bool, error) {
	cfg, err := relayClientConfig(sock, o.Timeout)
	if err != nil {
		return nil, false, err
	}
	req := relayRequest{Target: t, KnownHostsFile: o.KnownHostsFile, AcceptNew: o.AcceptNewHostKeys, Hash: o.HashKnownHosts,
		Timeout: o.Timeout, Attempts: o.ConnectionAttempts, AgentSock: o.agentSock(), Persist: o.Persist}
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, false, err
	}
	type result struct {
		client *ssh.Client
		reply  relayReply
		err    error
	}
	done := make(chan result, 1)
	go func() {
		sc, chans, reqs, err := ssh.NewClientConn(conn, "relay", cfg)
		if err != nil {
			done <- result{err: fmt.Errorf("relay: %w", err)}
			return
		}
		ok, body, err := sc.SendRequest(relayConnect, true, payload)
		var r relayReply
		if err == nil {
			err = json.Unmarshal(body, &r)
		}
		if err != nil {
			sc.Close()
			done <- result{err: fmt.Errorf("relay: %w", err)}
			return
		}
		if !ok {
			sc.Close()
			done <- result{reply: r, err: r.err()}
			return
		}
		done <- result{client: ssh.NewClient(sc, chans, reqs), reply: r}
	}()
	select {
	case r := <-done:
		return r.client, r.reply.Reused, r.err
	case <-ctx.Done():
		conn.Close()
		<-done
		return nil, false, &UnreachableError{Host: t.label(), Err: fmt.Errorf("connecting through the relay: %w", context.Cause(ctx))}
	}
}

// StopRelay asks the relay on sock to stop: it takes no more runs, and
// closes its connections and exits once the runs it serves have ended.
// running is false when no relay answered there.
func StopRelay(sock string) (running bool, err error) {
	if sock == "" {
		sock = DefaultRelaySocket()
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return false, nil
	}
	defer conn.Close()
	if err := samePeer(conn); err != nil {
		return true, err
	}
	cfg, err := relayClientConfig(sock, 10*time.Second)
	if err != nil {
		return true, err
	}
	sc, _, reqs, err := ssh.NewClientConn(conn, "relay", cfg)
	if err != nil {
		return true, fmt.Errorf("relay: %w", err)
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	if ok, _, err := sc.SendRequest(relayStop, true, nil); err != nil || !ok {
		return true, fmt.Errorf("relay on %s did not take the stop request (%v)", sock, err)
	}
	return true, nil
}
