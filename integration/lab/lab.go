// Package lab boots a lab of real Debian hosts on this machine: systemd-nspawn
// containers with real systemd and sshd, each on its own 127.0.X.N loopback
// address, overlaid on one cached debootstrap image. Integration tests, the
// demo and the benchmarks deploy etcd onto these hosts over SSH exactly as
// onto remote machines, and break them (power cut, wiped disk, stopped unit,
// blocked port) to exercise recovery.
//
// Every lab has a name (its state dir /run/etcdplay-lab/<name> and the prefix
// of its machine names) and a block X (its hosts are 127.0.X.1..N), so labs
// of parallel tests never collide. Teardown kills every container, unmounts
// every overlay and removes the state dir; Cleanup does the same for labs
// left behind by a crashed run.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Options configure a lab.
type Options struct {
	// Name names the lab: its state dir and the prefix of its machine names.
	// Lowercase letters, digits and '-', at most 32 characters.
	Name string
	// Block is X of the lab's 127.0.X.0/24 block (1..254): host N listens
	// on 127.0.X.N. Parallel labs must use different blocks.
	Block int
	// Hosts is how many hosts to boot (etcd1..etcdN).
	Hosts int
	// CacheDir holds the base image; DefaultCacheDir() when empty.
	CacheDir string
	// StateRoot holds the labs' state dirs; DefaultStateRoot() when empty.
	StateRoot string
	// Vars are written as inventory variables of group all.
	Vars map[string]any
	// BootTimeout bounds how long a host may take to answer SSH (60s when 0;
	// 50 hosts boot in about 15s on 2 cores).
	BootTimeout time.Duration
}

