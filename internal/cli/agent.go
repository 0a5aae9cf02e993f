package cli

import (
	"github.com/etcdplay/etcdplay/internal/agent"
	"github.com/spf13/cobra"
)

func newAgent() *cobra.Command {
	return &cobra.Command{
		Use:    "agent",
		Short:  "Serve the controller's requests on stdin/stdout (run on hosts by etcdplay itself)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return agent.Main(cmd.Context())
		},
	}
}
