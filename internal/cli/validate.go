package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newValidate() *cobra.Command {
	var lf loadFlags
	cmd := &cobra.Command{
		Use:               "validate PLAYBOOK",
		Short:             "Compile a playbook against an inventory and report every error; connects nowhere",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completePlaybooks,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := lf.compile(cmd.ErrOrStderr(), args[0])
			if err != nil {
				return err
			}
			tasks := 0
			for _, p := range c.Plays {
				tasks += len(p.Tasks) + len(p.Handlers)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d plays, %d tasks, %d nodes)\n", args[0], len(c.Plays), tasks, c.Graph.Len())
			return nil
		},
	}
	lf.register(cmd)
	return cmd
}

func newGraph() *cobra.Command {
	var (
		lf     loadFlags
		format string
	)
	cmd := &cobra.Command{
		Use:               "graph PLAYBOOK",
		Short:             "Print the compiled task graph (text, or Graphviz dot)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completePlaybooks,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := lf.compile(cmd.ErrOrStderr(), args[0])
			if err != nil {
				return err
			}
			switch format {
			case "text":
				fmt.Fprint(cmd.OutOrStdout(), c.Text())
			case "dot":
				fmt.Fprint(cmd.OutOrStdout(), c.Dot())
			default:
				return invalid(fmt.Errorf("--format %q: want text or dot", format))
			}
			return nil
		},
	}
	lf.register(cmd)
	cmd.Flags().StringVar(&format, "format", "text", "text or dot")
	return cmd
}
