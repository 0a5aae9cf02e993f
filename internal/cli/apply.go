package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/internal/leanagent"
	"github.com/etcdplay/etcdplay/internal/output"
	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/internal/transport"
)

// sshFlags are the connection settings shared by apply and status.
type sshFlags struct {
	user, key   string
	knownHosts  string
	acceptNew   bool
	timeout     time.Duration
	persist     time.Duration
	persistErr  error // ETCDPLAY_PERSIST is not a duration
	agentBinary []string
	sshConfig   string
}

func (f *sshFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.user, "user", "u", "", "login user for hosts without ansible_user (default: the local user)")
	fl.StringVar(&f.key, "private-key", "", "private key for hosts without ansible_ssh_private_key_file (default: ssh-agent and ~/.ssh/id_*)")
	fl.StringVar(&f.knownHosts, "known-hosts", "", "known_hosts file to verify host keys against (default ~/.ssh/known_hosts)")
	fl.BoolVar(&f.acceptNew, "accept-new-host-keys", false, "trust and record keys of hosts not yet in known_hosts (a changed key is always refused)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "SSH connect timeout per host")
	persist := time.Duration(0)
	if v := os.Getenv("ETCDPLAY_PERSIST"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			f.persistErr = fmt.Errorf("ETCDPLAY_PERSIST=%q: want a duration such as 60s (or 0)", v)
		}
		persist = d
	}
	fl.DurationVar(&f.persist, "persist", persist, "keep each host's SSH connection open this long after the run, in a background `etcdplay relay` of yours, for the next run to reuse (as ssh's ControlPersist; e.g. 60s; 0: no; default $ETCDPLAY_PERSIST)")
	fl.StringVarP(&f.sshConfig, "ssh-config", "F", transport.DefaultSSHConfigFile(), "ssh client config whose HostName, Port, User, IdentityFile and ProxyJump fill what the inventory and flags leave unset (\"none\": no config)")
	fl.StringArrayVar(&f.agentBinary, "agent-binary", nil, "agent executable for hosts of another platform: os/arch=PATH, e.g. linux/arm64=./etcdplay-arm64 (repeatable; default: the lean agent embedded in this binary, or this binary itself for hosts that run a backup timer)")
}

// connectOptions are the flags' connection settings; a bad ssh config
// is invalid input.
func (f *sshFlags) connectOptions() (transport.ConnectOptions, error) {
	if f.persistErr != nil {
		return transport.ConnectOptions{}, invalid(f.persistErr)
	}
	kh := f.knownHosts
	if kh == "" {
		if home, err := os.UserHomeDir(); err == nil {
			kh = filepath.Join(home, ".ssh", "known_hosts")
		}
	}
	o := transport.ConnectOptions{User: f.user, KeyFile: expandTilde(f.key), KnownHostsFile: kh, AcceptNewHostKeys: f.acceptNew, Timeout: f.timeout, Persist: f.persist}
	for _, spec := range f.agentBinary {
		if platform, path, ok := strings.Cut(spec, "="); ok {
			if o.AgentBinaries == nil {
				o.AgentBinaries = map[string]string{}
			}
			o.AgentBinaries[platform] = path
		} else {
			o.AgentBinary = spec
		}
	}
	if o.AgentBinary == "" {
		// Hosts get the lean agent unless they need etcdplay whole; a
		// build without one embedded sends itself.
		lean, err := leanagent.Unpacked()
		if err != nil {
			return o, err
		}
		if lean != nil {
			o.LeanAgent = *lean
		}
	}
	if f.sshConfig != "" && f.sshConfig != "none" {
		cfg, err := transport.LoadSSHConfig(expandTilde(f.sshConfig))
		if err != nil {
			return o, invalid(err)
		}
		o.SSHConfig = cfg
	}
	return o, nil
}

func newApply() *cobra.Command {
	var (
		lf       loadFlags
		sf       sshFlags
		check    bool
		showDiff bool
		forks    int
		format   string
		listH    bool
		listT    bool
		yes      bool
		verbose  int
		noColor  bool
	)
	cmd := &cobra.Command{
		Use:               "apply PLAYBOOK",
		Short:             "Converge the inventory's hosts to a playbook (--check --diff to preview)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completePlaybooks,
		RunE: func(cmd *cobra.Command, args []string) error {
			sink, err := output.New(format, cmd.OutOrStdout(), output.Options{Diff: showDiff, Check: check,
				Verbosity: verbose, Color: useColor(cmd.OutOrStdout(), noColor), Progress: onTerminal(cmd.OutOrStdout())})
			if err != nil {
				return invalid(err)
			}
			inv, compiled, err := lf.compile(cmd.ErrOrStderr(), args[0])
			if err != nil {
				return err
			}
			if listH || listT {
				listPlays(cmd.OutOrStdout(), compiled, listH, listT)
				return nil
			}
			connect, err := sf.connectOptions()
			if err != nil {
				return err
			}
			opts := runner.Options{
				Forks:    forks,
				Check:    check,
				Connect:  connect,
				StateDir: lf.resolveStateDir(),
				Sink:     sink,
			}
			var conf *confirmer
			if !yes && !yesFromEnv() {
				conf = newConfirmer(os.Stdin, cmd.ErrOrStderr())
				opts.Confirm = conf.confirm
			}
			sum, err := runner.Run(cmd.Context(), compiled, inv, opts)
			if err != nil {
				if cmd.Context().Err() != nil {
					return &exitError{code: ExitInterrupted, err: err}
				}
				return &exitError{code: ExitError, err: err}
			}
			switch {
			case conf != nil && conf.refused:
				return invalid(fmt.Errorf("a disruptive step was not confirmed (see above): pass --yes or run on a terminal"))
			case sum.Failed:
				return &exitError{code: ExitHostFailed, err: fmt.Errorf("some tasks failed (see above)")}
			case sum.Unreachable:
				return &exitError{code: ExitUnreachable, err: fmt.Errorf("some hosts were unreachable (see above)")}
			}
			return nil
		},
	}
	lf.register(cmd)
	sf.register(cmd)
	fl := cmd.Flags()
	fl.BoolVarP(&check, "check", "C", false, "change nothing; report what apply would do")
	fl.BoolVarP(&showDiff, "diff", "D", false, "show unified diffs of files (secrets as hashes only)")
	fl.IntVarP(&forks, "forks", "f", 50, "how many tasks run at once")
	fl.StringVarP(&format, "output", "o", "text", "output format: text or json (one event per line)")
	fl.BoolVarP(&yes, "yes", "y", false, "apply disruptive steps (membership changes, restores, rolling restarts, upgrades, defrags) without asking; $ETCDPLAY_YES")
	fl.CountVarP(&verbose, "verbose", "v", "show each task's result data (a command's rc, stdout, stderr) and where the run's time went (TIMELINE, after the recap) with -v, each connection with -vvv")
	fl.BoolVar(&noColor, "no-color", false, "no colour even on a terminal (also NO_COLOR=1)")
	_ = cmd.RegisterFlagCompletionFunc("output", completeWords("text", "json"))
	lf.registerCompletions(cmd)
	fl.BoolVar(&listH, "list-hosts", false, "print each play's hosts (after --limit) and exit; connect nowhere")
	fl.BoolVar(&listT, "list-tasks", false, "print each play's tasks (after --tags) and exit; connect nowhere")
	return cmd
}

// expandTilde expands a leading ~/ as a shell would have.
func expandTilde(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}
