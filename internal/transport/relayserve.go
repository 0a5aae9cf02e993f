package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/etcdplay/etcdplay/internal/hostfile"
)

// RelayMain is `etcdplay relay`: it serves runs on sock until none has
// used it for persist (or longer, when a run asks for longer), then
// closes every host connection and exits. A relay already serving sock
// (its lock is taken) makes this one exit at once.
func RelayMain(ctx context.Context, sock string, persist time.Duration) error {
	dir := filepath.Dir(sock)
	if err := privateDir(dir); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "relay.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer lock.Close()
	if serving, err := lockRelay(ctx, lock, sock); err != nil || serving {
		return err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	// The key first, then the socket: a run that reaches the socket
	// finds the key of the relay behind it.
	if err := hostfile.WriteAtomic(relayPubFile(sock), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600, -1, -1); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	os.Remove(sock) // a relay that died left it; we hold the lock
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer os.Remove(sock)
	if err := os.Chmod(sock, 0o600); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r := &relayServer{hosts: map[string]*relayHost{}, persist: persist, idle: make(chan struct{}, 1), stop: make(chan struct{})}
	r.cfg = &ssh.ServerConfig{NoClientAuth: true}
	r.cfg.AddHostKey(signer)
	log.Printf("relay %d: serving %s, persist %s", os.Getpid(), sock, persist)
	go r.expire(ctx, ln)
	for {
		c, err := ln.Accept()
		if err != nil {
			// The socket goes first, so that a run arriving now starts
			// the next relay, which takes the lock once this one is
			// done with its hosts.
			os.Remove(sock)
			break
		}
		if err := samePeer(c); err != nil {
			log.Print(err)
			c.Close()
			continue
		}
		r.clientStarted()
		r.runs.Add(1)
		go func() {
			defer r.runs.Done()
			defer r.clientEnded()
			r.serve(c)
		}()
	}
	why := fmt.Sprintf("idle for %s", r.persistFor())
	switch {
	case ctx.Err() != nil:
		why = "signalled" // the runs' connections end with the hosts'
	case r.stopped():
		why = "asked to stop"
		r.runs.Wait()
	default:
		// One that came in as the socket went finishes its run.
		r.runs.Wait()
	}
	r.closeHosts()
	log.Printf("relay %d: %s, exiting", os.Getpid(), why)
	return nil
}

// lockRelay takes the relay's lock, which its holder keeps for life.
// serving reports that another relay holds it and answers on sock; one
// that holds it without answering is on its way out, and is waited for.
func lockRelay(ctx context.Context, lock *os.File, sock string) (serving bool, err error) {
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return false, fmt.Errorf("relay: lock: %w", err)
		}
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, errors.New("relay: another relay holds the lock and does not answer on " + sock)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type relayServer struct {
	cfg *ssh.ServerConfig

	mu      sync.Mutex
	hosts   map[string]*relayHost
	clients int
	persist time.Duration
	last    time.Time     // when the last client left
	idle    chan struct{} // a client left

	runs     sync.WaitGroup // clients being served
	stop     chan struct{}  // closed by a stop request
	stopOnce sync.Once
}

func (r *relayServer) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// relayHost is one connection to a host, dialed once for all runs that
// ask for it at the same time.
type relayHost struct {
	ready        chan struct{}
	client, jump *ssh.Client
	err          error

	spareMu sync.Mutex
	spare   *spareSession // the next run's agent session, started ahead
}

func (r *relayServer) clientStarted() {
	r.mu.Lock()
	r.clients++
	r.mu.Unlock()
}

func (r *relayServer) clientEnded() {
	r.mu.Lock()
	r.clients--
	r.last = time.Now()
	r.mu.Unlock()
	select {
	case r.idle <- struct{}{}:
	default:
	}
}

func (r *relayServer) persistFor() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.persist
}

// expire closes ln once no client has been connected for persist.
func (r *relayServer) expire(ctx context.Context, ln net.Listener) {
	defer ln.Close()
	r.mu.Lock()
	r.last = time.Now()
	r.mu.Unlock()
	for {
		r.mu.Lock()
		wait := time.Duration(0)
		if r.clients == 0 {
			wait = time.Until(r.last.Add(r.persist))
			if wait <= 0 {
				r.mu.Unlock()
				return
			}
		} else {
			wait = r.persist
		}
		r.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.stop:
			t.Stop()
			return
		case <-r.idle:
			t.Stop()
		case <-t.C:
		}
	}
}

