// Package mirror builds etcd release tarballs from the Go module proxy and
// serves them over HTTP on 127.0.0.1, laid out exactly like the upstream
// release downloads (https://github.com/etcd-io/etcd/releases/download/<version>/...),
// so that a deployment pointed at the mirror URL behaves as it would against
// upstream, without internet access.
package mirror

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/etcdplay/etcdplay/integration/flock"
	"github.com/etcdplay/etcdplay/internal/hostfile"
)

// Versions are the etcd releases the project tests against: the latest
// patch of 3.5, 3.6 and 3.7, so that upgrade.yml walks 3.5 -> 3.6 -> 3.7 for
// real, and an early 3.5 patch that the 3.5 -> 3.6 rule refuses.
var Versions = []string{"v3.5.21", "v3.5.35", "v3.6.16", "v3.7.3"}

// Binaries are the programs an upstream release tarball carries.
var Binaries = []string{"etcd", "etcdctl", "etcdutl"}

// ErrBadVersion reports a version string that is not vMAJOR.MINOR.PATCH.
var ErrBadVersion = errors.New("etcd version must look like v3.6.16")

var versionRE = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// DefaultCacheDir is $ETCDPLAY_LAB_CACHE, or /var/cache/etcdplay-lab.
func DefaultCacheDir() string {
	if d := os.Getenv("ETCDPLAY_LAB_CACHE"); d != "" {
		return d
	}
	return "/var/cache/etcdplay-lab"
}

// TarballName is the upstream file name of the linux/amd64 release tarball.
func TarballName(version string) string {
	return "etcd-" + version + "-linux-amd64.tar.gz"
}

// TarballPath is where Build leaves the tarball for version in cacheDir.
func TarballPath(cacheDir, version string) string {
	return filepath.Join(cacheDir, version, TarballName(version))
}

// Build returns the directory holding the release tarball and SHA256SUMS
// for version, building them from the Go module proxy when the cache does
// not already hold a tarball that matches its checksum. It takes minutes the
// first time, and a lock file serializes concurrent builds of one version.
func Build(ctx context.Context, version, cacheDir string) (tarballDir string, err error) {
	if !versionRE.MatchString(version) {
		return "", fmt.Errorf("%q: %w", version, ErrBadVersion)
	}
	if cacheDir == "" {
		cacheDir = DefaultCacheDir()
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("etcd %s mirror: %w", version, err)
	}
	unlock, err := flock.Lock(ctx, filepath.Join(cacheDir, version+".lock"))
	if err != nil {
		return "", fmt.Errorf("etcd %s mirror: %w", version, err)
	}
	defer unlock()

	dir := filepath.Join(cacheDir, version)
	if err := verify(dir, version); err == nil {
		return dir, nil
	}
	if err := build(ctx, version, cacheDir); err != nil {
		return "", fmt.Errorf("build etcd %s: %w", version, err)
	}
	if err := verify(dir, version); err != nil {
		return "", fmt.Errorf("etcd %s mirror after build: %w", version, err)
	}
	return dir, nil
}

// verify checks that dir holds the tarball and a SHA256SUMS naming it with
// the right digest: a half-written cache from a killed run fails here.
func verify(dir, version string) error {
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return err
	}
	want, err := sumFor(sums, TarballName(version))
	if err != nil {
		return err
	}
	got, err := hostfile.FileSumHex(filepath.Join(dir, TarballName(version)))
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s: sha256 %s, SHA256SUMS says %s", TarballName(version), got, want)
	}
	return nil
}

