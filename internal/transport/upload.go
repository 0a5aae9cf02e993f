package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/etcdplay/etcdplay/internal/hostfile"
	"github.com/etcdplay/etcdplay/internal/usercache"
	"github.com/klauspost/compress/gzip"
	"github.com/pkg/sftp"
)

// PlatformError is a host whose OS or architecture has no agent binary.
type PlatformError struct {
	Host     string
	Platform string // "linux/arm64"
	Have     string // the platform of the binary we have
}

func (e *PlatformError) Error() string {
	osArch := strings.ToUpper(strings.ReplaceAll(e.Platform, "/", "_"))
	return fmt.Sprintf("%s is %s but this etcdplay is built for %s: build etcdplay for %s "+
		"(GOOS=%s GOARCH=%s go build ./cmd/etcdplay) and pass it with --agent-binary %s=PATH "+
		"or ETCDPLAY_AGENT_%s=PATH",
		e.Host, e.Platform, e.Have, e.Platform,
		strings.Split(e.Platform, "/")[0], strings.Split(e.Platform, "/")[1], e.Platform, osArch)
}

// agentBin is an agent executable on the controller.
type agentBin struct {
	path     string
	sha256   string
	size     int64
	platform string // "linux/amd64"

	gzOnce  sync.Once
	gzipped func() []byte // the caller's gzip of it, if any
	gz      []byte
	gzSHA   string // of gz: what hosts check the upload against
	gzErr   error
}

// compressed is the agent gzipped, made once per process and shared by
// every host of a run: a third of the bytes to move, and gzip is on every
// Linux host (zstd would be smaller but is not). It is kept in the user's
// cache dir under the agent's digest, so only the first cold run of a
// build pays for compressing 28 MB. The default level: 11% fewer bytes
// than the fastest (11.0 MB, not 12.4) for 0.15 s more, once per build;
// level 9 saves 0.3% more for 2 s.
//
// The gzip is checked here, once per process, to unpack to the agent's
// digest; hosts then check only the gzip's own digest before they unpack
// it (gzip checks its output's CRC): half the bytes to hash on every cold
// host (13 ms of a lab host's CPU for the lean agent, 85 ms for etcdplay
// itself) for one unpack here.
func (b *agentBin) compressed() ([]byte, error) {
	b.gzOnce.Do(func() {
		b.gz, b.gzErr = b.makeCompressed()
		if b.gzErr == nil {
			b.gzErr = checkGzipped(b.gz, b.sha256)
		}
		if b.gzErr != nil {
			b.gz = nil
			return
		}
		sum := sha256.Sum256(b.gz)
		b.gzSHA = hex.EncodeToString(sum[:])
	})
	return b.gz, b.gzErr
}

// checkGzipped reports whether gz unpacks to content with digest sha.
func checkGzipped(gz []byte, sha string) error {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return fmt.Errorf("the gzipped agent: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		return fmt.Errorf("the gzipped agent: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("the gzipped agent unpacks to sha256 %s, want %s: the agent file changed since it was read; run again", got, sha)
	}
	return nil
}

