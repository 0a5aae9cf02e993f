package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/etcdplay/etcdplay/internal/agent"
	"github.com/etcdplay/etcdplay/modules"
)

// Facts describe a connected host and its agent.
type Facts = agent.Facts

// Conn is the one SSH connection to a host and the one agent session over
// it. It implements modules.HostWriter; all methods are safe for concurrent use.
type Conn struct {
	target Target
	opts   ConnectOptions
	client *ssh.Client
	jump   *ssh.Client // nil without a jump host
	// relayReused: client leads through the relay (Persist) to a
	// connection an earlier run opened.
	relayReused bool
	facts       Facts
	// uploaded is how the agent got to the host on this connect.
	uploaded string
	probe    *probe
	// stage is set when the agent runs as another user than the SSH login
	// (become): SFTP then writes and reads through a staging directory
	// and the agent moves files into place.
	stage bool

	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *tailBuffer

	wmu sync.Mutex // serializes writes to stdin

	mu      sync.Mutex // guards pending, err, closed
	pending map[uint64]*call
	err     error // set once the connection is unusable
	closed  bool
	nextID  atomic.Uint64
	dead    chan struct{} // closed when err is set

	sftpMu sync.Mutex
	sftp   *sftp.Client

	stageMu    sync.Mutex
	stageReady bool

	stopKeepAlive chan struct{}
	readerDone    chan struct{}
}

type call struct {
	resp chan agent.Response
	log  func(string)
}

// Connect opens the SSH connection to t (through its jump host, if any),
// makes sure the agent binary is on the host, starts the agent and shakes
// hands with it. Host key, auth and network failures satisfy
// IsUnreachable; any error means the host cannot be used.
func Connect(ctx context.Context, t Target, o ConnectOptions) (*Conn, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	t, err := o.SSHConfig.apply(t, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.label(), err)
	}
	if t.User == "" {
		t.User = o.User
	}
	if t.User == "" {
		t.User = localUser()
	}
	if t.KeyFile == "" {
		t.KeyFile = o.KeyFile
	}
	hk := &hostKeys{file: o.KnownHostsFile, accept: o.AcceptNewHostKeys, hash: o.HashKnownHosts}
	c := &Conn{target: t, opts: o, pending: map[uint64]*call{}, dead: make(chan struct{}),
		stopKeepAlive: make(chan struct{}), readerDone: make(chan struct{})}

	if o.Persist > 0 {
		c.client, c.relayReused, err = dialRelay(ctx, t, &o)
	} else {
		c.client, c.jump, err = dialHost(ctx, t, &o, hk)
	}
	if err != nil {
		return nil, err
	}
	// From here on a dead host is found by keepalive, and Ctrl-C (ctx)
	// closes the connection, which unblocks every read and write below.
	go c.keepAlive()
	stop := context.AfterFunc(ctx, func() { c.fail(context.Cause(ctx)) })
	err = c.startAgent(ctx)
	stop()
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.fail(err)
		c.closeClients()
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, err
	}
	return c, nil
}

// dialHost opens the SSH connection to t, through its jump host when it
// has one (jump is then that host's connection, to close with client).
func dialHost(ctx context.Context, t Target, o *ConnectOptions, hk *hostKeys) (client, jump *ssh.Client, err error) {
	if t.JumpHost != "" {
		jt, err := parseJump(t.JumpHost, t.User)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", t.label(), err)
		}
		jt.KeyFile = t.KeyFile
		if jump, err = dialRetrying(ctx, jt, o, hk, nil); err != nil {
			return nil, nil, fmt.Errorf("%s via jump host: %w", t.label(), err)
		}
	}
	if client, err = dialRetrying(ctx, t, o, hk, jump); err != nil {
		if jump != nil {
			jump.Close()
		}
		return nil, nil, err
	}
	return client, jump, nil
}

