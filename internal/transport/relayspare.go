package transport

import (
	"sync"

	"golang.org/x/crypto/ssh"
)

// A warm run through the relay spends most of its connect on the host:
// a new session's shell, the probe's stat and the agent's own start, for
// each host, before the run's first task. So when a run's agent session
// ends, the relay starts the next one on the same connection with the
// same probe command, and hands it to the next run that asks for that
// command. Every run still gets an agent process of its own, started by
// the probe that checked its binary; it was only started earlier. A
// spare lives as long as the connection: the relay's persist time.

// spareSession is an agent session started ahead of the run that will
// use it.
type spareSession struct {
	cmd   string
	ready chan struct{} // closed once ch is set, or left nil when the exec failed
	ch    ssh.Channel
	reqs  chan *ssh.Request // the host's channel requests, passed on

	mu    sync.Mutex
	taken bool
	ended bool // the host ended it before a run took it
}

func (h *relayHost) hasSpare() bool {
	h.spareMu.Lock()
	defer h.spareMu.Unlock()
	return h.spare != nil
}

// startSpare starts an agent session running cmd for the next run,
// unless one is there already.
func (h *relayHost) startSpare(cmd string) {
	h.spareMu.Lock()
	if h.spare != nil {
		h.spareMu.Unlock()
		return
	}
	sp := &spareSession{cmd: cmd, ready: make(chan struct{})}
	h.spare = sp
	h.spareMu.Unlock()
	go func() {
		defer close(sp.ready)
		ch, reqs, err := h.client.OpenChannel("session", nil)
		if err != nil {
			h.dropSpare(sp)
			return
		}
		ok, err := ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{cmd}))
		if !ok || err != nil {
			ch.Close()
			go ssh.DiscardRequests(reqs)
			h.dropSpare(sp)
			return
		}
		sp.ch, sp.reqs = ch, make(chan *ssh.Request, 4)
		go sp.watch(reqs, h)
	}()
}

// watch passes the host's requests on to the run that took the spare.
// One that arrives before a run took it (the agent's exit) means the
// spare has ended: it is dropped.
func (sp *spareSession) watch(reqs <-chan *ssh.Request, h *relayHost) {
	for req := range reqs {
		if sp.end() {
			sp.reqs <- req
			continue
		}
		if req.WantReply {
			req.Reply(false, nil)
		}
	}
	close(sp.reqs)
	if !sp.end() {
		sp.ch.Close()
		h.dropSpare(sp)
	}
}

// end marks an untaken spare as ended, and reports whether a run took it.
func (sp *spareSession) end() (taken bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.ended = sp.ended || !sp.taken
	return sp.taken
}

// takeSpare hands the spare to a run that execs the probe cmd, if it is
// for cmd and alive. A spare for another probe (another agent binary,
// another become user) is closed.
func (h *relayHost) takeSpare(cmd string) *spareSession {
	h.spareMu.Lock()
	sp := h.spare
	h.spare = nil
	h.spareMu.Unlock()
	if sp == nil {
		return nil
	}
	<-sp.ready
	if sp.ch == nil {
		return nil
	}
	sp.mu.Lock()
	usable := !sp.ended && sp.cmd == cmd
	sp.taken = usable
	sp.mu.Unlock()
	if !usable {
		sp.close()
		return nil
	}
	return sp
}

// dropSpare forgets sp if it is still the host's spare.
func (h *relayHost) dropSpare(sp *spareSession) {
	h.spareMu.Lock()
	if h.spare == sp {
		h.spare = nil
	}
	h.spareMu.Unlock()
}

// close ends a spare no run will take: the agent reads the end of its
// input and exits.
func (sp *spareSession) close() { sp.ch.Close() }
