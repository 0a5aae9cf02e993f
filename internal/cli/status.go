package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/internal/etcdstatus"
	"github.com/etcdplay/etcdplay/internal/inventory"
	"github.com/etcdplay/etcdplay/internal/playbook"
	"github.com/etcdplay/etcdplay/internal/runner"
	"github.com/etcdplay/etcdplay/internal/transport"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

func newStatus() *cobra.Command {
	var (
		lf      loadFlags
		sf      sshFlags
		format  string
		members []string
		probe   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show endpoint status, health, member list and alarms of the inventory's etcd cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lf.needInventory(); err != nil {
				return err
			}
			// Checked before anything is contacted.
			if format != "table" && format != "json" {
				return invalid(fmt.Errorf("--output %q: want table or json", format))
			}
			inv, cluster, err := lf.loadCluster(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			connect, err := sf.connectOptions()
			if err != nil {
				return err
			}
			dial := newFallbackDialer(inv, cluster, connect)
			defer dial.close()
			rep, err := etcdstatus.Collect(cmd.Context(), cluster, lf.resolveStateDir(), dial.dial,
				etcdstatus.Options{Members: members, ProbeTimeout: probe, ProxyHost: dial.host})
			if err != nil {
				return err
			}
			switch format {
			case "table":
				err = etcdstatus.WriteTable(cmd.OutOrStdout(), rep)
			case "json":
				err = etcdstatus.WriteJSON(cmd.OutOrStdout(), rep)
			default:
				return invalid(fmt.Errorf("--output %q: want table or json", format))
			}
			if err != nil {
				return err
			}
			if len(rep.Problems) > 0 {
				return &exitError{code: ExitHostFailed, err: fmt.Errorf("cluster %s is not healthy", cluster.Name)}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	lf.registerCluster(cmd)
	sf.register(cmd)
	fl.StringVarP(&format, "output", "o", "table", "table or json")
	fl.StringSliceVar(&members, "members", nil, "only these members (inventory hosts or etcd names)")
	fl.DurationVar(&probe, "probe-timeout", 3*time.Second, "per-member timeout")
	_ = cmd.RegisterFlagCompletionFunc("output", completeWords("table", "json"))
	return cmd
}

// loadCluster loads the inventory and the cluster model a play over the
// etcd group would see (bad input is exit 4); the compiler's warnings
// about the inventory and -e go to warn.
func (lf *loadFlags) loadCluster(warn io.Writer) (*inventory.Inventory, *etcd.Cluster, error) {
	inv, c, _, err := lf.loadClusterVars(warn)
	return inv, c, err
}

// loadClusterVars is loadCluster with the first member's variables.
func (lf *loadFlags) loadClusterVars(warn io.Writer) (*inventory.Inventory, *etcd.Cluster, map[string]any, error) {
	inv, c, all, err := lf.loadMemberVars(warn)
	if err != nil {
		return nil, nil, nil, err
	}
	return inv, c, all[c.Members[0].Host], nil
}

// loadMemberVars is loadCluster with every member's variables.
func (lf *loadFlags) loadMemberVars(warn io.Writer) (*inventory.Inventory, *etcd.Cluster, map[string]map[string]any, error) {
	inv, err := lf.loadInventory()
	if err != nil {
		return nil, nil, nil, err
	}
	extra, err := parseExtraVars(lf.extraVars)
	if err != nil {
		return nil, nil, nil, invalid(err)
	}
	printWarnings(warn, playbook.UnreadVariables(inv, extra))
	c, vars, err := clusterFromInventory(inv, extra, lf.cluster)
	if err != nil {
		return nil, nil, nil, invalid(err)
	}
	return inv, c, vars, nil
}

// clusterFromInventory builds the cluster model the way a play over the etcd
// group sees it: the first member's variables, merged and rendered by the
// compiler's own code, with the facts. When the group holds several
// clusters (etcd_cluster_name), name picks one, as a play partitioned by
// cluster would see it.
func clusterFromInventory(inv *inventory.Inventory, extra map[string]any, name string) (*etcd.Cluster, map[string]map[string]any, error) {
	members := inv.Groups()["etcd"]
	if len(members) == 0 {
		return nil, nil, fmt.Errorf("%s: no hosts in group \"etcd\"", inv.File)
	}
	vars, err := playbook.HostVars(inv, members, extra)
	if err != nil {
		return nil, nil, err
	}
	groups := etcd.GroupByCluster(members, func(h string) map[string]any { return vars[h] })
	i := slices.IndexFunc(groups, func(g etcd.ClusterHosts) bool { return g.Name == name })
	switch {
	case name != "" && i < 0:
		return nil, nil, fmt.Errorf("--cluster %s: no host of %s's etcd group has etcd_cluster_name %s; it holds %s", name, inv.File, name, etcd.ClusterList(groups))
	case name == "" && len(groups) > 1:
		return nil, nil, fmt.Errorf("%s's etcd group holds %d clusters: %s; pass --cluster NAME", inv.File, len(groups), etcd.ClusterList(groups))
	case name != "" && len(groups) > 1:
		members = groups[i].Hosts
		if vars, err = playbook.HostVars(inv, members, extra); err != nil {
			return nil, nil, err
		}
	}
	c, err := etcd.FromVars(vars[members[0]])
	return c, vars, err
}

// fallbackDialer reaches a member's client port directly and, when that
// fails (a firewall, a private network), through an SSH connection to the
// member's host, opened at most once per host.
type fallbackDialer struct {
	inv    *inventory.Inventory
	opts   transport.ConnectOptions
	byAddr map[string]string // client host:port -> inventory host

	mu    sync.Mutex
	conns map[string]*transport.Conn
}

func newFallbackDialer(inv *inventory.Inventory, c *etcd.Cluster, opts transport.ConnectOptions) *fallbackDialer {
	d := &fallbackDialer{inv: inv, opts: opts, byAddr: map[string]string{}, conns: map[string]*transport.Conn{}}
	for _, m := range c.Members {
		d.byAddr[net.JoinHostPort(m.Address, fmt.Sprint(m.ClientPort))] = m.Host
		d.byAddr[net.JoinHostPort(m.Address, fmt.Sprint(m.PeerPort))] = m.Host // certificate expiry
	}
	return d
}

func (d *fallbackDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	direct := net.Dialer{Timeout: time.Second}
	conn, derr := direct.DialContext(ctx, "tcp", addr)
	if derr == nil {
		return conn, nil
	}
	host, ok := d.byAddr[addr]
	if !ok {
		return nil, derr
	}
	c, err := d.sshTo(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("%w; through SSH to %s: %v", derr, host, err)
	}
	return c.Dial(ctx, "tcp", addr)
}

// host is the SSH connection to an inventory host, as a read-only handle.
func (d *fallbackDialer) host(ctx context.Context, name string) (modules.Host, error) {
	return d.sshTo(ctx, name)
}

func (d *fallbackDialer) sshTo(ctx context.Context, host string) (*transport.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.conns[host]; ok {
		return c, nil
	}
	h, ok := d.inv.Host(host)
	if !ok {
		return nil, fmt.Errorf("not in the inventory")
	}
	c, err := transport.Connect(ctx, runner.TargetFor(h), d.opts)
	if err != nil {
		return nil, err
	}
	d.conns[host] = c
	return c, nil
}

func (d *fallbackDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
}