func (c *Conn) closeClients() {
	c.sftpMu.Lock()
	if c.sftp != nil {
		c.sftp.Close()
	}
	c.sftpMu.Unlock()
	if c.client != nil {
		c.client.Close()
	}
	if c.jump != nil {
		c.jump.Close()
	}
}

func (c *Conn) agentDir() string {
	switch {
	case c.opts.RemoteDir != "":
		return shellQuote(c.opts.RemoteDir)
	case c.target.User == "root":
		// Root-owned parent, private directory: no other local user can
		// plant or swap what root runs.
		return "/var/lib/etcdplay/agent"
	default:
		return `"$HOME/.cache/etcdplay"`
	}
}

func (c *Conn) startAgent(ctx context.Context) error {
	host := c.target.label()
	native, err := c.nativeAgent()
	if err != nil {
		return fmt.Errorf("%s: %w", host, err)
	}
	sudo := ""
	if bu := c.becomeUser(); bu != "" {
		sudo = "sudo -n -u " + shellQuote(bu) + " -- "
		c.stage = true
	}
	started, err := c.startSession(probeCommand(c.agentDir(), native.remoteName(), native, sudo))
	if err != nil {
		return err
	}
	bin := native
	if !started {
		// Cold host (or another platform): the probe waits on its stdin
		// while we upload, then unpacks and starts the agent, all in the
		// one session.
		if bin, err = agentBinFor(&c.opts, host, c.probe.platform, native); err != nil {
			return err
		}
		unpack, err := c.uploadAgent(ctx, bin)
		if err != nil {
			// Keepalive gave up on the host mid-upload: that is the
			// cause, not the session the closed connection cut.
			if ue := (*UnreachableError)(nil); errors.As(c.failure(), &ue) {
				return &UnreachableError{Host: host, Err: fmt.Errorf("%w, while uploading the agent (%v)", ue.Err, err)}
			}
			return c.connErr(fmt.Errorf("%s: %w", host, err))
		}
		if err := c.continueProbe(unpack, sudo+shellQuote(path.Join(c.probe.dir, bin.remoteName()))+" agent"); err != nil {
			return err
		}
	}
	cmd := sudo + path.Join(c.probe.dir, bin.remoteName()) + " agent"
	go c.readLoop(c.stdout)

	hctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	resp, err := c.roundTrip(hctx, &agent.Request{Op: agent.OpHello, Version: agent.ProtocolVersion}, nil)
	if err != nil {
		c.fail(err)
		// The host answered SSH; an agent that dies at once (sudo wants a
		// password, a broken binary) is a failure of the host, not
		// unreachability.
		if ue := (*UnreachableError)(nil); errors.As(err, &ue) {
			return fmt.Errorf("%s: starting agent (%s): %v", host, cmd, ue.Err)
		}
		return fmt.Errorf("%s: starting agent (%s): %w", host, cmd, err)
	}
	if resp.Error != "" || resp.Facts == nil {
		c.fail(errors.New(resp.Error))
		return fmt.Errorf("%s: agent: %s", host, resp.Error)
	}
	c.facts = *resp.Facts
	c.facts.SHA256 = bin.sha256
	// A probe that started the agent did not run uname: the binary it
	// started is the one built for the platform we expect.
	want, source := c.probe.platform, "uname says"
	if want == "" {
		want, source = bin.platform, "its binary is built for"
	}
	if got := c.facts.OS + "/" + c.facts.Arch; got != want {
		c.fail(errors.New("platform mismatch"))
		return fmt.Errorf("%s: the agent reports %s but %s %s", host, got, source, want)
	}
	return nil
}