// Host is one lab host as the inventory names it.
type Host struct {
	Name    string // inventory name: etcd1..etcdN
	Addr    string // 127.0.X.N, where its sshd (and etcd) listen
	Machine string // container machine name and hostname: <lab>-<name>
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	Name           string
	Block          int
	Dir            string // state dir: keys, known_hosts, inventory, host roots
	KeyFile        string // the lab's private key (ed25519, 0600), authorized as root on every host
	KnownHostsFile string // one line per host with its current host key
	InventoryFile  string // Ansible YAML inventory, group etcd

	opts Options
	base string

	mu      sync.Mutex
	hosts   []*hostState
	authPub ssh.PublicKey
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// DefaultStateRoot is $ETCDPLAY_LAB_STATE, or /run/etcdplay-lab.
func DefaultStateRoot() string {
	if d := os.Getenv("ETCDPLAY_LAB_STATE"); d != "" {
		return d
	}
	return "/run/etcdplay-lab"
}

// ErrNotSupported is returned when this machine cannot run a lab.
var ErrNotSupported = errors.New("lab needs root and systemd-nspawn")

func (o *Options) defaults() error {
	if !nameRE.MatchString(o.Name) {
		return fmt.Errorf("lab name %q: want [a-z0-9-], at most 32 characters", o.Name)
	}
	if o.Block < 1 || o.Block > 254 {
		return fmt.Errorf("lab %s: block %d out of range 1..254", o.Name, o.Block)
	}
	if o.Hosts < 0 || o.Hosts > 254 {
		return fmt.Errorf("lab %s: %d hosts out of range 0..254", o.Name, o.Hosts)
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.StateRoot == "" {
		o.StateRoot = DefaultStateRoot()
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 60 * time.Second
	}
	return nil
}

// New boots a lab of opts.Hosts hosts and returns when all of them answer
// SSH. It first removes whatever a crashed run left under the same name, and
// builds the base image if the cache lacks it. On error nothing is left
// running.
func New(ctx context.Context, opts Options) (*Lab, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if err := Supported(); err != nil {
		return nil, err
	}
	if err := raiseLimits(); err != nil {
		return nil, fmt.Errorf("lab %s: %w", opts.Name, err)
	}
	base, err := BaseImage(ctx, opts.CacheDir)
	if err != nil {
		return nil, err
	}
	if err := cleanupIn(opts.StateRoot, opts.Name); err != nil {
		return nil, fmt.Errorf("lab %s: leftovers of a previous run: %w", opts.Name, err)
	}
	dir := filepath.Join(opts.StateRoot, opts.Name)
	if err := os.MkdirAll(filepath.Join(dir, "hosts"), 0o700); err != nil {
		return nil, fmt.Errorf("lab %s: %w", opts.Name, err)
	}
	l := &Lab{
		Name:           opts.Name,
		Block:          opts.Block,
		Dir:            dir,
		KeyFile:        filepath.Join(dir, "id_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
		InventoryFile:  filepath.Join(dir, "inventory.yml"),
		opts:           opts,
		base:           base,
	}
	priv, pub, err := newKeyPair("etcdplay-lab-" + opts.Name)
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	l.authPub = pub
	if err := os.WriteFile(l.KeyFile, priv, 0o600); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	if err := os.WriteFile(l.KeyFile+".pub", ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	if _, err := l.AddHosts(ctx, opts.Hosts); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

// Supported reports whether this machine can run a lab (root, nspawn).
func Supported() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not running as root", ErrNotSupported)
	}
	if _, err := lookPath("systemd-nspawn"); err != nil {
		return fmt.Errorf("%w: systemd-nspawn not found (apt-get install systemd-container)", ErrNotSupported)
	}
	return nil
}

// Hosts returns the lab's hosts, etcd1 first.
func (l *Lab) Hosts() []Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	hs := make([]Host, len(l.hosts))
	for i, h := range l.hosts {
		hs[i] = h.Host
	}
	return hs
}

// Host returns the host named name (etcdN).
func (l *Lab) Host(name string) (Host, error) {
	h, err := l.host(name)
	if err != nil {
		return Host{}, err
	}
	return h.Host, nil
}

// ErrNoHost is returned for a host name the lab does not have.
var ErrNoHost = errors.New("no such lab host")

func (l *Lab) host(name string) (*hostState, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return nil, fmt.Errorf("lab %s: %q: %w", l.Name, name, ErrNoHost)
}

// AddHost boots one more host at the next address and returns it.
func (l *Lab) AddHost(ctx context.Context) (Host, error) {
	hs, err := l.AddHosts(ctx, 1)
	if err != nil {
		return Host{}, err
	}
	return hs[0], nil
}

// AddHosts boots n more hosts in parallel at the next addresses.
func (l *Lab) AddHosts(ctx context.Context, n int) ([]Host, error) {
	l.mu.Lock()
	first := len(l.hosts) + 1
	if first+n-1 > 254 {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab %s: no address left for %d more hosts", l.Name, n)
	}
	var added []*hostState
	for i := first; i < first+n; i++ {
		name := fmt.Sprintf("etcd%d", i)
		h := &hostState{
			Host: Host{
				Name:    name,
				Addr:    fmt.Sprintf("127.0.%d.%d", l.Block, i),
				Machine: l.Name + "-" + name,
			},
			dir: filepath.Join(l.Dir, "hosts", name),
		}
		l.hosts = append(l.hosts, h)
		added = append(added, h)
	}
	l.mu.Unlock()

	errs := make([]error, len(added))
	var wg sync.WaitGroup
	for i, h := range added {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.create(h)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := l.saveState(); err != nil {
		return nil, err
	}
	for i, h := range added {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.waitSSH(ctx, h, l.opts.BootTimeout)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := make([]Host, len(added))
	for i, h := range added {
		out[i] = h.Host
	}
	return out, nil
}

// create mounts, provisions and boots a new host, and records it.
func (l *Lab) create(h *hostState) error {
	if err := h.mount(l.base); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	if err := l.provision(h); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	return h.boot()
}

// provision writes what makes a host itself: identity, host key, our key.
func (l *Lab) provision(h *hostState) error {
	hostKey, err := h.provision(l.authPub)
	if err != nil {
		return err
	}
	l.mu.Lock()
	h.hostKey = hostKey
	l.mu.Unlock()
	return nil
}

// saveState records the lab on disk (for Open, `down`, and a person
// looking around) and rewrites known_hosts and the inventory.
func (l *Lab) saveState() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writeKnownHosts(); err != nil {
		return err
	}
	if err := l.writeInventory(); err != nil {
		return err
	}
	st := stateFile{Name: l.Name, Block: l.Block, Base: l.base, Vars: l.opts.Vars}
	for _, h := range l.hosts {
		st.Hosts = append(st.Hosts, stateHost{Host: h.Host, PID: h.pid()})
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(l.Dir, "lab.json"), append(raw, '\n'), 0o644)
}

type stateFile struct {
	Name  string         `json:"name"`
	Block int            `json:"block"`
	Base  string         `json:"base"`
	Vars  map[string]any `json:"vars,omitempty"`
	Hosts []stateHost    `json:"hosts"`
}

type stateHost struct {
	Host
	PID int `json:"nspawn_pid"`
}

// Open attaches to a lab booted by another process (etcdplay-lab up), as
// recorded in its state dir. Its hosts keep running when the Lab is dropped;
// Close tears them down.
func Open(stateRoot, name string) (*Lab, error) {
	if stateRoot == "" {
		stateRoot = DefaultStateRoot()
	}
	dir := filepath.Join(stateRoot, name)
	raw, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return nil, fmt.Errorf("lab %s: %w", name, err)
	}
	var st stateFile
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("lab %s: %s: %w", name, filepath.Join(dir, "lab.json"), err)
	}
	l := &Lab{
		Name:           st.Name,
		Block:          st.Block,
		Dir:            dir,
		KeyFile:        filepath.Join(dir, "id_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
		InventoryFile:  filepath.Join(dir, "inventory.yml"),
		opts:           Options{Name: st.Name, Block: st.Block, StateRoot: stateRoot, Vars: st.Vars, BootTimeout: 60 * time.Second},
		base:           st.Base,
	}
	pubRaw, err := os.ReadFile(l.KeyFile + ".pub")
	if err != nil {
		return nil, fmt.Errorf("lab %s: %w", name, err)
	}
	if l.authPub, _, _, _, err = ssh.ParseAuthorizedKey(pubRaw); err != nil {
		return nil, fmt.Errorf("lab %s: %w", name, err)
	}
	keys, err := readKnownHosts(l.KnownHostsFile)
	if err != nil {
		return nil, fmt.Errorf("lab %s: %w", name, err)
	}
	for _, sh := range st.Hosts {
		h := &hostState{Host: sh.Host, dir: filepath.Join(dir, "hosts", sh.Name), detachedPID: sh.PID, hostKey: keys[sh.Addr]}
		l.hosts = append(l.hosts, h)
	}
	return l, nil
}

// Close tears the lab down: stops every container (SIGTERM, then a power
// cut after a grace period), unmounts every overlay and removes the state
// dir. It is safe to call twice.
func (l *Lab) Close() error {
	l.mu.Lock()
	hosts := append([]*hostState(nil), l.hosts...)
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.stop(3 * time.Second)
		}()
	}
	wg.Wait()
	return cleanupIn(l.opts.StateRoot, l.Name)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