func sumFor(sums []byte, name string) (string, error) {
	for _, line := range strings.Split(string(sums), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.TrimPrefix(f[1], "*") == name {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("SHA256SUMS has no line for %s", name)
}

// wrapper mains: `go install` refuses the etcd modules because they carry
// replace directives, so the three programs are rebuilt from a throwaway
// module that imports the same packages upstream's mains call.
var mains = map[string]string{
	"etcd": `package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
`,
	"etcdctl": `package main

import "go.etcd.io/etcd/etcdctl/v3/ctlv3"

func main() { ctlv3.MustStart() }
`,
}

// etcdutlMain mirrors etcdutl/ctl.go upstream: v3.6 and v3.7 have the
// same commands; v3.5 has backup and check instead of hashkv, completion
// and migrate.
func etcdutlMain(version string) string {
	cmds := "NewDefragCommand(), NewSnapshotCommand(), NewHashKVCommand(), NewVersionCommand(), NewCompletionCommand(), NewMigrateCommand()"
	if strings.HasPrefix(version, "v3.5.") {
		cmds = "NewBackupCommand(), NewDefragCommand(), NewSnapshotCommand(), NewVersionCommand(), NewCheckCommand()"
	}
	return `package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
)

func main() {
	cobra.EnablePrefixMatching = true
	root := &cobra.Command{
		Use:   "etcdutl",
		Short: "An administrative command line tool for etcd3.",
	}
	root.PersistentFlags().StringVarP(&etcdutl.OutputFormat, "write-out", "w", "simple", "set the output format (fields, json, protobuf, simple, table)")
	for _, c := range []*cobra.Command{` + strings.ReplaceAll("etcdutl."+cmds, ", ", ", etcdutl.") + `} {
		root.AddCommand(c)
	}
	root.SetHelpTemplate(` + "`{{.UsageString}}`" + `)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
`
}

func build(ctx context.Context, version, cacheDir string) error {
	work, err := os.MkdirTemp(cacheDir, ".build-"+version+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	src := filepath.Join(work, "src")
	programs := maps.Clone(mains)
	programs["etcdutl"] = etcdutlMain(version)
	for name, code := range programs {
		d := filepath.Join(src, "cmd", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "main.go"), []byte(code), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module etcdplay.invalid/etcdwrapper\n\ngo 1.26\n"), 0o644); err != nil {
		return err
	}

	relName := "etcd-" + version + "-linux-amd64"
	out := filepath.Join(work, "out", relName)
	steps := [][]string{
		{"go", "get",
			"go.etcd.io/etcd/server/v3@" + version,
			"go.etcd.io/etcd/etcdctl/v3@" + version,
			"go.etcd.io/etcd/etcdutl/v3@" + version},
		{"go", "mod", "tidy"},
	}
	for _, b := range Binaries {
		steps = append(steps, []string{"go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(out, b), "./cmd/" + b})
	}
	for _, s := range steps {
		if err := goCmd(ctx, src, s...); err != nil {
			return err
		}
	}

	// Assemble beside the final dir, then rename: a reader never sees a
	// tarball without its checksum file, or a half-written one.
	stage := filepath.Join(work, "stage")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return err
	}
	tgz := filepath.Join(stage, TarballName(version))
	if err := writeTarball(tgz, filepath.Dir(out), relName); err != nil {
		return err
	}
	sum, err := hostfile.FileSumHex(tgz)
	if err != nil {
		return err
	}
	sums := fmt.Sprintf("%s  %s\n", sum, TarballName(version))
	if err := os.WriteFile(filepath.Join(stage, "SHA256SUMS"), []byte(sums), 0o644); err != nil {
		return err
	}
	final := filepath.Join(cacheDir, version)
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	return os.Rename(stage, final)
}

func goCmd(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64",
		"GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false",
	)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, tail(buf.String(), 4000))
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// writeTarball packs base/rel (a directory of binaries) as upstream does:
// a top-level etcd-<version>-linux-amd64/ directory entry, then its files.
func writeTarball(path, base, rel string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: rel + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	for _, b := range Binaries {
		if err := addFile(tw, filepath.Join(base, rel, b), rel+"/"+b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func addFile(tw *tar.Writer, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, Mode: 0o755, Size: st.Size(), ModTime: st.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}
