package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/etcdplay/etcdplay/integration/flock"
)

// BasePackages are installed into the base image on top of debootstrap's
// minbase: what an etcd host needs to be managed over SSH by systemd.
var BasePackages = []string{
	"systemd", "systemd-sysv", "dbus", "openssh-server",
	"iproute2", "procps", "curl", "ca-certificates",
	// sudo: the become tests log in as an unprivileged user.
	"sudo",
	// python3: Ansible runs on the same hosts in the benchmark, and Debian
	// servers have it.
	"python3",
}

// baseMarker is written last into a finished image: a directory without it
// is a build that was interrupted.
const baseMarker = ".etcdplay-lab-base"

// DefaultCacheDir is $ETCDPLAY_LAB_CACHE, or /var/cache/etcdplay-lab. It
// holds the base image (base-<hash of its package list>/) and, for the mirror package, etcd releases.
func DefaultCacheDir() string {
	if d := os.Getenv("ETCDPLAY_LAB_CACHE"); d != "" {
		return d
	}
	return "/var/cache/etcdplay-lab"
}

// BaseImage returns the path of the Debian bookworm base image every host
// overlays, building it with debootstrap (about a minute) when the cache does
// not hold a finished one. The image is built in a temporary directory and
// renamed into place, under a lock, so concurrent callers build it once and
// an interrupted build never looks finished.
func BaseImage(ctx context.Context, cacheDir string) (string, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	// Named by its package list: a lab still running on an image of another
	// list keeps its lower layer while the new image is built beside it.
	sum := sha256.Sum256([]byte(baseStamp()))
	base := filepath.Join(cacheDir, "base-"+hex.EncodeToString(sum[:6]))
	if baseCurrent(base) {
		return base, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("lab base image: %w", err)
	}
	unlock, err := flock.Lock(ctx, filepath.Join(cacheDir, "base.lock"))
	if err != nil {
		return "", fmt.Errorf("lab base image: %w", err)
	}
	defer unlock()
	if baseCurrent(base) {
		return base, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("lab base image: debootstrap not installed (apt-get install debootstrap): %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".base-")
	if err != nil {
		return "", fmt.Errorf("lab base image: %w", err)
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	args := []string{"--variant=minbase", "--include=" + strings.Join(BasePackages, ","), "bookworm", root}
	// A machine behind its own Debian mirror names it here.
	if m := os.Getenv("ETCDPLAY_LAB_DEBIAN_MIRROR"); m != "" {
		args = append(args, m)
	}
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("lab base image: debootstrap: %w\n%s", err, tailString(out.String(), 4000))
	}
	if err := prepareBase(root); err != nil {
		return "", fmt.Errorf("lab base image: %w", err)
	}
	if err := os.RemoveAll(base); err != nil {
		return "", fmt.Errorf("lab base image: %w", err)
	}
	if err := os.Rename(root, base); err != nil {
		return "", fmt.Errorf("lab base image: %w", err)
	}
	return base, nil
}

// prepareBase turns a fresh debootstrap tree into the shared lower layer.
func prepareBase(root string) error {
	// sshd must run as ssh.service (one listener on the host's own address),
	// not socket-activated on every address of the shared loopback.
	if err := os.Remove(filepath.Join(root, "etc/systemd/system/sockets.target.wants/ssh.socket")); err != nil && !os.IsNotExist(err) {
		return err
	}
	// Host keys are per host; none may be shared through the lower layer.
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "root/.ssh"), 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, baseMarker), []byte(baseStamp()), 0o644)
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// baseStamp is what a finished image's marker holds: an image built with
// another package list is rebuilt.
func baseStamp() string {
	return "debootstrap bookworm minbase: " + strings.Join(BasePackages, " ") + "\n"
}

// baseCurrent reports whether base is a finished image of the current
// package list.
func baseCurrent(base string) bool {
	b, err := os.ReadFile(filepath.Join(base, baseMarker))
	return err == nil && string(b) == baseStamp()
}
