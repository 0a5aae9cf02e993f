package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd_binary"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
)

func newCtl() *cobra.Command {
	var (
		lf loadFlags
		sf sshFlags
	)
	cmd := &cobra.Command{
		Use:   "ctl -- ETCDCTL-ARGS...",
		Short: "Run etcdctl against the inventory's cluster, with the controller's client certificate",
		Long: `Runs the cluster's own etcdctl (from the release etcdplay verified and
cached) against every member, with the etcdplay client certificate. The
client ports are reached directly when they answer, else through each
member's SSH connection, so it works from wherever apply works.`,
		Example: `  etcdplay ctl -i inventory/prod.yml -- endpoint status -w table
  etcdplay ctl -i inventory/prod.yml -- get --prefix /registry --keys-only`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lf.needInventory(); err != nil {
				return err
			}
			if len(args) == 0 {
				return invalid(fmt.Errorf("no etcdctl arguments: etcdplay ctl -i INV -- endpoint health"))
			}
			inv, c, err := lf.loadCluster(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			stateDir := lf.resolveStateDir()
			ctx := cmd.Context()
			bin, err := controllerEtcdctl(ctx, c, stateDir, func(f string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), f+"\n", a...) })
			if err != nil {
				return err
			}
			connect, err := sf.connectOptions()
			if err != nil {
				return err
			}
			dial := newFallbackDialer(inv, c, connect)
			defer dial.close()
			fw, err := forwardMembers(ctx, c, dial.dial)
			if err != nil {
				return err
			}
			defer fw.close()
			env := os.Environ()
			if c.TLS {
				pki := c.PKI(stateDir)
				crt, key := pki.Client(etcd.EtcdplayClientCN)
				env = append(env, "ETCDCTL_CACERT="+pki.CACert(), "ETCDCTL_CERT="+crt, "ETCDCTL_KEY="+key)
			}
			env = append(env, "ETCDCTL_ENDPOINTS="+strings.Join(fw.endpoints, ","))
			run := exec.CommandContext(ctx, bin, args...)
			run.Env = env
			run.Stdin, run.Stdout, run.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := run.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					// etcdctl said why; its exit code is ours.
					return &exitError{code: ee.ExitCode(), err: errors.New("")}
				}
				return err
			}
			return nil
		},
	}
	lf.registerCluster(cmd)
	sf.register(cmd)
	return cmd
}

// controllerEtcdctl is the cluster release's etcdctl on the controller,
// unpacked once from the verified, cached tarball (fetched if need be).
func controllerEtcdctl(ctx context.Context, c *etcd.Cluster, stateDir string, logf func(string, ...any)) (string, error) {
	if runtime.GOOS != "linux" || runtime.GOARCH != c.Arch {
		return "", fmt.Errorf("the cluster's release is linux/%s and this controller is %s/%s: run etcdctl built for this machine with the certificates in %s",
			c.Arch, runtime.GOOS, runtime.GOARCH, c.PKI(stateDir).Dir)
	}
	root := filepath.Join(c.CacheDir(stateDir), "bin")
	bin := filepath.Join(root, c.Version.String(), "etcdctl")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	rel, err := etcd_binary.Fetch(ctx, c, stateDir, logf)
	if err != nil {
		return "", err
	}
	if err := etcd_install.Unpack(etcd_install.InstallArgs{Version: c.Version.String(), Tarball: rel.Path, SHA256: rel.Files, InstallRoot: root}); err != nil {
		return "", fmt.Errorf("unpack etcdctl: %w", err)
	}
	return bin, nil
}

// forwarder listens on loopback for each member and carries connections
// to it through dial. Every member certificate carries 127.0.0.1, so TLS
// to the forwarded endpoints verifies as it would directly.
type forwarder struct {
	endpoints []string
	lns       []net.Listener
	wg        sync.WaitGroup
}

func forwardMembers(ctx context.Context, c *etcd.Cluster, dial etcdclient.DialFunc) (*forwarder, error) {
	f := &forwarder{}
	scheme := "http://"
	if c.TLS {
		scheme = "https://"
	}
	for _, m := range c.Members {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.close()
			return nil, err
		}
		f.lns = append(f.lns, ln)
		f.endpoints = append(f.endpoints, scheme+ln.Addr().String())
		target := net.JoinHostPort(strings.Trim(m.Address, "[]"), fmt.Sprint(m.ClientPort))
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go splice(ctx, conn, target, dial)
			}
		}()
	}
	return f, nil
}

func splice(ctx context.Context, conn net.Conn, target string, dial etcdclient.DialFunc) {
	defer conn.Close()
	up, err := dial(ctx, target)
	if err != nil {
		return // etcdctl sees the connection close and tries the next member
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, conn); done <- struct{}{} }()
	go func() { io.Copy(conn, up); done <- struct{}{} }()
	<-done
}

func (f *forwarder) close() {
	for _, ln := range f.lns {
		ln.Close()
	}
	f.wg.Wait()
}
