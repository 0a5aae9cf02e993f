package etcd_install

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/modules"
)

// etcd's docs recommend a dedicated disk for the data dir (and the WAL
// dir). Such a dir is a mount point: it cannot be renamed (EBUSY), and a
// fresh filesystem holds lost+found, which is not etcd data. So moving a
// data dir aside and a restored one into place is done here, in Go on the
// host, one way for every module: a plain dir is renamed to DIR.SUFFIX; a
// mount point keeps its place and its contents move into DIR/NAME.SUFFIX on
// the same filesystem. Nothing is ever deleted.

const datadirName = "etcd_datadir"

// DirLayout is what a data or WAL dir looks like on a host.
type DirLayout struct {
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	// Mount is true when Path is a mount point (its own disk, a tmpfs).
	Mount bool `json:"mount,omitempty"`
	// Data lists the entries that are etcd data: all but lost+found and
	// the dirs etcdplay set aside or staged inside a mount point earlier.
	Data []string `json:"data,omitempty"`
	// Besides lists, as paths, what etcdplay set aside or staged beside
	// the dir earlier (see Beside): DIR.* next to a plain dir, DIR/NAME.*
	// inside a mount point.
	Besides []string `json:"besides,omitempty"`
	// FreeBytes is the space left on the filesystem that holds Path (its
	// nearest existing ancestor when Path does not exist).
	FreeBytes uint64 `json:"free_bytes"`
}

// HasData reports whether the dir holds anything that must be kept.
func (l DirLayout) HasData() bool { return len(l.Data) > 0 }

// Beside is where something named SUFFIX goes next to the dir on the same
// filesystem: DIR.SUFFIX, or inside a mount point DIR/NAME.SUFFIX.
func (l DirLayout) Beside(suffix string) string {
	if l.Mount {
		return filepath.Join(l.Path, filepath.Base(l.Path)+"."+suffix)
	}
	return l.Path + "." + suffix
}

// ProbeDirs reports the layout of dirs on the host. It only reads: it is a
// probe, so Plan and --check may call it.
func ProbeDirs(ctx context.Context, h modules.Host, dirs ...string) ([]DirLayout, error) {
	var out []DirLayout
	if err := h.Probe(ctx, datadirName, modules.Args{"dirs": anyList(dirs)}, &out); err != nil {
		return nil, err
	}
	if len(out) != len(dirs) {
		return nil, fmt.Errorf("%s: asked about %d dirs, got %d answers", datadirName, len(dirs), len(out))
	}
	return out, nil
}

// dirsProbe is ProbeDirs' host side.
type dirsProbe struct{}

func (dirsProbe) Probe(_ context.Context, args modules.Args) (any, error) {
	dirs := args.Strings("dirs")
	out := make([]DirLayout, len(dirs))
	for i, d := range dirs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("dir %q is not an absolute path", d)
		}
		l, err := layoutOf(d)
		if err != nil {
			return nil, err
		}
		out[i] = l
	}
	return out, nil
}

// MoveAside sets the data of each dir aside under suffix (see Beside),
// never deleting anything; a dir without data is left alone. With owner
// set, each dir is then there, empty of data, owned by owner and 0700, for
// a member that starts afresh.
func MoveAside(ctx context.Context, w modules.HostWriter, suffix, owner string, dirs ...string) error {
	_, err := doDatadir(ctx, w, modules.Args{"op": "aside", "dirs": anyList(dirs), "suffix": suffix, "owner": owner})
	return err
}

// Promote moves the staged dir from into place as dir to, which must hold
// no data: a rename when to is gone, else (a mount point) its entries move
// in one by one and the empty staging dir is removed.
func Promote(ctx context.Context, w modules.HostWriter, from, to string) error {
	_, err := doDatadir(ctx, w, modules.Args{"op": "promote", "from": from, "to": to})
	return err
}

func doDatadir(ctx context.Context, w modules.HostWriter, args modules.Args) (*modules.Result, error) {
	res, err := w.Apply(ctx, datadirName, args)
	if err != nil {
		return nil, err
	}
	if res.Status == modules.StatusFailed {
		return nil, errors.New(res.Msg)
	}
	return res, nil
}

func anyList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// datadirModule is the host side of MoveAside and Promote. Its Plan only
// names the operation: the callers planned it already.
type datadirModule struct{}

var datadirSpec = modules.Spec{
	"op":     {Kind: modules.String, Required: true, OneOf: []string{"aside", "promote"}},
	"dirs":   {Kind: modules.List},
	"suffix": {Kind: modules.String},
	"owner":  {Kind: modules.String},
	"from":   {Kind: modules.String},
	"to":     {Kind: modules.String},
}

func (datadirModule) Validate(args modules.Args) error {
	if err := datadirSpec.Check(args); err != nil {
		return err
	}
	for _, d := range append(stringList(args["dirs"]), args.Str("from", ""), args.Str("to", "")) {
		if d != "" && (!filepath.IsAbs(d) || filepath.Clean(d) == "/") {
			return &modules.ArgError{Arg: "dirs", Msg: fmt.Sprintf("%q must be an absolute path below /", d)}
		}
	}
	if s := args.Str("suffix", ""); args.Str("op", "") == "aside" && (s == "" || strings.ContainsRune(s, '/')) {
		return &modules.ArgError{Arg: "suffix", Msg: fmt.Sprintf("%q must be a non-empty name", s)}
	}
	return nil
}

