// Package cli is etcdplay's command line: one file per verb.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/internal/agent"
)

// Exit codes, documented in the README.
const (
	ExitOK          = 0
	ExitError       = 1 // an internal or unexpected error
	ExitHostFailed  = 2 // a task failed on some host
	ExitUnreachable = 3 // some host could not be reached
	ExitInvalid     = 4 // invalid input: nothing was changed anywhere
	ExitInterrupted = 130
)

// exitError carries an exit code up to Main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// invalid marks err as bad input (exit 4).
func invalid(err error) error { return &exitError{code: ExitInvalid, err: err} }

// Main runs the CLI and returns the process exit code.
func Main(args []string) int {
	// The agent reports the same release in its facts.
	agent.Version = Version
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "etcdplay:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "etcdplay:", err)
	return ExitError
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "etcdplay",
		Short: "Deploy and operate etcd clusters over SSH",
		Long: `etcdplay compiles a playbook into a graph of idempotent tasks and applies it
to the inventory's hosts over one SSH connection per host.

Exit codes: 0 all ok, 2 a task failed on a host, 3 a host was unreachable,
4 invalid input (nothing was changed), 130 interrupted (Ctrl-C), 1 any
other error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionLine(),
	}
	root.SetVersionTemplate("etcdplay {{.Version}}\n")
	root.AddCommand(newApply(), newValidate(), newGraph(), newInventory(), newStatus(), newBackups(), newCtl(), newVersion(), newAgent(), newBackupHost(), newRelay())
	// A mistyped flag is bad input like any other (exit 4), for every verb.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return invalid(err) })
	return root
}
