package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etcdplay/etcdplay/integration/lab"
	"github.com/etcdplay/etcdplay/integration/mirror"
)

// urlFile is where `serve` leaves its URL for the demo and `up` to find,
// and pidFile the server's PID for `down`.
func urlFile() string { return filepath.Join(lab.DefaultStateRoot(), "mirror.url") }
func pidFile() string { return filepath.Join(lab.DefaultStateRoot(), "mirror.pid") }

// mirrorURL is the URL of the running mirror server, or "".
func mirrorURL() string {
	if mirrorPID() == 0 {
		return ""
	}
	u, err := os.ReadFile(urlFile())
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(u))
}

// mirrorPID is the PID of a running `etcdplay-lab serve`, or 0.
func mirrorPID() int {
	raw, err := os.ReadFile(pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 2 || !strings.Contains(filepath.Base(args[0]), "etcdplay-lab") || args[1] != "serve" {
		return 0 // a recycled PID, not our server
	}
	return pid
}

func stopMirror() {
	pid := mirrorPID()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for range 50 {
		if mirrorPID() == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("mirror server (pid %d) stopped\n", pid)
}

func serve(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	file := fs.String("url-file", urlFile(), "write the mirror URL to this file")
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	build := fs.Bool("build", true, "build missing release tarballs first")
	detach := fs.Bool("detach", false, "run in the background (stopped by `etcdplay-lab down`)")
	_ = fs.Parse(args)
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: the mirror serves on loopback only", *addr)
	}
	cache := mirror.DefaultCacheDir()
	if *build {
		for _, v := range mirror.Versions {
			if _, err := mirror.Build(ctx, v, cache); err != nil {
				return err
			}
		}
	}
	if *detach {
		return serveDetached(*file, *addr)
	}
	if pid := mirrorPID(); pid != 0 && *file == urlFile() {
		return fmt.Errorf("a mirror server already runs (pid %d, %s)", pid, mirrorURL())
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	if err := os.MkdirAll(filepath.Dir(*file), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(pidFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile())
	if err := os.WriteFile(*file, []byte(url+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(*file)
	fmt.Printf("etcd mirror: %s (etcd_release_url), serving %s until killed\n", url, cache)
	srv := &http.Server{Handler: mirror.Handler(cache)}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

// serveDetached starts `serve` again in its own session, logging beside the
// URL file, and returns once it serves.
func serveDetached(file, addr string) error {
	if u := mirrorURL(); u != "" {
		fmt.Printf("etcd mirror: %s (already running)\n", u)
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	_ = os.Remove(file)
	logPath := filepath.Join(filepath.Dir(file), "mirror.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "serve", "-build=false", "-url-file", file, "-addr", addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if u, err := os.ReadFile(file); err == nil && len(u) > 0 {
			fmt.Printf("etcd mirror: %s (pid %d, log %s; stop with `etcdplay-lab down`)\n", strings.TrimSpace(string(u)), cmd.Process.Pid, logPath)
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("mirror server exited: %v (see %s)", err, logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("mirror server did not start within 10s (see %s)", logPath)
}
