package command

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/etcdplay/etcdplay/modules"
)

// ErrFailed is wrapped by the error of a host command that ran and exited
// non-zero (as opposed to one that could not be run at all).
var ErrFailed = errors.New("command failed")

// Run executes argv on w (no shell) through this module in the host's
// agent, for controller-side modules, and returns its stdout; a non-zero
// exit is an error carrying its stderr.
func Run(ctx context.Context, w modules.HostWriter, argv ...string) (string, error) {
	a := make([]any, len(argv))
	for i, w := range argv {
		a[i] = w
	}
	res, err := w.Apply(ctx, "command", modules.Args{"argv": a})
	if err != nil {
		return "", fmt.Errorf("%s: %w", Quote(argv), err)
	}
	stdout, _ := res.Data["stdout"].(string)
	if res.Status == modules.StatusFailed {
		stderr, _ := res.Data["stderr"].(string)
		msg := strings.TrimSpace(stderr)
		if msg == "" {
			msg = res.Msg
		}
		return stdout, fmt.Errorf("%s: %w: %s", Quote(argv), ErrFailed, msg)
	}
	return stdout, nil
}
