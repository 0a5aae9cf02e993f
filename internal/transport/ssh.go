package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
)

// Target is one host as SSH reaches it.
type Target struct {
	// Name is the inventory hostname; Addr is what SSH dials (ansible_host).
	Name string
	Addr string
	Port int // 22 when 0
	// User logs in; the local user name when empty, like ssh.
	User    string
	KeyFile string
	// Become runs the agent as BecomeUser (root when empty) through
	// `sudo -n`, unless User already is that user.
	Become     bool
	BecomeUser string
	// JumpHost is a bastion, "[user@]host[:port]", reached with the same
	// keys and known_hosts as the target.
	JumpHost string
	// FullAgent: the host will be asked for something only the full
	// agent serves (modules.FullAgentOnly), so ConnectOptions.LeanAgent
	// is not for it.
	FullAgent bool
}

// ConnectOptions apply to every host of a run.
type ConnectOptions struct {
	// User and KeyFile are used for hosts whose inventory sets no
	// ansible_user or key (ansible-playbook's -u and --private-key); the
	// user falls back to the local user, the key to ssh's default keys.
	User, KeyFile string
	// SSHConfig is the ssh client configuration (~/.ssh/config) that
	// fills what the inventory and User/KeyFile leave unset; nil for none.
	SSHConfig *SSHConfig
	// KnownHostsFile defaults to ~/.ssh/known_hosts.
	KnownHostsFile string
	// AcceptNewHostKeys records the key of a host known_hosts does not
	// list yet. A changed key is refused regardless.
	AcceptNewHostKeys bool
	// HashKnownHosts records new hosts hashed, like ssh's HashKnownHosts.
	HashKnownHosts bool
	// Timeout bounds the TCP connect plus the SSH handshake (10s when 0).
	Timeout time.Duration
	// ConnectionAttempts is how many times a connection that the server
	// drops during the handshake (EOF, reset) is tried, as ssh's
	// ConnectionAttempts (3 when 0). sshd drops connections past
	// MaxStartups, and a host still booting drops logins that pam_nologin
	// refuses: both pass. Refusals that will not pass (a changed host
	// key, a refused key, a closed port, a timeout) are never retried.
	ConnectionAttempts int
	// OnRetry, when set, is told of each retried attempt.
	OnRetry func(host string, attempt int, err error)
	// OnProgress, when set, is told how far a transfer of more than
	// progressMin bytes has come, about twice a second and at its end.
	OnProgress func(Transfer)
	// KeepAlive is the interval of keepalive@openssh.com requests (15s
	// when 0); a connection that misses one for Timeout is declared dead.
	KeepAlive time.Duration
	// AgentBinary is the agent executable to upload (os.Executable() when
	// empty). Its platform is read from its ELF header.
	AgentBinary string
	// LeanAgent, when its Path is set and AgentBinary is not, is the
	// agent sent to hosts whose Target does not ask for the full one:
	// etcdplay's lean build (internal/leanagent), a quarter of its size.
	LeanAgent AgentFile
	// AgentBinaries maps "os/arch" (as GOOS/GOARCH: "linux/arm64") to an
	// agent executable for hosts of that platform. Unlisted platforms fall
	// back to the environment variable ETCDPLAY_AGENT_<OS>_<ARCH>.
	AgentBinaries map[string]string
	// RemoteDir is where the agent binary is kept on hosts:
	// /var/lib/etcdplay/agent for root, ~/.cache/etcdplay otherwise, when
	// empty.
	RemoteDir string
	// Persist, when above zero, connects through the relay (relay.go),
	// which keeps each SSH connection open for this long after the last
	// run that used it, so that the next run skips the handshake (as
	// ssh's ControlPersist).
	Persist time.Duration
	// RelaySocket is where the relay listens (DefaultRelaySocket when
	// empty).
	RelaySocket string
	// AgentSock is the ssh-agent socket (SSH_AUTH_SOCK when empty): the
	// relay dials with its client's, not its own.
	AgentSock string
}

func (o *ConnectOptions) agentSock() string {
	if o.AgentSock != "" {
		return o.AgentSock
	}
	return os.Getenv("SSH_AUTH_SOCK")
}