func (r *relayServer) closeHosts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, h := range r.hosts {
		select {
		case <-h.ready:
			if h.client != nil {
				h.close()
			}
		default:
		}
		delete(r.hosts, k)
	}
}

func (h *relayHost) close() {
	h.client.Close()
	if h.jump != nil {
		h.jump.Close()
	}
}

// serve is one run's connection: a connect request, then the channels it
// opens, each relayed to the host.
func (r *relayServer) serve(c net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(c, r.cfg)
	if err != nil {
		c.Close()
		return
	}
	defer sc.Close()
	connected := make(chan *relayHost, 1)
	go r.globalRequests(reqs, connected)
	var host *relayHost
	select {
	case host = <-connected:
	case <-waitClosed(sc):
		return
	}
	// The run's connection ends with the host's, as it would without
	// the relay.
	go func() {
		host.client.Wait()
		sc.Close()
	}()
	for nc := range chans {
		go r.relayChannel(nc, host)
	}
}

func waitClosed(sc ssh.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() { sc.Wait(); close(done) }()
	return done
}

// globalRequests answers the run's connect request, then passes its
// keepalives on to the host: the run learns of a dead host as it would
// without the relay.
func (r *relayServer) globalRequests(reqs <-chan *ssh.Request, connected chan<- *relayHost) {
	var host *relayHost
	for req := range reqs {
		switch {
		case req.Type == relayStop:
			// Runs in progress keep their connections until they end;
			// new ones find no socket and start the next relay.
			r.stopOnce.Do(func() { close(r.stop) })
			req.Reply(true, nil)
		case req.Type == relayConnect && host == nil:
			var rr relayRequest
			if err := json.Unmarshal(req.Payload, &rr); err != nil {
				body, _ := json.Marshal(relayReply{Msg: "relay: " + err.Error()})
				req.Reply(false, body)
				continue
			}
			h, reused, err := r.host(&rr)
			if err != nil {
				body, _ := json.Marshal(replyFor(err))
				req.Reply(false, body)
				continue
			}
			host = h
			body, _ := json.Marshal(relayReply{Reused: reused})
			req.Reply(true, body)
			connected <- host
		case host != nil:
			ok, payload, err := host.client.SendRequest(req.Type, req.WantReply, req.Payload)
			if req.WantReply {
				req.Reply(ok && err == nil, payload)
			}
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// host returns the connection for rr, dialing it unless a live one is
// open. Whether one is live is asked of the host (a keepalive), not
// assumed: it may have rebooted since the last run.
func (r *relayServer) host(rr *relayRequest) (*relayHost, bool, error) {
	key := rr.key()
	o := &ConnectOptions{KnownHostsFile: rr.KnownHostsFile, AcceptNewHostKeys: rr.AcceptNew, HashKnownHosts: rr.Hash,
		Timeout: rr.Timeout, ConnectionAttempts: rr.Attempts, AgentSock: rr.AgentSock}
	if err := o.defaults(); err != nil {
		return nil, false, err
	}
	r.mu.Lock()
	r.persist = max(r.persist, rr.Persist)
	h := r.hosts[key]
	r.mu.Unlock()
	if h != nil {
		<-h.ready
		if h.err == nil && alive(h.client, o.Timeout) {
			return h, true, nil
		}
		r.mu.Lock()
		if r.hosts[key] == h {
			delete(r.hosts, key)
		}
		r.mu.Unlock()
		if h.err == nil {
			h.close()
		}
	}
	r.mu.Lock()
	if h = r.hosts[key]; h != nil {
		// Another run dialed it meanwhile.
		r.mu.Unlock()
		<-h.ready
		return h, true, h.err
	}
	h = &relayHost{ready: make(chan struct{})}
	r.hosts[key] = h
	r.mu.Unlock()

	hk := &hostKeys{file: o.KnownHostsFile, accept: o.AcceptNewHostKeys, hash: o.HashKnownHosts}
	h.client, h.jump, h.err = dialHost(context.Background(), rr.Target, o, hk)
	close(h.ready)
	if h.err != nil {
		r.mu.Lock()
		if r.hosts[key] == h {
			delete(r.hosts, key)
		}
		r.mu.Unlock()
		return nil, false, h.err
	}
	go func() {
		// Forget a connection the host closed.
		h.client.Wait()
		r.mu.Lock()
		if r.hosts[key] == h {
			delete(r.hosts, key)
		}
		r.mu.Unlock()
	}()
	return h, false, nil
}

// alive reports whether c answers a keepalive within timeout.
func alive(c *ssh.Client, timeout time.Duration) bool {
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	select {
	case err := <-answered:
		return err == nil
	case <-time.After(timeout):
		return false
	}
}

// relayChannel opens nc's channel on the host and copies between the two
// until both ends have closed it. An agent session (the transport's
// probe) is served from the session started ahead for it when there is
// one, and starts the next run's when it ends.
func (r *relayServer) relayChannel(nc ssh.NewChannel, host *relayHost) {
	session := nc.ChannelType() == "session"
	var hc ssh.Channel
	var hreqs <-chan *ssh.Request
	var err error
	if !session || !host.hasSpare() {
		// Opened before the run's is accepted, so that a refusal reaches
		// the run as the host's.
		if hc, hreqs, err = host.client.OpenChannel(nc.ChannelType(), nc.ExtraData()); err != nil {
			var oe *ssh.OpenChannelError
			if errors.As(err, &oe) {
				nc.Reject(oe.Reason, oe.Message)
			} else {
				nc.Reject(ssh.ConnectionFailed, err.Error())
			}
			return
		}
	}
	cc, creqs, err := nc.Accept()
	if err != nil {
		if hc != nil {
			hc.Close()
		}
		return
	}
	if !session {
		splice(cc, creqs, hc, hreqs)
		return
	}
	// A session's first request says whether it is the agent's: the
	// probe's exec.
	first, ok := <-creqs
	if !ok {
		if hc != nil {
			hc.Close()
		}
		cc.Close()
		return
	}
	cmd, sent := execCommand(first), false
	if hc == nil && IsProbe(cmd) {
		// Another session (SFTP, say) leaves the spare for the next run.
		if sp := host.takeSpare(cmd); sp != nil {
			hc, hreqs, sent = sp.ch, sp.reqs, true
		}
	}
	if hc == nil {
		// A refused open leaves hc nil: the run's exec is refused.
		hc, hreqs, _ = host.client.OpenChannel("session", nc.ExtraData())
	}
	if hc != nil && !sent {
		ok, err := hc.SendRequest(first.Type, first.WantReply, first.Payload)
		sent = ok && err == nil
	}
	if first.WantReply {
		first.Reply(sent, nil)
	}
	if hc == nil {
		cc.Close()
		return
	}
	splice(cc, creqs, hc, hreqs)
	if sent && IsProbe(cmd) && !r.stopped() {
		host.startSpare(cmd)
	}
}

// splice copies between a run's channel cc and the host's hc until both
// ends have closed: data both ways (stderr too), end of input, and
// channel requests both ways (exec, subsystem, exit-status).
func splice(cc ssh.Channel, creqs <-chan *ssh.Request, hc ssh.Channel, hreqs <-chan *ssh.Request) {
	var output sync.WaitGroup
	output.Add(2)
	go func() { defer output.Done(); io.Copy(cc, hc) }()
	go func() { defer output.Done(); io.Copy(cc.Stderr(), hc.Stderr()) }()
	go func() {
		io.Copy(hc, cc)
		hc.CloseWrite()
	}()
	go func() {
		forwardRequests(creqs, hc, nil)
		hc.Close()
	}()
	forwardRequests(hreqs, cc, &output)
	output.Wait()
	cc.Close()
}

// execCommand is the command of an exec request ("" for any other).
func execCommand(req *ssh.Request) string {
	var p struct{ Command string }
	if req.Type != "exec" || ssh.Unmarshal(req.Payload, &p) != nil {
		return ""
	}
	return p.Command
}

// forwardRequests passes a channel's requests on to its other end. With
// output set, an exit status waits for the output it follows, as the run
// reads it.
func forwardRequests(reqs <-chan *ssh.Request, to ssh.Channel, output *sync.WaitGroup) {
	for req := range reqs {
		if output != nil && (req.Type == "exit-status" || req.Type == "exit-signal") {
			output.Wait()
			to.CloseWrite()
		}
		ok, err := to.SendRequest(req.Type, req.WantReply, req.Payload)
		if req.WantReply {
			req.Reply(ok && err == nil, nil)
		}
	}
}
