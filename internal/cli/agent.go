package cli

import (
	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/internal/agent"
	"github.com/etcdplay/etcdplay/modules/etcd_backup_timer"
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

func newBackupHost() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:    "backup-host",
		Short:  "Take one scheduled snapshot of this member (run on members by etcd-backup.service)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return etcd_backup_timer.RunHost(cmd.Context(), config, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&config, "config", etcd_backup_timer.ConfigPath, "the job's settings (written by etcdplay)")
	return cmd
}
