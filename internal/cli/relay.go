package cli

import (
	"log"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/internal/transport"
)

func newRelay() *cobra.Command {
	var (
		socket  string
		persist time.Duration
	)
	cmd := &cobra.Command{
		Use:    "relay",
		Short:  "Keep SSH connections open between runs (started by --persist)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log.SetFlags(log.LstdFlags)
			return transport.RelayMain(cmd.Context(), socket, persist)
		},
	}
	cmd.Flags().StringVar(&socket, "socket", transport.DefaultRelaySocket(), "where to listen")
	cmd.Flags().DurationVar(&persist, "persist", time.Minute, "exit once no run has used the relay for this long")
	return cmd
}
