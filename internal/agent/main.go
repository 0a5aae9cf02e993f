package agent

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Main runs the agent on this process's stdin and stdout, as
// `etcdplay agent` does. It first moves the real stdout aside for the
// protocol and points fd 1 (and os.Stdout) at stderr, so nothing a module or
// a child process prints can corrupt the response stream.
func Main(ctx context.Context) error {
	fd, err := unix.Dup(1)
	if err != nil {
		return fmt.Errorf("agent: dup stdout: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.Dup2(2, 1); err != nil {
		return fmt.Errorf("agent: redirect stdout: %w", err)
	}
	out := os.NewFile(uintptr(fd), "protocol")
	os.Stdout = os.Stderr
	defer out.Close()
	return Serve(ctx, os.Stdin, out)
}