// nativeAgent is the agent executable for hosts of the controller's own
// platform: --agent-binary, else the lean agent unless the host needs the
// full one, else etcdplay itself.
func (c *Conn) nativeAgent() (*agentBin, error) {
	switch {
	case c.opts.AgentBinary != "":
		return loadAgentBin(c.opts.AgentBinary)
	case c.opts.LeanAgent.Path != "" && !c.target.FullAgent:
		return loadAgentFile(c.opts.LeanAgent)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	return loadAgentBin(exe)
}

// uploadAgent puts bin on the host and returns the shell script, if any,
// that must run there before it can start (the gzipped upload's unpack).
func (c *Conn) uploadAgent(ctx context.Context, bin *agentBin) (string, error) {
	select {
	case uploadSlots <- struct{}{}:
		defer func() { <-uploadSlots }()
	case <-ctx.Done():
		return "", context.Cause(ctx)
	}
	start := time.Now()
	if c.probe.gunzip {
		unpack, err := c.sendAgent(ctx, bin)
		if err != nil {
			return "", err
		}
		c.uploaded = fmt.Sprintf("agent sent gzipped (%.1f of %.1f MB) in %s", float64(len(bin.gz))/1e6, float64(bin.size)/1e6, time.Since(start).Round(time.Millisecond))
		return unpack, nil
	}
	sc, err := c.sftpClient()
	if err != nil {
		return "", err
	}
	if err := installAgent(ctx, sc, c.probe.dir, bin, c.probe.uid, c.opts.OnProgress); err != nil {
		return "", err
	}
	c.uploaded = fmt.Sprintf("agent sent over SFTP (%.1f MB; no gzip or sha256sum on the host) in %s", float64(bin.size)/1e6, time.Since(start).Round(time.Millisecond))
	return "", nil
}

// continueProbe sends the waiting probe of a cold host the rest of its
// work: unpack (in a subshell, so its umask, set -e and cleanup trap stay
// there) and the agent's start. Two fewer sessions per cold host than an
// unpack session and an agent session of their own: each costs sshd a
// fork and a PAM session (about 90 ms on the lab).
func (c *Conn) continueProbe(unpack, agentCmd string) error {
	host := c.target.label()
	var script strings.Builder
	if unpack != "" {
		script.WriteString("(\n" + unpack + "\n) || exit 1\n")
	}
	script.WriteString("echo " + probeMagic + "-skip\nexec " + agentCmd + "\n" + probeEnd + "\n")
	if _, err := io.WriteString(c.stdin, script.String()); err != nil {
		return c.connErr(fmt.Errorf("%s: starting agent: %w", host, err))
	}
	line, err := c.stdout.ReadString('\n')
	if line == probeMagic+"-skip\n" {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("unexpected output %q", line)
	}
	c.awaitSessionEnd()
	return c.connErr(fmt.Errorf("%s: unpacking and starting the agent in %s: %w (stderr: %s)", host, c.probe.dir, err, bytes.TrimSpace(c.stderr.Bytes())))
}

// uploadSlots bounds the agent uploads in flight from this process. The
// agent is megabytes that every cold host unpacks and hashes; 16 streams
// fill a controller's uplink, and more only make each slower: with 200
// lab hosts sharing 2 cores, all at once starved sshd until keepalives
// went unanswered and connections were dropped mid-upload. A connection
// waiting for a slot is idle and answers its keepalives.
var uploadSlots = make(chan struct{}, 16)

// Uploaded says how the agent reached the host on this connect ("" when
// it was there already), for -vvv.
func (c *Conn) Uploaded() string { return c.uploaded }

// becomeUser is the user the agent must switch to with sudo, or "" when
// the login user already is that user. (It is decided before the probe, so
// a login user other than "root" with uid 0 still goes through sudo, which
// is harmless.)
func (c *Conn) becomeUser() string {
	if !c.target.Become {
		return ""
	}
	bu := c.target.BecomeUser
	if bu == "" {
		bu = "root"
	}
	if bu == c.target.User {
		return ""
	}
	return bu
}

// startSession runs cmd in a new session that becomes the agent session:
// its first stdout line is a probe header (or, for the second session of a
// cold connect, a skip marker), the rest is the protocol. It reports
// whether the agent runs (a probe may end the session instead).
func (c *Conn) startSession(cmd string) (started bool, err error) {
	host := c.target.label()
	sess, err := c.client.NewSession()
	if err != nil {
		return false, c.connErr(fmt.Errorf("%s: agent session: %w", host, err))
	}
	c.stderr = &tailBuffer{max: 4096}
	sess.Stderr = c.stderr
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return false, fmt.Errorf("%s: agent session: %w", host, err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return false, fmt.Errorf("%s: agent session: %w", host, err)
	}
	if err := sess.Start(cmd); err != nil {
		sess.Close()
		return false, c.connErr(fmt.Errorf("%s: starting agent: %w", host, err))
	}
	br := bufio.NewReaderSize(stdout, 64<<10)
	line, err := br.ReadString('\n')
	if err != nil {
		sess.Close()
		return false, c.connErr(fmt.Errorf("%s: probing host: %w (stderr: %s)", host, err, bytes.TrimSpace(c.stderr.Bytes())))
	}
	if line == probeMagic+"-skip\n" {
		started = true
	} else {
		p, run, err := parseProbe(line)
		if err != nil {
			sess.Close()
			return false, fmt.Errorf("%s: %w", host, err)
		}
		c.probe, started = p, run
		// A cold probe that can take the gzipped agent made the staging
		// dir for it.
		c.stageReady = !run && p.gunzip
	}
	// Started or not, the session is the agent's: a probe that did not
	// start it waits on stdin for continueProbe.
	c.sess, c.stdin, c.stdout = sess, stdin, br
	return started, nil
}

func (c *Conn) stageDir() string { return path.Join(c.probe.home, stageSubdir) }

// staging returns the SFTP client after making sure the staging directory
// exists and is the login user's alone: files pass through it on their way
// to and from places only the become user may touch.
func (c *Conn) staging() (*sftp.Client, error) {
	sc, err := c.sftpClient()
	if err != nil {
		return nil, err
	}
	c.stageMu.Lock()
	defer c.stageMu.Unlock()
	if !c.stageReady {
		dir := c.stageDir()
		if err := sc.MkdirAll(dir); err != nil {
			return nil, fmt.Errorf("staging dir %s: %w", dir, err)
		}
		if err := sc.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("staging dir %s: %w", dir, err)
		}
		c.stageReady = true
	}
	return sc, nil
}

