package etcd_install

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// InstallArgs are etcd_install's arguments. The controller (etcd_binary)
// fills them from the cluster model and the tarball it verified.
type InstallArgs struct {
	Version     string
	Tarball     string            // the uploaded tarball on the host
	SHA256      map[string]string // binary name -> hex digest, from the verified tarball
	InstallRoot string
	BinDir      string
	// Stage installs the release without pointing the links in BinDir at
	// it: the upgrade switches each host's links just before its restart.
	Stage bool
}

// Args encodes a as module arguments.
func (a InstallArgs) Args() modules.Args {
	sums := map[string]any{}
	for k, v := range a.SHA256 {
		sums[k] = v
	}
	return modules.Args{"version": a.Version, "tarball": a.Tarball, "sha256": sums,
		"install_root": a.InstallRoot, "bin_dir": a.BinDir, "stage": a.Stage}
}

var installSpec = modules.Spec{
	"version":      {Kind: modules.String, Required: true},
	"tarball":      {Kind: modules.String, Required: true},
	"sha256":       {Kind: modules.Map, Required: true},
	"install_root": {Kind: modules.String},
	"bin_dir":      {Kind: modules.String},
	"stage":        {Kind: modules.Bool},
}

func installArgs(args modules.Args) (InstallArgs, error) {
	if err := installSpec.Check(args); err != nil {
		return InstallArgs{}, err
	}
	def := etcd.DefaultHostPaths()
	a := InstallArgs{
		Version:     args.Str("version", ""),
		Tarball:     args.Str("tarball", ""),
		InstallRoot: args.Str("install_root", def.InstallRoot),
		BinDir:      args.Str("bin_dir", def.BinDir),
		Stage:       args.Bool("stage", false),
		SHA256:      map[string]string{},
	}
	if _, err := etcd.ParseVersion(a.Version); err != nil {
		return a, &modules.ArgError{Arg: "version", Msg: err.Error()}
	}
	sums, _ := args["sha256"].(map[string]any)
	for _, b := range etcd.Binaries {
		s, _ := sums[b].(string)
		if len(s) != 64 {
			return a, &modules.ArgError{Arg: "sha256", Msg: fmt.Sprintf("needs the hex SHA-256 of %s", b)}
		}
		a.SHA256[b] = s
	}
	return a, nil
}

func (a InstallArgs) dir() string { return filepath.Join(a.InstallRoot, a.Version) }

// installPlan is what Apply must do.
type installPlan struct {
	args    InstallArgs
	install bool     // unpack the release
	links   []string // binaries whose link in BinDir must be (re)pointed
}

type installModule struct{}

func (installModule) Validate(args modules.Args) error {
	_, err := installArgs(args)
	return err
}

func (installModule) Plan(_ context.Context, _ *modules.Env, args modules.Args) (*modules.Change, error) {
	a, err := installArgs(args)
	if err != nil {
		return nil, err
	}
	p := &installPlan{args: a}
	c := &modules.Change{Payload: p}
	var differ []string
	stamps := readStamps(a.dir())
	for _, b := range etcd.Binaries {
		p := filepath.Join(a.dir(), b)
		if s := stamps[b]; s.SHA256 == a.SHA256[b] && s.Stat != "" && s.Stat == hostfile.Stamp(p) {
			continue // unchanged since installed and verified
		}
		st, err := hostfile.StateFollow(p)
		if err != nil {
			return nil, err
		}
		if !st.IsRegular() || st.SHA256 != a.SHA256[b] || st.Perm()&0o111 == 0 {
			differ = append(differ, b)
		}
	}
	if len(differ) > 0 {
		p.install = true
		if _, err := os.Stat(a.dir()); err == nil {
			c.Add("~", a.dir(), fmt.Sprintf("reinstall etcd %s (%s differ from the release)", a.Version, strings.Join(differ, ", ")))
		} else {
			c.Add("+", a.dir(), fmt.Sprintf("install etcd %s (%s)", a.Version, strings.Join(etcd.Binaries, ", ")))
		}
	}
	for _, b := range etcd.Binaries {
		if a.Stage {
			break
		}
		link := filepath.Join(a.BinDir, b)
		want := filepath.Join(a.dir(), b)
		st, err := hostfile.State(link)
		if err != nil {
			return nil, err
		}
		switch {
		case !st.Exists:
			c.Add("+", link, "link -> "+want)
		case !st.IsLink():
			c.Add("~", link, "replace file with link -> "+want)
		case st.LinkTarget != want:
			c.Add("~", link, "link "+st.LinkTarget+" -> "+want)
		default:
			continue
		}
		p.links = append(p.links, b)
	}
	return c, nil
}

func (installModule) Apply(_ context.Context, _ *modules.Env, c *modules.Change) (*modules.Result, error) {
	p := c.Payload.(*installPlan)
	if p.install {
		if err := unpack(p.args); err != nil {
			return nil, err
		}
	}
	for _, b := range p.links {
		if err := relink(filepath.Join(p.args.BinDir, b), filepath.Join(p.args.dir(), b)); err != nil {
			return nil, err
		}
	}
	// The tarball only carried the release here; it is not needed again.
	if p.args.Tarball != "" {
		os.Remove(p.args.Tarball)
	}
	return &modules.Result{Status: modules.StatusChanged, Change: c}, nil
}