func (b *agentBin) makeCompressed() ([]byte, error) {
	if b.gzipped != nil {
		return b.gzipped(), nil
	}
	cached := agentCachePath(b.sha256)
	if gz, ok := readCachedAgent(cached); ok {
		return gz, nil
	}
	f, err := os.Open(b.path)
	if err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if _, err := io.Copy(w, f); err != nil {
		return nil, fmt.Errorf("agent binary %s: %w", b.path, err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := checkGzipped(buf.Bytes(), b.sha256); err != nil {
		return nil, err // not cached
	}
	writeCachedAgent(cached, buf.Bytes())
	return buf.Bytes(), nil
}

// agentCachePath is where the gzipped agent with digest sha is kept, or ""
// when the user has no cache dir.
func agentCachePath(sha string) string {
	dir := usercache.Dir()
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "agent-"+sha+".gz")
}

// readCachedAgent returns a cached gzipped agent if it is whole: the file
// ends with the SHA-256 of what precedes it, so a truncated or edited copy
// is made again instead of failing on every host's digest check.
func readCachedAgent(p string) ([]byte, bool) {
	if p == "" {
		return nil, false
	}
	b, err := os.ReadFile(p)
	if err != nil || len(b) < sha256.Size {
		return nil, false
	}
	gz, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(gz); !bytes.Equal(got[:], sum) {
		return nil, false
	}
	return gz, true
}

// writeCachedAgent keeps gz for the next run; the cache is an optimisation,
// so failing to write it is not an error.
func writeCachedAgent(p string, gz []byte) {
	if p == "" {
		return
	}
	sum := sha256.Sum256(gz)
	if hostfile.WriteAtomic(p, append(gz[:len(gz):len(gz)], sum[:]...), 0o600, -1, -1) != nil {
		return
	}
	// Keep the few newest builds' agents, not one per build ever run.
	usercache.Prune(filepath.Dir(p), "agent-*.gz", keepCachedAgents, p)
}

const keepCachedAgents = 3

// AgentFile is an agent executable. SHA256, when set, is its digest as
// the caller verified it (etcdplay's embedded lean agent), so no run
// hashes it again; Gzipped, when set, gives the file gzipped, sent to
// cold hosts as it is (called only when a host needs the agent).
type AgentFile struct {
	Path    string
	SHA256  string
	Gzipped func() []byte
}

func (b *agentBin) remoteName() string { return "etcdplay-agent-" + b.sha256[:16] }

var (
	binMu    sync.Mutex
	binCache = map[string]*agentBin{}
)

// loadAgentBin hashes an agent executable once per process (it is tens of
// megabytes; every host of a run shares the result).
func loadAgentBin(p string) (*agentBin, error) { return loadAgentFile(AgentFile{Path: p}) }

// loadAgentFile is loadAgentBin for a file whose digest may be known
// already: then it costs a stat and the ELF header, not a hash. A file
// changed since its digest was taken fails on the host, whose copy is
// checked against it after every upload.
func loadAgentFile(af AgentFile) (*agentBin, error) {
	st, err := os.Stat(af.Path)
	if err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d\x00%s", af.Path, st.Size(), st.ModTime().UnixNano(), af.SHA256)
	binMu.Lock()
	defer binMu.Unlock()
	if b := binCache[key]; b != nil {
		return b, nil
	}
	f, err := os.Open(af.Path)
	if err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	defer f.Close()
	b := &agentBin{path: af.Path, sha256: af.SHA256, size: st.Size(), platform: binaryPlatform(f)}
	if b.sha256 == "" {
		h := sha256.New()
		if b.size, err = io.Copy(h, f); err != nil {
			return nil, fmt.Errorf("agent binary %s: %w", af.Path, err)
		}
		b.sha256 = hex.EncodeToString(h.Sum(nil))
	}
	b.gzipped = af.Gzipped
	binCache[key] = b
	return b, nil
}

var elfArch = map[elf.Machine]string{
	elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_386: "386", elf.EM_ARM: "arm",
	elf.EM_PPC64: "ppc64le", elf.EM_S390: "s390x", elf.EM_RISCV: "riscv64", elf.EM_LOONGARCH: "loong64",
}

// binaryPlatform reads "linux/<arch>" from an ELF header; a non-ELF
// binary is taken to be for the controller's own platform.
func binaryPlatform(r io.ReaderAt) string {
	f, err := elf.NewFile(r)
	if err != nil {
		return runtime.GOOS + "/" + runtime.GOARCH
	}
	if a, ok := elfArch[f.Machine]; ok {
		return "linux/" + a
	}
	return "linux/" + strings.ToLower(f.Machine.String())
}

// unamePlatform maps `uname -sm` output to GOOS/GOARCH.
func unamePlatform(s string) string {
	f := strings.Fields(s)
	if len(f) != 2 {
		return "unknown/" + s
	}
	osName := strings.ToLower(f[0])
	arch := f[1]
	switch arch {
	case "x86_64", "amd64":
		arch = "amd64"
	case "aarch64", "arm64":
		arch = "arm64"
	case "i386", "i486", "i586", "i686":
		arch = "386"
	case "armv6l", "armv7l", "armv8l":
		arch = "arm"
	}
	return osName + "/" + arch
}

// agentBinFor picks the agent executable for a host platform.
func agentBinFor(o *ConnectOptions, host, platform string, native *agentBin) (*agentBin, error) {
	if native != nil && native.platform == platform {
		return native, nil
	}
	p := o.AgentBinaries[platform]
	if p == "" {
		p = os.Getenv("ETCDPLAY_AGENT_" + strings.ToUpper(strings.NewReplacer("/", "_", "-", "_").Replace(platform)))
	}
	if p == "" {
		have := runtime.GOOS + "/" + runtime.GOARCH
		if native != nil {
			have = native.platform
		}
		return nil, &PlatformError{Host: host, Platform: platform, Have: have}
	}
	b, err := loadAgentBin(p)
	if err != nil {
		return nil, err
	}
	if b.platform != platform {
		return nil, fmt.Errorf("%s is %s but the agent binary %s is built for %s", host, platform, p, b.platform)
	}
	return b, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// probe is what one shell command tells us about the host before the
// agent runs.
type probe struct {
	platform string
	home     string
	uid, gid int
	dir      string // where agent binaries live, absolute
	// existing agent file: size, owner, mode; size -1 when absent.
	size, owner int64
	mode        uint32
	// gunzip: the host has gzip and sha256sum, so the agent can be sent
	// compressed and checked before it is moved into place.
	gunzip bool
}

// probeCommand is the one shell command a connect usually needs. It
// prints one header line (platform, login user, the state of the agent
// file, whether the host can unpack a compressed upload) and, when the
// agent file is there and trustworthy, execs the agent in the same
// session, so a warm connect costs a single session.
//
// Trustworthy: the right size under its content-hash name, owned by us or
// root, writable by nobody else (the checks of probe.reusable), and its
// content hashes to the agent's sha256. Hashing tens of megabytes on every
// connect would cost more than the rest of a warm run, so a verified file
// gets a stamp beside it: its inode, size and change time (to the
// nanosecond). Any write or replacement changes the change time, and only
// the owner of the private directory can write the stamp; a file whose
// stamp does not match is hashed again before it runs.
//
// Every program the script starts costs a busy host milliseconds (8 ms
// each on a lab host), on every connect: a warm probe starts one, a stat
// of /proc/self and of the agent file. /proc/self is that stat process,
// which runs as the login user, so its owner is our uid and gid; where it
// is missing (no procfs) id(1) says instead. The stamp is read by the
// shell itself, and uname(1) runs only when the agent must be sent (a
// started agent reports its own platform: "-" stands for it).
func probeCommand(dirExpr, name string, b *agentBin, sudo string) string {
	return `d=` + dirExpr + `; f="$d/` + name + `"; x=no; z=no; s=missing; m=-
set -- $(stat -c '%u %g %s %a %i %z' -- /proc/self "$f" 2>/dev/null)
if [ $# -ge 8 ] && [ "$3" = 0 ]; then u=$1; g=$2; shift 8; else u=$(id -u); g=$(id -g); set --; fi
if [ $# = 8 ]; then s="$3 $1 $4"; fi
if [ "$s" != missing ] && [ "$3" = ` + strconv.FormatInt(b.size, 10) + ` ] && { [ "$1" = "$u" ] || [ "$1" = 0 ]; }; then
case "$4" in *[1357][0145][0145])
v="$5 $3 $6 $7 $8"; o=
{ read -r o < "$f.ok"; } 2>/dev/null
if [ "$o" = "$v" ]; then x=yes
else h=$(sha256sum < "$f") && [ "${h%% *}" = ` + b.sha256 + ` ] && { printf '%s\n' "$v" > "$f.ok"; x=yes; }
fi;;
esac
fi
if [ "$x" = no ]; then m=$(uname -sm); command -v gzip >/dev/null 2>&1 && command -v sha256sum >/dev/null 2>&1 && install -d -m 700 "$HOME/` + stageSubdir + `" 2>/dev/null && z=yes; fi
printf '` + probeMagic + `\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$HOME" "$d" "$u" "$g" "$s" "$x" "$z"
if [ "$x" = yes ]; then exec ` + sudo + `"$f" agent; fi
c=; while IFS= read -r l && [ "$l" != ` + probeEnd + ` ]; do c="$c$l
"; done; eval "$c"`
}

// probeEnd ends the script a cold host's probe reads from its stdin (the
// agent's unpack and start; see Conn.continueProbe). read takes a byte
// at a time from a pipe, so nothing after it is consumed: the agent
// reads its requests from the same stdin.
const probeEnd = probeMagic + "-end"

const probeMagic = "etcdplay-probe"

// stageSubdir is the login user's staging directory under $HOME. A cold
// host's probe makes it (0700) before it says the gzipped upload can go
// ahead: four SFTP round trips fewer than making it over SFTP.
const stageSubdir = ".cache/etcdplay/stage"

// IsProbe reports whether an exec request's command is the transport's
// probe script (the session that becomes the agent's).
func IsProbe(command string) bool { return strings.Contains(command, probeMagic) }

// InstalledAgentHeader is the header line the probe prints on a host
// whose agent (agentSize bytes, root-owned, mode 0755) is installed in dir
// and verified, just before the script execs it: what a
// simulated host (integration/fleetsim) answers before it serves the
// agent protocol itself.
func InstalledAgentHeader(home, dir string, uid, gid int, agentSize int64) string {
	return fmt.Sprintf("%s\t-\t%s\t%s\t%d\t%d\t%d 0 755\tyes\tyes\n", probeMagic, home, dir, uid, gid, agentSize)
}

// parseProbe reads the header line probeCommand prints. started reports
// whether the agent was exec'd after it.
func parseProbe(line string) (p *probe, started bool, err error) {
	f := strings.Split(strings.TrimRight(line, "\n"), "\t")
	if len(f) != 9 || f[0] != probeMagic {
		return nil, false, fmt.Errorf("probing host: unexpected output %q", line)
	}
	p = &probe{home: f[2], dir: f[3], size: -1, gunzip: f[8] == "yes"}
	if f[1] != "-" {
		p.platform = unamePlatform(f[1])
	}
	if p.uid, err = strconv.Atoi(f[4]); err != nil {
		return nil, false, fmt.Errorf("probing host: id -u: %q", f[4])
	}
	if p.gid, err = strconv.Atoi(f[5]); err != nil {
		return nil, false, fmt.Errorf("probing host: id -g: %q", f[5])
	}
	if st := strings.Fields(f[6]); len(st) == 3 {
		size, e1 := strconv.ParseInt(st[0], 10, 64)
		owner, e2 := strconv.ParseInt(st[1], 10, 64)
		mode, e3 := strconv.ParseUint(st[2], 8, 32)
		if e1 == nil && e2 == nil && e3 == nil {
			p.size, p.owner, p.mode = size, owner, uint32(mode)
		}
	}
	return p, f[7] == "yes", nil
}

// reusable reports whether the file the probe found can be trusted as our
// agent: the right size under its content-hash name, executable, owned by
// us or root, and writable by nobody else (so no other user of a shared
// directory can have planted it). The probe also checks its hash.
func (p *probe) reusable(b *agentBin) bool {
	return p.size == b.size && (p.owner == int64(p.uid) || p.owner == 0) &&
		p.mode&0o022 == 0 && p.mode&0o100 != 0
}

func randName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sftpPut writes r to dst through a temp file in the same directory, then
// renames it into place, so dst is never seen half-written. uid/gid >= 0
// set the owner (used when preserving an existing file's owner as root).
// A durable file is fsynced before the rename; a staged one, read once and
// removed within the same run, is not worth a flush of its bytes.
func sftpPut(ctx context.Context, c *sftp.Client, r io.Reader, dst string, mode uint32, uid, gid int, durable bool) (err error) {
	tmp := path.Join(path.Dir(dst), "."+path.Base(dst)+".etcdplay-"+randName())
	f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("upload %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			_ = c.Remove(tmp)
		}
	}()
	if err = f.Chmod(os.FileMode(mode) & os.ModePerm); err != nil {
		return fmt.Errorf("upload %s: chmod: %w", dst, err)
	}
	if _, err = f.ReadFrom(ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("upload %s: %w", dst, explainFull(c, tmp, err))
	}
	if uid >= 0 && gid >= 0 {
		if err = f.Chown(uid, gid); err != nil {
			return fmt.Errorf("upload %s: chown: %w", dst, err)
		}
	}
	// fsync@openssh.com: not every server has it; the rename is then
	// only as durable as the server makes it.
	if durable {
		if serr := f.Sync(); serr != nil && !isUnsupported(serr) {
			err = fmt.Errorf("upload %s: fsync: %w", dst, serr)
			return err
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("upload %s: %w", dst, explainFull(c, tmp, err))
	}
	if err = c.PosixRename(tmp, dst); err != nil {
		return fmt.Errorf("upload %s: rename: %w", dst, err)
	}
	return nil
}

// explainFull says "no space left on device" for a write that failed on a
// full filesystem: SFTP (version 3) reports ENOSPC as a bare "Failure",
// which tells an operator nothing. It asks the server for the
// filesystem's free space (statvfs@openssh.com) while the partial file
// still holds its share.
func explainFull(c *sftp.Client, file string, err error) error {
	var se *sftp.StatusError
	if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxFailure {
		return err
	}
	st, serr := c.StatVFS(path.Dir(file))
	if serr != nil {
		return err
	}
	if free := st.Frsize * st.Bavail; free < 1<<20 {
		return fmt.Errorf("no space left on device: %d KiB free on the filesystem of %s, which holds %d MiB (%w)", free>>10, path.Dir(file), st.TotalSpace()>>20, err)
	}
	return err
}

func isUnsupported(err error) bool {
	var se *sftp.StatusError
	if errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported {
		return true
	}
	return errors.Is(err, sftp.ErrSSHFxOpUnsupported)
}

// ctxReader stops a long copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Size is what pkg/sftp's File.ReadFrom needs to keep writes in flight
// (up to writesInFlight): from a reader it cannot size it sends one 32 KB
// write per round trip, 0.6 MB/s over a 50 ms link to a bastion. -1, for
// a reader of unknown length, asks for the most in flight.
func (c ctxReader) Size() int64 {
	if n := sizeOf(c.r); n > 0 {
		return n
	}
	return -1
}

// unpackCommand unpacks the gzipped agent staged at gz into dir once the
// gzip's sha256 is gzSHA (the controller checked that it unpacks to the
// agent: agentBin.compressed), and stamps it as verified for the next
// probe. The staging directory is the login user's and 0700, so nobody
// else can swap the file between its check and its unpack; a corrupted
// unpack fails gzip's own CRC check, and nothing half-written is moved
// into place. The agent directory is private: created 0700, refused when
// it is a symlink or another user's: test's -O answers in the shell,
// and only a directory it does not call ours costs a stat(1), to allow
// root's (a test that errs takes that path too). The staged file goes
// whatever happens.
func unpackCommand(dir, name, gzSHA, gz string) string {
	return `set -e; umask 077; d=` + shellQuote(dir) + `; f="$d/` + name + `"; z=` + shellQuote(gz) + `; t=
trap 'rm -f -- "$z" ${t:+"$t"}' EXIT
if [ -L "$d" ]; then echo "$d is a symlink: refusing to put the agent there" >&2; exit 1; fi
[ -d "$d" ] || mkdir -p "$d"
if [ -O "$d" ]; then :; else o=$(stat -c %u -- "$d"); if [ "$o" != 0 ]; then echo "$d belongs to uid $o: refusing to put the agent there" >&2; exit 1; fi; fi
h=$(sha256sum < "$z"); if [ "${h%% *}" != ` + gzSHA + ` ]; then echo "the gzipped agent arrived with sha256 ${h%% *}, want ` + gzSHA + `" >&2; exit 1; fi
t="$d/.` + name + `.$$"
gzip -dc < "$z" > "$t"
chmod 0755 "$t"; mv -f -- "$t" "$f"; t=
stat -c '%i %s %z' -- "$f" > "$f.ok"`
}

// sendAgent stages the agent gzipped in the login user's staging dir
// over SFTP and returns the script that unpacks it into dir, which the
// probe session runs (Conn.continueProbe): no session of its own. SFTP
// rather than the exec session's stdin: its writes in flight are ours to
// bound (writesInFlight), while a session's stdin fills sshd's 2 MB
// window, and sshd then spends more CPU moving its buffer than gzip
// spends unpacking (12 MB to three lab hosts: 2.1 s streamed).
func (c *Conn) sendAgent(ctx context.Context, b *agentBin) (string, error) {
	gz, err := b.compressed()
	if err != nil {
		return "", err
	}
	sc, err := c.staging()
	if err != nil {
		return "", err
	}
	// Named per upload: two runs (or two connections of one run) starting
	// on a host at once each unpack, and remove, their own copy.
	staged := path.Join(c.stageDir(), b.remoteName()+"."+randName()+".gz")
	if err := sftpPut(ctx, sc, withProgress(bytes.NewReader(gz), "agent", int64(len(gz)), c.opts.OnProgress), staged, 0o600, -1, -1, false); err != nil {
		return "", fmt.Errorf("uploading agent: %w", err)
	}
	return unpackCommand(c.probe.dir, b.remoteName(), b.gzSHA, staged), nil
}

// installAgent uploads b into dir unless the probe found it there already:
// over SFTP uncompressed, for hosts without gzip or sha256sum.
func installAgent(ctx context.Context, c *sftp.Client, dir string, b *agentBin, uid int, report func(Transfer)) error {
	dst := path.Join(dir, b.remoteName())
	if st, err := c.Stat(dst); err == nil {
		p := &probe{uid: uid, size: st.Size(), mode: uint32(st.Mode().Perm()), owner: -1}
		if fs, ok := st.Sys().(*sftp.FileStat); ok {
			p.owner = int64(fs.UID)
		}
		if p.reusable(b) {
			return nil
		}
	}
	if err := c.MkdirAll(dir); err != nil {
		return fmt.Errorf("agent dir %s: %w", dir, err)
	}
	f, err := os.Open(b.path)
	if err != nil {
		return fmt.Errorf("agent binary: %w", err)
	}
	defer f.Close()
	if err := sftpPut(ctx, c, withProgress(f, "agent", b.size, report), dst, 0o755, -1, -1, true); err != nil {
		return fmt.Errorf("uploading agent: %w", err)
	}
	return nil
}

// progressMin is the smallest transfer worth a progress line: below it a
// transfer is over before anyone reads the line.
const progressMin = 4 << 20

// progressReader reports how much of r has been read: once as it
// starts (so a terminal shows what is being sent even when it is over
// before the first tick), at most every progressEvery, and once at the
// end, when the total is large enough.
type progressReader struct {
	r        io.Reader
	t        Transfer
	report   func(Transfer)
	lastSent time.Time
	started  bool
	finished bool
}

const progressEvery = 500 * time.Millisecond

// withProgress wraps r when report is set and total is worth reporting.
func withProgress(r io.Reader, what string, total int64, report func(Transfer)) io.Reader {
	if report == nil || total < progressMin {
		return r
	}
	return &progressReader{r: r, t: Transfer{What: what, Total: total}, report: report, lastSent: time.Now()}
}

func (p *progressReader) Read(b []byte) (int, error) {
	if !p.started {
		p.started = true
		p.report(p.t)
	}
	n, err := p.r.Read(b)
	p.t.Done += int64(n)
	switch {
	case p.finished:
	case p.t.Done >= p.t.Total || err != nil:
		p.finished = true
		p.report(p.t)
	case time.Since(p.lastSent) >= progressEvery:
		p.lastSent = time.Now()
		p.report(p.t)
	}
	return n, err
}

// sizeOf is how many bytes r will yield, when it can tell (a file, an
// in-memory reader), or 0.
func sizeOf(r io.Reader) int64 {
	switch v := r.(type) {
	case interface{ Len() int }:
		return int64(v.Len())
	case *progressReader:
		return v.t.Total - v.t.Done
	case *os.File:
		if st, err := v.Stat(); err == nil && st.Mode().IsRegular() {
			off, _ := v.Seek(0, io.SeekCurrent)
			return st.Size() - off
		}
	}
	return 0
}

// Transfer is the state of one transfer to a host: what is sent (the
// agent, or a file's destination path) and bytes sent of the total.
type Transfer struct {
	What  string `json:"what"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
}
