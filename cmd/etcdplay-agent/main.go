// Command etcdplay-agent is the lean agent: the host side of etcdplay
// (`etcdplay-agent agent` serves the controller on stdin and stdout) with
// only the modules of modules/hostside linked in. etcdplay embeds it
// (internal/leanagent) and sends it to hosts instead of itself: 5 MB, not
// 28, and none of etcd's client, gRPC, S3, age or TLS, which run on the
// controller (a test keeps TLS out: it is 2 MB of the 7). A host that needs those (a backup timer's program) gets
// etcdplay itself.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/etcdplay/etcdplay/internal/agent"
	_ "github.com/etcdplay/etcdplay/modules/hostside"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] != "agent" {
		fmt.Fprintln(os.Stderr, "usage: etcdplay-agent agent (started on hosts by etcdplay; it speaks etcdplay's protocol on stdin and stdout)")
		os.Exit(2)
	}
	agent.Lean = true
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Main(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "etcdplay-agent:", err)
		os.Exit(1)
	}
}