// UnreachableError is a host that cannot be reached or stopped answering:
// dial failure, timeout, handshake failure, a dead connection.
type UnreachableError struct {
	Host string
	Err  error
}

func (e *UnreachableError) Error() string { return fmt.Sprintf("%s unreachable: %v", e.Host, e.Err) }
func (e *UnreachableError) Unwrap() error { return e.Err }

// AuthError is a host that refused every key we offered.
type AuthError struct {
	Host, User string
	Err        error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("%s: authentication as %q failed (%v); check the key file, ssh-agent (SSH_AUTH_SOCK) and the user's authorized_keys",
		e.Host, e.User, e.Err)
}
func (e *AuthError) Unwrap() error { return e.Err }

// IsUnreachable reports whether err means the host cannot be used at all
// from here: not reachable, host key refused, or authentication refused.
// Other Connect errors (agent upload, sudo, platform) are failures of the
// host's setup rather than of reaching it.
func IsUnreachable(err error) bool {
	var ue *UnreachableError
	var he *HostKeyError
	var ae *AuthError
	return errors.As(err, &ue) || errors.As(err, &he) || errors.As(err, &ae)
}

func (t Target) hostport() string {
	port := t.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(t.Addr, strconv.Itoa(port))
}

func (t Target) label() string {
	if t.Name != "" {
		return t.Name
	}
	return t.Addr
}

// parseJump splits "[user@]host[:port]" into a Target.
func parseJump(s string, defUser string) (Target, error) {
	t := Target{User: defUser, Port: 22}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		t.User, s = s[:i], s[i+1:]
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		p, err := strconv.Atoi(port)
		if err != nil || p <= 0 || p > 65535 {
			return t, fmt.Errorf("jump host %q: bad port", s)
		}
		t.Addr, t.Port = host, p
	} else {
		t.Addr = strings.Trim(s, "[]")
	}
	if t.Addr == "" {
		return t, fmt.Errorf("jump host %q: no host", s)
	}
	t.Name = t.Addr
	return t, nil
}

func (o *ConnectOptions) defaults() error {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.ConnectionAttempts <= 0 {
		o.ConnectionAttempts = 3
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.KnownHostsFile == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("known_hosts: %w", err)
		}
		o.KnownHostsFile = filepath.Join(home, ".ssh", "known_hosts")
	}
	return nil
}

func localUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

// authMethods offers the key file (or ssh's default keys when none is
// given) and the keys of a running ssh-agent. The returned func releases
// the agent connection.
func authMethods(keyFile, agentSock string) ([]ssh.AuthMethod, func(), error) {
	var signers []ssh.Signer
	done := func() {}
	explicit := keyFile != ""
	files := []string{keyFile}
	if !explicit {
		files = nil
		if home, err := os.UserHomeDir(); err == nil {
			for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
				files = append(files, filepath.Join(home, ".ssh", n))
			}
		}
	}
	var encrypted error
	for _, f := range files {
		s, err := loadKey(f)
		var pm *ssh.PassphraseMissingError
		switch {
		case err == nil:
			signers = append(signers, s)
		case errors.As(err, &pm):
			// Usable only through ssh-agent, where the user unlocked it.
			encrypted = fmt.Errorf("key %s is passphrase-protected: add it to ssh-agent (ssh-add %s)", f, f)
		case errors.Is(err, os.ErrNotExist) && !explicit:
		default:
			return nil, done, err
		}
	}
	var agentSigners func() ([]ssh.Signer, error)
	if agentSock != "" {
		if c, err := net.Dial("unix", agentSock); err == nil {
			done = func() { c.Close() }
			agentSigners = sshagent.NewClient(c).Signers
		}
	}
	if len(signers) == 0 && agentSigners == nil {
		if encrypted != nil {
			return nil, done, encrypted
		}
		return nil, done, errors.New("no SSH key: set ansible_ssh_private_key_file or start ssh-agent (SSH_AUTH_SOCK)")
	}
	var methods []ssh.AuthMethod
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if agentSigners != nil {
		methods = append(methods, ssh.PublicKeysCallback(agentSigners))
	}
	return methods, done, nil
}

