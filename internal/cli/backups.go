package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/internal/transport"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_backup_timer"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

func newBackups() *cobra.Command {
	var (
		lf     loadFlags
		sf     sshFlags
		format string
		hosts  bool
	)
	cmd := &cobra.Command{
		Use:   "backups",
		Short: "List the etcd cluster's backups on the controller, in the store (etcd_backup_s3) and on the members",
		Long: `List the backups of the inventory's etcd cluster from every place they are
kept: the controller's state dir, the store of etcd_backup_s3 (the
controller's and the members' timers' uploads) and, over SSH, each member's
etcd_backup_dir (its timer's local snapshots; --hosts=false skips them).
Each line is one snapshot and what its metadata says; for the controller
and the store, the location is what restore.yml's -e snapshot= takes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lf.needInventory(); err != nil {
				return err
			}
			if format != "table" && format != "json" {
				return invalid(fmt.Errorf("--output %q: want table or json", format))
			}
			inv, c, memberVars, err := lf.loadMemberVars(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			connect, err := sf.connectOptions()
			if err != nil {
				return err
			}
			vars := memberVars[c.Members[0].Host]
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
			if hosts {
				all = append(all, hostBackups(cmd.Context(), cmd.ErrOrStderr(), inv, c, memberVars, connect)...)
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
	lf.registerCluster(cmd)
	sf.register(cmd)
	fl.StringVarP(&format, "output", "o", "table", "table or json")
	fl.BoolVar(&hosts, "hosts", true, "also list each member's etcd_backup_dir over SSH")
	_ = cmd.RegisterFlagCompletionFunc("output", completeWords("table", "json"))
	return cmd
}

// hostBackups lists each member's local backups (its timer's) over SSH,
// all members at once; a member that cannot be reached is named on
// stderr and skipped.
func hostBackups(ctx context.Context, stderr io.Writer, inv *inventory.Inventory, c *etcd.Cluster, vars map[string]map[string]any, o transport.ConnectOptions) []store.Entry {
	var mu sync.Mutex
	var out []store.Entry
	var wg sync.WaitGroup
	for _, m := range c.Members {
		h, ok := inv.Host(m.Host)
		if !ok {
			continue
		}
		dir := modules.Args(vars[m.Host]).Str("etcd_backup_dir", etcd_backup_timer.DefaultDir)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The list probe is etcd_backup_timer's, which only the full
			// agent serves (the members whose timer runs it have that one).
			t := runner.TargetFor(h)
			t.FullAgent = true
			conn, err := transport.Connect(ctx, t, o)
			if err == nil {
				defer conn.Close()
				var es []store.Entry
				if es, err = etcd_backup_timer.List(ctx, conn, dir); err == nil {
					mu.Lock()
					for _, e := range es {
						e.Location = m.Host + ":" + dir
						out = append(out, e)
					}
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			fmt.Fprintf(stderr, "%s: local backups not listed: %v\n", m.Host, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.SliceStable(out, func(i, k int) bool { return out[i].Time().Before(out[k].Time()) })
	return out
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