func (datadirModule) Plan(_ context.Context, _ *modules.Env, args modules.Args) (*modules.Change, error) {
	c := &modules.Change{Payload: args}
	c.Add("!", datadirName, args.Str("op", ""))
	return c, nil
}

func (datadirModule) Apply(_ context.Context, _ *modules.Env, c *modules.Change) (*modules.Result, error) {
	args := c.Payload.(modules.Args)
	dirs := stringList(args["dirs"])
	switch args.Str("op", "") {
	case "aside":
		for _, d := range dirs {
			if err := moveAside(d, args.Str("suffix", ""), args.Str("owner", "")); err != nil {
				return nil, err
			}
		}
	case "promote":
		if err := promote(args.Str("from", ""), args.Str("to", "")); err != nil {
			return nil, err
		}
	}
	return &modules.Result{Status: modules.StatusChanged}, nil
}

func stringList(v any) []string {
	var out []string
	for _, e := range listArg(v) {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func layoutOf(dir string) (DirLayout, error) {
	dir = filepath.Clean(dir)
	l := DirLayout{Path: dir}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return l, err
	case !fi.IsDir():
		return l, fmt.Errorf("%s exists and is not a directory (%s)", dir, fi.Mode().Type())
	default:
		l.Exists = true
		if l.Mount, err = isMountPoint(dir, fi); err != nil {
			return l, err
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return l, err
		}
		for _, e := range ents {
			if !ignored(dir, e.Name()) {
				l.Data = append(l.Data, e.Name())
			}
		}
	}
	// What sits beside the dir: inside a mount point, the entries just
	// read; next to a plain (or missing) dir, its parent's.
	beside, prefix := filepath.Dir(dir), filepath.Base(dir)+"."
	if l.Mount {
		beside = dir
	}
	if ents, err := os.ReadDir(beside); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				l.Besides = append(l.Besides, filepath.Join(beside, e.Name()))
			}
		}
	}
	if free, _, err := hostfile.FreeBytes(dir); err == nil {
		l.FreeBytes = free
	}
	return l, nil
}

// ignored says which entries of a data dir are not etcd's: a fresh
// filesystem's lost+found, and NAME.* dirs etcdplay set aside or staged
// inside a mount point.
func ignored(dir, name string) bool {
	return name == "lost+found" || strings.HasPrefix(name, filepath.Base(dir)+".")
}

// isMountPoint: another device than the parent's (a disk, a tmpfs), or a
// mount point in the mount table (a bind mount of the same device).
func isMountPoint(dir string, fi os.FileInfo) (bool, error) {
	pfi, err := os.Lstat(filepath.Dir(dir))
	if err != nil {
		return false, err
	}
	if fi.Sys().(*syscall.Stat_t).Dev != pfi.Sys().(*syscall.Stat_t).Dev {
		return true, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, nil // no mount table: the device test stands
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// Field 5 is the mount point, with spaces as \040.
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && unescapeMount(fields[4]) == dir {
			return true, nil
		}
	}
	return false, nil
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func moveAside(dir, suffix, owner string) error {
	l, err := layoutOf(dir)
	if err != nil {
		return err
	}
	if l.HasData() {
		to := l.Beside(suffix)
		if _, err := os.Lstat(to); err == nil {
			return fmt.Errorf("%s already exists: nothing moved (another run with the same time stamp?)", to)
		}
		if !l.Mount {
			if err := os.Rename(dir, to); err != nil {
				return fmt.Errorf("move %s aside: %w", dir, err)
			}
			l.Exists = false
		} else if err := moveEntries(dir, to, l.Data, 0o700); err != nil {
			return fmt.Errorf("move the data in mount point %s aside: %w", dir, err)
		}
		if err := syncDir(filepath.Dir(to)); err != nil {
			return err
		}
	}
	if owner == "" {
		return nil
	}
	if !l.Exists {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	w, err := (hostfile.Attrs{Mode: "0700", Owner: owner, Group: owner}).Resolve(hostfile.FileState{}, 0o700, true)
	if err != nil {
		return err
	}
	return w.Set(dir)
}

// moveEntries renames each of names from dir into a new dir to (same
// filesystem), created with mode and dir's owner.
func moveEntries(dir, to string, names []string, mode os.FileMode) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if err := os.Mkdir(to, mode); err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Chown(to, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(dir, n), filepath.Join(to, n)); err != nil {
			return err
		}
	}
	return syncDir(to)
}

func promote(from, to string) error {
	if _, err := os.Stat(from); err != nil {
		return fmt.Errorf("staged dir: %w", err)
	}
	l, err := layoutOf(to)
	if err != nil {
		return err
	}
	if l.HasData() {
		return fmt.Errorf("%s still holds %s: move it aside first", to, strings.Join(l.Data, ", "))
	}
	if !l.Exists || (!l.Mount && !hasEntries(to)) {
		if l.Exists {
			if err := os.Remove(to); err != nil {
				return err
			}
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
		return syncDir(filepath.Dir(to))
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.Rename(filepath.Join(from, n), filepath.Join(to, n)); err != nil {
			return fmt.Errorf("move %s into %s: %w", n, to, err)
		}
	}
	if err := os.Remove(from); err != nil {
		return err
	}
	return syncDir(to)
}

func hasEntries(dir string) bool {
	ents, err := os.ReadDir(dir)
	return err == nil && len(ents) > 0
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func init() {
	modules.RegisterInternal(datadirName, datadirModule{})
	modules.RegisterProbe(datadirName, dirsProbe{})
}
