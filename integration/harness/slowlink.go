package harness

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// SlowLinkPort is where a slow link listens on each host's address.
const SlowLinkPort = 2222

// SlowLink puts rtt between the controller and every host of the lab, as
// a bastion or another region would: a TCP relay per host on
// ADDR:SlowLinkPort to its sshd, holding each direction's bytes for rtt/2
// (the kernel's netem is not on every machine). It points e's inventory
// and known_hosts at the relays; everything a run does on a host (the
// agent, uploads, etcd's client port, which etcdplay reaches through SSH)
// then crosses the link. The relays stop with the test.
func (e *Env) SlowLink(t testing.TB, rtt time.Duration) {
	t.Helper()
	var listeners []net.Listener
	t.Cleanup(func() {
		for _, l := range listeners {
			l.Close()
		}
	})
	for _, h := range e.Lab.Hosts() {
		ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", h.Addr, SlowLinkPort))
		if err != nil {
			t.Fatalf("slow link to %s: %v", h.Name, err)
		}
		listeners = append(listeners, ln)
		go relay(ln, h.Addr+":22", rtt/2)
	}
	dir := t.TempDir()
	e.Inventory = filepath.Join(dir, "inventory.yml")
	e.KnownHosts = filepath.Join(dir, "known_hosts")
	rewrite(t, e.Lab.InventoryFile, e.Inventory, func(line string) string {
		if !strings.HasPrefix(strings.TrimSpace(line), "ansible_host:") {
			return line
		}
		indent := line[:len(line)-len(strings.TrimLeft(line, " "))]
		return fmt.Sprintf("%s\n%sansible_port: %d", line, indent, SlowLinkPort)
	})
	rewrite(t, e.Lab.KnownHostsFile, e.KnownHosts, func(line string) string {
		addr, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(addr, "#") {
			return line
		}
		return fmt.Sprintf("[%s]:%d %s", addr, SlowLinkPort, rest)
	})
}

func rewrite(t testing.TB, from, to string, edit func(string) string) {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out.WriteString(edit(sc.Text()) + "\n")
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, []byte(out.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func relay(ln net.Listener, target string, delay time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); delayed(u.(*net.TCPConn), c, delay) }()
			go func() { defer wg.Done(); delayed(c.(*net.TCPConn), u, delay) }()
			wg.Wait()
			c.Close()
			u.Close()
		}()
	}
}

// delayed copies src to dst, each read's bytes sent delay after they
// arrived, in order, then half-closes dst.
func delayed(dst *net.TCPConn, src net.Conn, delay time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			time.Sleep(time.Until(c.at))
			if _, err := dst.Write(c.b); err != nil {
				src.Close() // unblock the reader; the connection is gone
				for range q {
				}
				return
			}
		}
		dst.CloseWrite()
	}()
	for {
		b := make([]byte, 64<<10)
		n, err := src.Read(b)
		if n > 0 {
			q <- chunk{b[:n], time.Now().Add(delay)}
		}
		if err != nil {
			close(q)
			<-done
			return
		}
	}
}
