package cli

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

func newInventory() *cobra.Command {
	var (
		lf     loadFlags
		limit  string
		format string
	)
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "List the inventory's hosts, groups and each host's merged variables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lf.needInventory(); err != nil {
				return err
			}
			if format != "yaml" && format != "json" {
				return invalid(fmt.Errorf("--output %q: want yaml or json", format))
			}
			inv, err := lf.loadInventory()
			if err != nil {
				return err
			}
			hosts := inv.Hosts()
			if limit, err = resolveLimit(limit); err != nil {
				return invalid(err)
			}
			if limit != "" {
				if hosts, err = inv.Match(limit); err != nil {
					return invalid(err)
				}
			}
			type hostView struct {
				Groups []string       `json:"groups" yaml:"groups"`
				Vars   map[string]any `json:"vars" yaml:"vars"`
			}
			view := struct {
				Groups map[string][]string `json:"groups" yaml:"groups"`
				Hosts  map[string]hostView `json:"hosts" yaml:"hosts"`
			}{Groups: inv.Groups(), Hosts: map[string]hostView{}}
			for _, h := range hosts {
				g := append([]string(nil), h.Groups...)
				sort.Strings(g)
				view.Hosts[h.Name] = hostView{Groups: g, Vars: h.Vars}
			}
			out := cmd.OutOrStdout()
			switch format {
			case "yaml":
				enc := yaml.NewEncoder(out)
				enc.SetIndent(2)
				return enc.Encode(view)
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(view)
			}
			return invalid(fmt.Errorf("--output %q: want yaml or json", format))
		},
	}
	lf.registerInventory(cmd)
	cmd.Flags().StringVarP(&limit, "limit", "l", "", "only hosts matching this pattern")
	cmd.Flags().StringVarP(&format, "output", "o", "yaml", "yaml or json")
	_ = cmd.RegisterFlagCompletionFunc("output", completeWords("yaml", "json"))
	return cmd
}
