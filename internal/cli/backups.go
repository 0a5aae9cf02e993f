package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

func newBackups() *cobra.Command {
	var (
		lf     loadFlags
		format string
	)
	cmd := &cobra.Command{
		Use:   "backups",
		Short: "List the etcd cluster's backups on the controller and in the store (etcd_backup_s3), newest last",
		Long: `List the backups of the inventory's etcd cluster from every place they are
kept: the controller's state dir and, with etcd_backup_s3, the store (the
controller's and the members' timers' uploads). Each line is one snapshot
and what its metadata says; the location column is what restore.yml's
-e snapshot= takes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lf.needInventory(); err != nil {
				return err
			}
			if format != "table" && format != "json" {
				return invalid(fmt.Errorf("--output %q: want table or json", format))
			}
			_, c, vars, err := lf.loadClusterVars()
			if err != nil {
				return err
			}
			env := &modules.Env{Vars: vars, StateDir: lf.resolveStateDir()}
			t, err := etcd_snapshot.OpenTarget(cmd.Context(), env, c, "")
			if err != nil {
				return invalid(err)
			}
			var all []store.Entry
			for _, loc := range t.Locations() {
				es, err := loc.List(cmd.Context())
				if err != nil {
					return fmt.Errorf("%s: %w", loc, err)
				}
				all = append(all, es...)
			}
			if format == "json" {
				type row struct {
					Location string     `json:"location"`
					Size     int64      `json:"stored_size"`
					HasMeta  bool       `json:"has_metadata"`
					Meta     store.Meta `json:"metadata"`
				}
				rows := []row{}
				for _, e := range all {
					rows = append(rows, row{e.URL(), e.Size, e.HasMeta, e.Meta})
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tMEMBER\tREVISION\tKEYS\tSIZE\tENCRYPTED\tVERIFIED\tBY\tLOCATION")
			for _, e := range all {
				m := e.Meta
				keys, verified, by := "?", "?", "?"
				if e.HasMeta {
					keys, verified, by = fmt.Sprint(m.Keys), yesNo(m.Verified), m.Origin
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Time.UTC().Format("2006-01-02 15:04:05Z"), m.Member, m.Revision, keys,
					humanBytes(e.Size), yesNo(m.Encrypted), verified, by, e.URL())
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if len(all) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no backups of cluster %s in %s (run playbooks/backup.yml)\n", c.Name, locNames(t.Locations()))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	lf.registerInventory(cmd)
	fl.StringArrayVarP(&lf.extraVars, "extra-vars", "e", nil, "extra variables: key=value, @file.yml or a JSON object")
	lf.registerStateDir(cmd)
	fl.StringVarP(&format, "output", "o", "table", "table or json")
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func locNames(ls []store.Location) string {
	s := ""
	for i, l := range ls {
		if i > 0 {
			s += " and "
		}
		s += l.String()
	}
	return s
}