// connErr marks errors from a connection that died under us as
// unreachable; others pass through.
func (c *Conn) connErr(err error) error {
	var oe *net.OpError
	if errors.Is(err, io.EOF) || errors.As(err, &oe) || errors.Is(err, net.ErrClosed) {
		return &UnreachableError{Host: c.target.label(), Err: err}
	}
	return err
}

// awaitSessionEnd waits, briefly, for the ended session's stderr to be
// copied: stdout's EOF can arrive before the last of stderr (sudo's
// "a password is required"), which the error must carry.
func (c *Conn) awaitSessionEnd() {
	done := make(chan struct{})
	go func() {
		_ = c.sess.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// readLoop delivers responses to their callers until the session ends.
func (c *Conn) readLoop(stdout io.Reader) {
	defer close(c.readerDone)
	dec := agent.NewDecoder(stdout)
	for {
		var r agent.Response
		if err := dec.Decode(&r); err != nil {
			why := err
			if errors.Is(err, io.EOF) {
				why = errors.New("agent session ended")
				c.awaitSessionEnd()
			}
			if tail := bytes.TrimSpace(c.stderr.Bytes()); len(tail) > 0 {
				why = fmt.Errorf("%w; agent stderr: %s", why, tail)
				if bytes.Contains(tail, []byte("password is required")) {
					why = fmt.Errorf("%w (etcdplay runs sudo -n, never typing a password: give %q NOPASSWD sudo in a sudoers.d entry)", why, c.target.User)
				}
			}
			c.fail(why)
			return
		}
		c.mu.Lock()
		cl := c.pending[r.ID]
		if cl != nil && r.Log == "" {
			delete(c.pending, r.ID)
		}
		c.mu.Unlock()
		switch {
		case cl == nil: // a cancelled request answering late
		case r.Log != "":
			if cl.log != nil {
				cl.log(r.Log)
			}
		default:
			agent.NormalizeResult(r.Result)
			cl.resp <- r
		}
	}
}

// fail makes the connection unusable: callers waiting and to come get
// an UnreachableError carrying why.
// failure is why the connection failed, or nil while it is up.
func (c *Conn) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) fail(why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	if c.closed {
		c.err = &UnreachableError{Host: c.target.label(), Err: errors.New("connection closed")}
	} else {
		c.err = &UnreachableError{Host: c.target.label(), Err: why}
	}
	close(c.dead)
	c.client.Close()
}

func (c *Conn) write(req *agent.Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding request: %w", err)
	}
	b = append(b, '\n')
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.stdin.Write(b); err != nil {
		return &UnreachableError{Host: c.target.label(), Err: fmt.Errorf("writing to agent: %w", err)}
	}
	return nil
}

