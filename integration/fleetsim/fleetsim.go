// Package fleetsim is a simulated fleet for the controller's scale
// benchmark: many SSH servers in one process, each on its own 127.0.0.0/8
// address, each serving etcdplay's real agent (agent.Serve, every module)
// in-process on its session. A thousand hosts then cost the machine a few
// goroutines each instead of a thousand sshd and agent processes, so what
// the benchmark measures is the controller: its handshakes, scheduling,
// protocol and memory per host.
//
// What it does not simulate: the host's shell. The controller's first
// command on a host is a probe script that checks the agent binary and
// execs it (transport.probeCommand); a fleet host answers it as a host
// with the agent installed would, then serves the agent protocol. So every
// run here is warm on the connection side (no agent upload), and the
// playbook's modules run on this machine, as root, under one directory
// per host (the host variable sim_root).
package fleetsim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/etcdplay/etcdplay/internal/agent"
	"github.com/etcdplay/etcdplay/internal/transport"
	"github.com/etcdplay/etcdplay/internal/transport/sshtest"
	// The agent serves every module the shipped binary has.
	_ "github.com/etcdplay/etcdplay/modules/all"
)

// Options sizes a fleet.
type Options struct {
	Hosts int
	// Net is the first address of the fleet's block ("127.201.0.1");
	// host i listens on Net+i. It must be a loopback address.
	Net string
	// Port every host listens on.
	Port int
	// Dir receives the inventory, known_hosts, client key and each
	// host's sim_root.
	Dir string
	// AgentSize is the size the probe reports for the installed agent
	// (the controller's binary).
	AgentSize int64
}

// Fleet is a running simulated fleet.
type Fleet struct {
	InventoryFile  string
	KnownHostsFile string
	KeyFile        string

	ctx    context.Context
	cancel context.CancelFunc
	lns    []net.Listener
	wg     sync.WaitGroup
	cfg    *ssh.ServerConfig
}

// Start listens on every host's address and writes the inventory (group
// "fleet", hosts sim0001...), known_hosts (one host key per host) and the
// client key.
func Start(o Options) (*Fleet, error) {
	base := net.ParseIP(o.Net).To4()
	if base == nil || !base.IsLoopback() {
		return nil, fmt.Errorf("fleetsim: %q is not a 127.0.0.0/8 address", o.Net)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	clientSSH, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "fleetsim")
	if err != nil {
		return nil, err
	}
	f := &Fleet{
		InventoryFile:  filepath.Join(o.Dir, "inventory.yml"),
		KnownHostsFile: filepath.Join(o.Dir, "known_hosts"),
		KeyFile:        filepath.Join(o.Dir, "id_ed25519"),
	}
	if err := os.WriteFile(f.KeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	want := string(clientSSH.Marshal())
	f.cfg = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if string(k.Marshal()) == want {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())

	var inv, kh strings.Builder
	inv.WriteString("all:\n  children:\n    fleet:\n      hosts:\n")
	ip := binary.BigEndian.Uint32(base)
	for i := 0; i < o.Hosts; i++ {
		addr := make(net.IP, 4)
		binary.BigEndian.PutUint32(addr, ip+uint32(i))
		name := fmt.Sprintf("sim%04d", i+1)
		root := filepath.Join(o.Dir, "hosts", name)
		if err := os.MkdirAll(root, 0o755); err != nil {
			f.Close()
			return nil, err
		}
		_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			f.Close()
			return nil, err
		}
		signer, err := ssh.NewSignerFromKey(hostPriv)
		if err != nil {
			f.Close()
			return nil, err
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(addr.String(), fmt.Sprint(o.Port)))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("fleetsim: host %s: %w", name, err)
		}
		f.lns = append(f.lns, ln)
		cfg := *f.cfg
		cfg.AddHostKey(signer)
		f.wg.Add(1)
		go f.accept(ln, &cfg, root, o.AgentSize)
		fmt.Fprintf(&inv, "        %s: {ansible_host: %s, ansible_port: %d, ansible_user: root, sim_root: %s}\n", name, addr, o.Port, root)
		fmt.Fprintf(&kh, "[%s]:%d %s", addr, o.Port, ssh.MarshalAuthorizedKey(signer.PublicKey()))
	}
	if err := os.WriteFile(f.InventoryFile, []byte(inv.String()), 0o644); err != nil {
		f.Close()
		return nil, err
	}
	if err := os.WriteFile(f.KnownHostsFile, []byte(kh.String()), 0o644); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Close stops every host: listeners, connections and agents.
func (f *Fleet) Close() {
	f.cancel()
	for _, ln := range f.lns {
		ln.Close()
	}
	f.wg.Wait()
}

func (f *Fleet) accept(ln net.Listener, cfg *ssh.ServerConfig, root string, agentSize int64) {
	defer f.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			f.serveConn(c, cfg, root, agentSize)
		}()
	}
}

func (f *Fleet) serveConn(c net.Conn, cfg *ssh.ServerConfig, root string, agentSize int64) {
	stop := context.AfterFunc(f.ctx, func() { c.Close() })
	defer stop()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	defer sc.Close()
	go sshtest.AnswerGlobalRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "fleetsim hosts serve sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go f.session(ch, creqs, root, agentSize)
	}
}

func (f *Fleet) session(ch ssh.Channel, reqs <-chan *ssh.Request, root string, agentSize int64) {
	defer ch.Close()
	for r := range reqs {
		if r.Type != "exec" {
			if r.WantReply {
				r.Reply(false, nil)
			}
			continue
		}
		var p struct{ Cmd string }
		_ = ssh.Unmarshal(r.Payload, &p)
		code := uint32(0)
		if !transport.IsProbe(p.Cmd) {
			// Only the agent's own session is simulated: anything else
			// would need a shell.
			r.Reply(true, nil)
			fmt.Fprintf(ch.Stderr(), "fleetsim: no shell on simulated hosts (command %.60q)\n", p.Cmd)
			code = 127
		} else {
			r.Reply(true, nil)
			// A host whose agent is installed and verified: the probe
			// script would exec it next.
			io.WriteString(ch, transport.InstalledAgentHeader(root, "/var/lib/etcdplay/agent", 0, 0, agentSize))
			if err := agent.Serve(f.ctx, ch, ch); err != nil {
				code = 1
			}
		}
		status := make([]byte, 4)
		binary.BigEndian.PutUint32(status, code)
		_, _ = ch.SendRequest("exit-status", false, status)
		_ = ch.CloseWrite()
		return
	}
}
