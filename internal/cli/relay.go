package cli

import (
	"fmt"
	"log"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/internal/transport"
)

func newRelay() *cobra.Command {
	var (
		socket  string
		persist time.Duration
		stop    bool
	)
	cmd := &cobra.Command{
		Use:    "relay",
		Short:  "Keep SSH connections open between runs (started by --persist; --stop ends it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stop {
				running, err := transport.StopRelay(socket)
				switch {
				case err != nil:
					return err
				case running:
					fmt.Fprintln(cmd.OutOrStdout(), "relay stopping: it takes no more runs, and closes its connections once the runs it serves have ended")
				default:
					fmt.Fprintln(cmd.OutOrStdout(), "no relay on", socket)
				}
				return nil
			}
			log.SetFlags(log.LstdFlags)
			return transport.RelayMain(cmd.Context(), socket, persist)
		},
	}
	cmd.Flags().StringVar(&socket, "socket", transport.DefaultRelaySocket(), "where to listen")
	cmd.Flags().DurationVar(&persist, "persist", time.Minute, "exit once no run has used the relay for this long")
	cmd.Flags().BoolVar(&stop, "stop", false, "ask the relay to stop: no more runs, and its connections closed once the runs it serves have ended")
	return cmd
}