// roundTrip sends req and waits for its final response. When ctx ends
// first, the agent is told to cancel the request and ctx's error returns.
func (c *Conn) roundTrip(ctx context.Context, req *agent.Request, log func(string)) (*agent.Response, error) {
	req.ID = c.nextID.Add(1)
	cl := &call{resp: make(chan agent.Response, 1), log: log}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.pending[req.ID] = cl
	c.mu.Unlock()
	if err := c.write(req); err != nil {
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
		// The reader sees the session end too, with the agent's stderr:
		// a better story than EPIPE.
		select {
		case <-c.dead:
			c.mu.Lock()
			err = c.err
			c.mu.Unlock()
		case <-time.After(time.Second):
		}
		return nil, err
	}
	select {
	case r := <-cl.resp:
		return &r, nil
	case <-c.dead:
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
		go c.write(&agent.Request{ID: c.nextID.Add(1), Op: agent.OpCancel, Cancel: req.ID})
		return nil, ctx.Err()
	}
}

// Name is the inventory hostname.
func (c *Conn) Name() string { return c.target.Name }

// Address is the address SSH connects to.
func (c *Conn) Address() string { return c.target.Addr }

// Facts describe the host and its agent, as the agent reported at hello.
func (c *Conn) Facts() Facts { return c.facts }

// Reachable reports whether the connection is up.
func (c *Conn) Reachable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && !c.closed
}

// Do runs a host-side module in the agent: plan, then apply unless check.
// A module failure is a Result with Status failed; an error means the
// request did not complete (ctx ended, or the connection died:
// IsUnreachable).
func (c *Conn) Do(ctx context.Context, module string, args modules.Args, check bool) (*modules.Result, error) {
	r, err := c.request(ctx, &agent.Request{Op: agent.OpRun, Module: module, Args: args, Check: check, Host: c.target.Name})
	if !check && (err != nil || r.Status != modules.StatusOK && r.Status != modules.StatusSkipped) {
		modules.NoteChange()
	}
	return r, err
}

// Plan runs a host-side module's Plan only (modules.Host).
func (c *Conn) Plan(ctx context.Context, module string, args modules.Args) (*modules.Result, error) {
	return c.Do(ctx, module, args, true)
}

// Apply runs a host-side module, plan then apply (modules.HostWriter).
func (c *Conn) Apply(ctx context.Context, module string, args modules.Args) (*modules.Result, error) {
	return c.Do(ctx, module, args, false)
}

// Probe asks the agent a read-only question (modules.Host) and decodes
// the answer into out. A failed probe is an error.
func (c *Conn) Probe(ctx context.Context, probe string, args modules.Args, out any) error {
	r, err := c.request(ctx, &agent.Request{Op: agent.OpProbe, Module: probe, Args: args})
	if err != nil {
		return err
	}
	if err := modules.DecodeAnswer(probe, r, out); err != nil {
		return fmt.Errorf("%s on %s: %w", probe, c.target.label(), err)
	}
	return nil
}