// loadKey reads a private key, refusing one others can read, as ssh does.
func loadKey(path string) (ssh.Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ssh key %s: permissions %04o are too open (others can read it); run chmod 600 %s",
			path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, err
		}
		return nil, fmt.Errorf("ssh key %s: %w", path, err)
	}
	return s, nil
}

// handshakeSlots bounds the SSH handshakes in flight from this process.
// A handshake costs CPU at both ends (key exchange, the server's auth and
// session setup): hundreds started at once on a small controller, or on
// hosts sharing its CPU, all crawl past their timeout together (seen with
// 200 lab hosts on 2 cores). Queued, each gets what it needs, and the
// per-host timeout, which starts once a slot is taken, measures the host
// rather than the queue. 64 keeps a 1000-host fleet behind 300 ms of
// round trips connecting in seconds.
var handshakeSlots = make(chan struct{}, 64)

// dialRetrying is dialSSH, tried again (after a short, growing pause)
// while the server drops the connection mid-handshake.
func dialRetrying(ctx context.Context, t Target, o *ConnectOptions, hk *hostKeys, via *ssh.Client) (*ssh.Client, error) {
	for attempt := 1; ; attempt++ {
		c, err := dialSSH(ctx, t, o, hk, via)
		if err == nil || attempt >= o.ConnectionAttempts || !droppedInHandshake(err) || ctx.Err() != nil {
			return c, err
		}
		if o.OnRetry != nil {
			o.OnRetry(t.label(), attempt, err)
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 300 * time.Millisecond):
		}
	}
}

// droppedInHandshake is a connection the server closed or reset after
// accepting it: load or a refusal that may pass, not a wrong address.
func droppedInHandshake(err error) bool {
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		return false
	}
	return errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, syscall.ECONNRESET)
}

// dialSSH opens an SSH client to t over a fresh TCP connection, or over
// via when it is set (a jump host).
func dialSSH(ctx context.Context, t Target, o *ConnectOptions, hk *hostKeys, via *ssh.Client) (*ssh.Client, error) {
	host := t.label()
	hostport := t.hostport()
	select {
	case handshakeSlots <- struct{}{}:
		defer func() { <-handshakeSlots }()
	case <-ctx.Done():
		return nil, &UnreachableError{Host: host, Err: fmt.Errorf("waiting to connect to %s: %w", hostport, context.Cause(ctx))}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	methods, release, err := authMethods(t.KeyFile, o.agentSock())
	defer release()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", host, err)
	}
	known, err := hk.load()
	if err != nil {
		return nil, err
	}
	var keyErr *HostKeyError
	check := hk.callback(known)
	cfg := &ssh.ClientConfig{
		User: t.User,
		Auth: methods,
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := check(hostname, remote, key)
			if he := (*HostKeyError)(nil); errors.As(err, &he) {
				keyErr = he
			}
			return err
		},
		HostKeyAlgorithms: hostKeyAlgorithms(known, hostport),
		Timeout:           o.Timeout,
	}

	var conn net.Conn
	if via != nil {
		conn, err = via.DialContext(ctx, "tcp", hostport)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", hostport)
	}
	if err != nil {
		return nil, &UnreachableError{Host: host, Err: err}
	}

	// The handshake has no context of its own: closing the connection is
	// the one way to stop it, and works for tunnelled connections too.
	type result struct {
		c     ssh.Conn
		chans <-chan ssh.NewChannel
		reqs  <-chan *ssh.Request
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		c, chans, reqs, err := ssh.NewClientConn(conn, hostport, cfg)
		ch <- result{c, chans, reqs, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		conn.Close()
		<-ch
		return nil, &UnreachableError{Host: host, Err: fmt.Errorf("ssh handshake with %s: %w", hostport, context.Cause(ctx))}
	}
	if r.err != nil {
		conn.Close()
		if keyErr != nil {
			return nil, keyErr
		}
		if strings.Contains(r.err.Error(), "unable to authenticate") {
			return nil, &AuthError{Host: host, User: t.User, Err: r.err}
		}
		return nil, &UnreachableError{Host: host, Err: r.err}
	}
	return ssh.NewClient(r.c, r.chans, r.reqs), nil
}