// Unpack extracts the three binaries into a temp dir beside the versioned
// dir, checks each against the controller's digest, then renames the dir
// into place, so a half-written or tampered release is never installed.
// The controller uses it too, for the etcdctl of `etcdplay ctl`.
func Unpack(a InstallArgs) error { return unpack(a) }

func unpack(a InstallArgs) error {
	if err := os.MkdirAll(a.InstallRoot, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(a.InstallRoot, "."+a.Version+".etcdplay-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// Each binary is flushed to disk while the next one is decompressed:
	// one after the other, the three fsyncs were a third of an unpack.
	var flushing sync.WaitGroup
	flushErrs := make(chan error, len(etcd.Binaries))
	err = EachBinary(a.Tarball, func(h *tar.Header, r io.Reader) error {
		name := path.Base(h.Name)
		f, sum, err := writeExec(filepath.Join(tmp, name), r)
		if err != nil {
			return err
		}
		flushing.Go(func() { flushErrs <- syncClose(f) })
		if sum != a.SHA256[name] {
			return fmt.Errorf("%s in %s has SHA-256 %s, the verified release has %s: refusing to install", name, a.Tarball, sum, a.SHA256[name])
		}
		return nil
	})
	flushing.Wait()
	close(flushErrs)
	for ferr := range flushErrs {
		err = errors.Join(err, ferr)
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	dst := a.dir()
	old := dst + ".etcdplay-old"
	os.RemoveAll(old)
	if _, err := os.Lstat(dst); err == nil {
		if err := os.Rename(dst, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	os.RemoveAll(old)
	if err := writeStamps(dst, a.SHA256); err != nil {
		return err
	}
	return hostfile.SyncDir(a.InstallRoot)
}

// EachBinary calls fn with each of etcd's binaries (etcd.Binaries) in a
// release archive, upstream's tar.gz or the controller's zstd repack: the
// regular files of the archive's top-level directory, as upstream lays
// them out. It fails naming any the archive lacks.
func EachBinary(archive string, fn func(h *tar.Header, r io.Reader) error) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("etcd release archive: %w", err)
	}
	defer f.Close()
	payload, err := decompress(f)
	if err != nil {
		return fmt.Errorf("%s: %w", archive, err)
	}
	defer payload.Close()
	found := map[string]bool{}
	tr := tar.NewReader(payload)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		name := path.Base(h.Name)
		if h.Typeflag != tar.TypeReg || !slices.Contains(etcd.Binaries, name) || found[name] || strings.Count(strings.Trim(h.Name, "/"), "/") != 1 {
			continue
		}
		if err := fn(h, tr); err != nil {
			return err
		}
		found[name] = true
	}
	var missing []string
	for _, b := range etcd.Binaries {
		if !found[b] {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s has no %s in its top-level directory", archive, strings.Join(missing, ", "))
	}
	return nil
}

// decompress reads upstream's gzip tarball or the controller's zstd
// repack of it, told apart by their magic numbers.
func decompress(f *os.File) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(f, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("not a release archive: %w", err)
	}
	if bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		// One goroutine: as fast for this stream, and 15-30% less CPU
		// (a v3.6 release: 142 ms against 162-208), which a cold run
		// unpacking on every host of a busy machine feels.
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return gzip.NewReader(br)
}

// stampFile records, per installed binary, its digest and its stat when it
// was verified, so a warm run needs a stat instead of hashing ~70 MB.
const stampFile = ".etcdplay-sha256.json"

type binStamp struct {
	SHA256 string `json:"sha256"`
	Stat   string `json:"stat"`
}

func readStamps(dir string) map[string]binStamp {
	out := map[string]binStamp{}
	if b, err := os.ReadFile(filepath.Join(dir, stampFile)); err == nil {
		_ = json.Unmarshal(b, &out)
	}
	return out
}

func writeStamps(dir string, sums map[string]string) error {
	out := map[string]binStamp{}
	for _, b := range etcd.Binaries {
		out[b] = binStamp{SHA256: sums[b], Stat: hostfile.Stamp(filepath.Join(dir, b))}
	}
	data, _ := json.Marshal(out)
	return hostfile.WriteAtomic(filepath.Join(dir, stampFile), data, 0o644, -1, -1)
}

// writeExec writes r to a new executable at p and returns it open, not
// yet flushed, with the SHA-256 of what it wrote.
func writeExec(p string, r io.Reader) (*os.File, string, error) {
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return nil, "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), r); err != nil {
		out.Close()
		return nil, "", fmt.Errorf("write %s: %w", p, err)
	}
	return out, hex.EncodeToString(h.Sum(nil)), nil
}

func syncClose(f *os.File) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("flush %s: %w", f.Name(), err)
	}
	return f.Close()
}

// relink points link at target atomically (a temp link renamed over it), so
// /usr/local/bin/etcd always names a whole release.
func relink(link, target string) error {
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(link), "."+filepath.Base(link)+".etcdplay-link")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func init() {
	modules.RegisterInternal("etcd_install", installModule{})
}