func (c *Conn) request(ctx context.Context, req *agent.Request) (*modules.Result, error) {
	r, err := c.roundTrip(ctx, req, nil)
	if err != nil {
		return nil, err
	}
	if r.Error != "" {
		return nil, fmt.Errorf("%s on %s: agent: %s", req.Module, c.target.label(), r.Error)
	}
	if r.Result == nil {
		return nil, fmt.Errorf("%s on %s: agent sent no result", req.Module, c.target.label())
	}
	return r.Result, nil
}

// Dial opens a connection from the host's side of the SSH connection.
func (c *Conn) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.client.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, c.target.label(), err)
	}
	return conn, nil
}

func (c *Conn) sftpClient() (*sftp.Client, error) {
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	if c.sftp == nil {
		start := time.Now()
		// A global request every SSH server answers (OpenSSH with a
		// refusal): one round trip.
		if _, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil); err != nil {
			return nil, c.connErr(fmt.Errorf("sftp: %w", err))
		}
		sc, err := sftp.NewClient(c.client, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(writesInFlight(time.Since(start))))
		if err != nil {
			return nil, fmt.Errorf("sftp: %w", err)
		}
		c.sftp = sc
	}
	return c.sftp, nil
}

// writesInFlight is how many 32 KB SFTP writes to keep outstanding over a
// link with round trip rtt: enough to keep 1 Gbit/s flowing, and no more.
// What is sent beyond that queues in OpenSSH's sshd, whose channel buffer
// moves its whole content at each write to sftp-server: with pkg/sftp's
// 64 (2 MB queued) a 23 MB release took 1.0 s to one lab host and 1.8 s
// to three at once, with 16 0.23 s and 0.43 s.
func writesInFlight(rtt time.Duration) int {
	const perWrite = 32 << 10
	const bytesPerSecond = 125 << 20
	n := int(rtt.Seconds()*bytesPerSecond/perWrite) + 1
	return min(max(n, 16), 64)
}

// agentCopy has the agent copy a file (as the become user).
func (c *Conn) agentCopy(ctx context.Context, spec *agent.CopySpec) error {
	r, err := c.roundTrip(ctx, &agent.Request{Op: agent.OpCopy, Copy: spec}, nil)
	if err != nil {
		return err
	}
	if r.Error != "" {
		return fmt.Errorf("on %s: %s", c.target.label(), r.Error)
	}
	return nil
}

// Upload streams r to dst on the host atomically (temp file in the same
// directory, fsync, rename) with mode; an existing file's owner is kept.
func (c *Conn) Upload(ctx context.Context, r io.Reader, dst string, mode uint32) error {
	defer modules.NoteChange()
	r = withProgress(r, dst, sizeOf(r), c.opts.OnProgress)
	sc, err := c.sftpClient()
	if err != nil {
		return c.connErr(fmt.Errorf("upload %s to %s: %w", dst, c.target.label(), err))
	}
	if !c.stage {
		uid, gid := -1, -1
		if c.probe.uid == 0 {
			if st, err := sc.Stat(dst); err == nil {
				if fs, ok := st.Sys().(*sftp.FileStat); ok {
					uid, gid = int(fs.UID), int(fs.GID)
				}
			}
		}
		if err := sftpPut(ctx, sc, r, dst, mode, uid, gid, true); err != nil {
			return c.connErr(fmt.Errorf("on %s: %w", c.target.label(), err))
		}
		return nil
	}
	if sc, err = c.staging(); err != nil {
		return c.connErr(fmt.Errorf("upload %s to %s: %w", dst, c.target.label(), err))
	}
	staged := path.Join(c.stageDir(), "up-"+randName())
	if err := sftpPut(ctx, sc, r, staged, 0o600, -1, -1, false); err != nil {
		return c.connErr(fmt.Errorf("on %s: %w", c.target.label(), err))
	}
	err = c.agentCopy(ctx, &agent.CopySpec{Src: staged, Dst: dst, Mode: mode, UID: -1, GID: -1, RemoveSrc: true})
	if err != nil {
		_ = sc.Remove(staged)
		return fmt.Errorf("upload %s: %w", dst, err)
	}
	return nil
}

