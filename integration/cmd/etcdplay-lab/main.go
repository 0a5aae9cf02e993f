// Command etcdplay-lab drives the integration lab from make targets:
//
//	etcdplay-lab up [-n 3] [-block 1] [-name demo]   boot hosts, leave them running
//	etcdplay-lab down [-name NAME]                   tear down labs and leftovers
//	etcdplay-lab mirror [-versions v3.6.16,v3.7.3]   build etcd release tarballs
//	etcdplay-lab base                                build the base image
//	etcdplay-lab s3                                  build the lab's S3 server (versitygw)
//	etcdplay-lab serve [-detach] [-url-file F]       serve the mirror until killed
//
// `down` without -name also stops a detached mirror server.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/integration/mirror"
	"github.com/etcdplay/etcdplay/integration/s3server"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	case "mirror":
		err = buildMirror(ctx, os.Args[2:])
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "s3":
		var bin string
		start := time.Now()
		if bin, err = s3server.Build(ctx, ""); err == nil {
			fmt.Printf("S3 server (versitygw %s): %s (%s)\n", s3server.Version, bin, time.Since(start).Round(time.Second))
		}
	case "base":
		var dir string
		start := time.Now()
		if dir, err = lab.BaseImage(ctx, ""); err == nil {
			fmt.Printf("base image: %s (%s)\n", dir, time.Since(start).Round(time.Second))
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdplay-lab:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: etcdplay-lab up [-n 3] [-block 1] [-name demo] [-var k=v]...
       etcdplay-lab down [-name NAME]      (every lab when no name)
       etcdplay-lab mirror [-versions v3.6.16,v3.7.3]
       etcdplay-lab base
       etcdplay-lab s3
       etcdplay-lab serve [-detach] [-url-file FILE] [-addr 127.0.0.1:0]`)
	os.Exit(2)
}

type varsFlag map[string]any

func (v varsFlag) String() string { return fmt.Sprint(map[string]any(v)) }
func (v varsFlag) Set(s string) error {
	k, val, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	v[k] = val
	return nil
}

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	n := fs.Int("n", 3, "number of hosts")
	block := fs.Int("block", 1, "X of the 127.0.X.0/24 block")
	name := fs.String("name", "demo", "lab name")
	vars := varsFlag{}
	fs.Var(vars, "var", "inventory variable for group all, key=value (repeatable)")
	_ = fs.Parse(args)
	// A running mirror is where the hosts get etcd from, unless told otherwise.
	if _, set := vars["etcd_release_url"]; !set && mirrorURL() != "" {
		vars["etcd_release_url"] = mirrorURL()
	}

	start := time.Now()
	l, err := lab.New(ctx, lab.Options{Name: *name, Block: *block, Hosts: *n, Vars: vars})
	if err != nil {
		// New tears down what it started; make sure of it after a Ctrl-C.
		if cerr := lab.Cleanup(*name); cerr != nil {
			err = fmt.Errorf("%w; cleanup: %v", err, cerr)
		}
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", errors2(l.Close(), ctx.Err()))
	}
	fmt.Printf("lab %s: %d hosts up in %s\n", l.Name, *n, time.Since(start).Round(100*time.Millisecond))
	for _, h := range l.Hosts() {
		fmt.Printf("  %-8s %s (machine %s)\n", h.Name, h.Addr, h.Machine)
	}
	fmt.Printf("inventory:   %s\nknown_hosts: %s\nssh key:     %s\n", l.InventoryFile, l.KnownHostsFile, l.KeyFile)
	fmt.Printf("ssh:         ssh -i %s -o UserKnownHostsFile=%s root@%s\n", l.KeyFile, l.KnownHostsFile, l.Hosts()[0].Addr)
	if u := mirrorURL(); u != "" {
		fmt.Printf("mirror:      %s\n", u)
	}
	fmt.Printf("tear down:   make lab-down\n")
	return nil
}

func errors2(a, b error) error {
	if a != nil {
		return fmt.Errorf("%v (teardown: %v)", b, a)
	}
	return b
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	name := fs.String("name", "", "lab to tear down (every lab when empty)")
	_ = fs.Parse(args)
	if *name == "" {
		stopMirror()
	}
	if err := lab.Cleanup(*name); err != nil {
		return err
	}
	fmt.Printf("lab down: no containers, mounts or state left under %s\n", filepath.Join(lab.DefaultStateRoot(), *name))
	return nil
}

func buildMirror(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mirror", flag.ExitOnError)
	versions := fs.String("versions", strings.Join(mirror.Versions, ","), "comma-separated etcd versions")
	_ = fs.Parse(args)
	for _, v := range strings.Split(*versions, ",") {
		start := time.Now()
		dir, err := mirror.Build(ctx, strings.TrimSpace(v), "")
		if err != nil {
			return err
		}
		fmt.Printf("etcd %s: %s (%s)\n", v, filepath.Join(dir, mirror.TarballName(v)), time.Since(start).Round(time.Second))
	}
	return nil
}