// Download streams the file at src on the host to w.
func (c *Conn) Download(ctx context.Context, src string, w io.Writer) error {
	sc, err := c.sftpClient()
	if err != nil {
		return c.connErr(fmt.Errorf("download %s from %s: %w", src, c.target.label(), err))
	}
	from := src
	if c.stage {
		if sc, err = c.staging(); err != nil {
			return c.connErr(fmt.Errorf("download %s from %s: %w", src, c.target.label(), err))
		}
		// The become user may read what the login user cannot: the agent
		// copies it out to the login user first.
		from = path.Join(c.stageDir(), "down-"+randName())
		spec := &agent.CopySpec{Src: src, Dst: from, Mode: 0o600, UID: c.probe.uid, GID: c.probe.gid}
		if err := c.agentCopy(ctx, spec); err != nil {
			return fmt.Errorf("download %s: %w", src, err)
		}
		defer sc.Remove(from)
	}
	f, err := sc.Open(from)
	if err != nil {
		return c.connErr(fmt.Errorf("download %s from %s: %w", src, c.target.label(), err))
	}
	defer f.Close()
	if _, err := f.WriteTo(ctxWriter{ctx, w}); err != nil {
		return c.connErr(fmt.Errorf("download %s from %s: %w", src, c.target.label(), err))
	}
	return nil
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// keepAlive pings the server; a missed answer kills the connection, which
// fails every request in flight instead of leaving it hanging.
func (c *Conn) keepAlive() {
	t := time.NewTicker(c.opts.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-c.stopKeepAlive:
			return
		case <-c.dead:
			return
		case <-t.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		timer := time.NewTimer(c.opts.Timeout)
		select {
		case err := <-answered:
			timer.Stop()
			if err != nil {
				c.fail(fmt.Errorf("keepalive: %w", err))
				return
			}
		case <-timer.C:
			c.fail(fmt.Errorf("no keepalive answer in %s", c.opts.Timeout))
			return
		case <-c.stopKeepAlive:
			timer.Stop()
			return
		}
	}
}

// Close ends the agent session (the agent sees end of input, finishes and
// exits) and the SSH connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	alive := c.err == nil
	c.mu.Unlock()
	close(c.stopKeepAlive)
	if alive {
		c.wmu.Lock()
		c.stdin.Close()
		c.wmu.Unlock()
		select {
		case <-c.readerDone:
		case <-time.After(5 * time.Second):
		}
	}
	c.fail(errors.New("connection closed"))
	c.closeClients()
	return nil
}

// tailBuffer keeps the last max bytes written: the agent's stderr, for
// error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.b...)
}

var _ modules.HostWriter = (*Conn)(nil)

// Describe is how the connection was made (user, address, jump host, key,
// become) and how the agent got to the host, for -vvv.
func (c *Conn) Describe() string { return describeTarget(c.target) + agentNote(c) }

func agentNote(c *Conn) string {
	note := ""
	switch {
	case c.relayReused:
		note = ", through the relay (its connection reused)"
	case c.opts.Persist > 0:
		note = ", through the relay (a new connection)"
	}
	if u := c.Uploaded(); u != "" {
		note += ", " + u
	}
	return note
}

// describeTarget is how a connection went, for -vvv.
func describeTarget(t Target) string {
	s := "ssh " + t.User + "@" + t.hostport()
	if t.User == "" {
		s = "ssh " + t.hostport()
	}
	if t.JumpHost != "" {
		s += " via " + t.JumpHost
	}
	if t.KeyFile != "" {
		s += ", key " + t.KeyFile
	}
	if t.Become {
		s += ", become " + t.BecomeUser + " (sudo -n)"
	}
	return s
}
