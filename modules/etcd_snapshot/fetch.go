package etcd_snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

// Fetched is a snapshot ready to restore or verify: a plaintext file on
// the controller.
type Fetched struct {
	// Path is the plaintext snapshot on the controller.
	Path string
	// From is where it came from, as the operator would name it.
	From string
	// Meta is its metadata when there was any.
	Meta    store.Meta
	HasMeta bool
	// Download says Path is a copy fetched or decrypted for this run, in
	// the cluster's .fetch dir; Done removes it.
	Download bool
}

// Names are the names retention knows the snapshot by (Target.Spare).
func (f *Fetched) Names() []string { return []string{f.From, f.Path} }

// Done removes a downloaded copy once it is no longer needed.
func (f *Fetched) Done() {
	if f.Download {
		os.Remove(f.Path)
	}
}

// Located is a snapshot found but not yet fetched.
type Located struct {
	cfg   *Config
	dir   string // the cluster's controller backup dir
	loc   store.Location
	entry store.Entry
	// local is a plaintext file on the controller, used as it is.
	local string
}

// From names the snapshot as an operator would.
func (l *Located) From() string {
	if l.local != "" {
		return l.local
	}
	return l.entry.URL()
}

// Encrypted says fetching it needs etcd_backup_age_identity.
func (l *Located) Encrypted() bool {
	return l.local == "" && strings.HasSuffix(l.entry.Name, store.EncryptedExt)
}

// Meta is the snapshot's metadata, when it has any.
func (l *Located) Meta() (store.Meta, bool) { return l.entry.Meta, l.entry.HasMeta }

// Fetch resolves what an operator named as a snapshot and fetches it: see
// Locate, then Located.Fetch.
func Fetch(ctx context.Context, env *modules.Env, c *etcd.Cluster, ref string) (*Fetched, error) {
	l, err := Locate(ctx, env, c, ref)
	if err != nil {
		return nil, err
	}
	return l.Fetch(ctx)
}

// Locate resolves what an operator named as a snapshot: "latest" (the
// newest backup on the controller or in the store), s3://BUCKET/KEY, or a
// file on the controller (.db, or .db.age). It reads listings and
// metadata only; an encrypted snapshot's identity is checked here, so a
// missing or unreadable one stops a run before anything happens.
func Locate(ctx context.Context, env *modules.Env, c *etcd.Cluster, ref string) (*Located, error) {
	ref = strings.TrimSpace(ref)
	cfg, err := ConfigFromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	l := &Located{cfg: cfg, dir: Dir(env.StateDir, c)}
	switch {
	case ref == "latest":
		if err := l.latest(ctx, c); err != nil {
			return nil, err
		}
	case strings.HasPrefix(ref, "s3://"):
		if cfg.S3 == nil {
			return nil, &etcd.VarError{Var: VarS3, Msg: "snapshot=" + ref + " needs the store's endpoint and credentials: set etcd_backup_s3"}
		}
		s, name, err := store.OpenURL(ctx, *cfg.S3, ref)
		if err != nil {
			return nil, err
		}
		meta, ok := s.MetaOf(ctx, name)
		l.loc, l.entry = s, store.Entry{Name: name, Meta: meta, HasMeta: ok, Location: s.String()}
	default:
		var meta store.Meta
		var ok bool
		if b, err := os.ReadFile(strings.TrimSuffix(strings.TrimSuffix(ref, store.EncryptedExt), ".db") + ".json"); err == nil {
			meta, err = store.ParseMeta(b)
			ok = err == nil
		}
		d := store.Dir(filepath.Dir(ref))
		l.loc, l.entry = d, store.Entry{Name: filepath.Base(ref), Meta: meta, HasMeta: ok, Location: d.String()}
		if !strings.HasSuffix(ref, store.EncryptedExt) {
			l.local = ref
		}
	}
	if l.Encrypted() {
		if _, err := cfg.Identities(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Fetch makes the snapshot a plaintext file on the controller: as it is
// for a local plaintext file, else downloaded and decrypted into the
// cluster's .fetch dir (0700) and checked against its metadata's sha256
// (of the plaintext). Nothing happens on any host.
func (l *Located) Fetch(ctx context.Context) (*Fetched, error) {
	if l.local != "" {
		return &Fetched{Path: l.local, From: l.local, Meta: l.entry.Meta, HasMeta: l.entry.HasMeta}, nil
	}
	return download(ctx, l.cfg, l.loc, l.entry, l.dir)
}

func (l *Located) latest(ctx context.Context, c *etcd.Cluster) error {
	var best store.Entry
	var bestLoc store.Location
	locs := []store.Location{store.Dir(l.dir)}
	if s, err := l.cfg.Store(ctx, c); err != nil {
		return err
	} else if s != nil {
		locs = append(locs, s)
	}
	for _, loc := range locs {
		es, err := loc.List(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", loc, err)
		}
		for _, e := range es {
			// Later locations win only when strictly newer: the
			// controller's plaintext copy needs no download.
			if bestLoc == nil || e.Time().After(best.Time()) {
				best, bestLoc = e, loc
			}
		}
	}
	if bestLoc == nil {
		where := l.dir
		if len(locs) > 1 {
			where += " or " + locs[1].String()
		}
		return fmt.Errorf("snapshot=latest: no backup in %s (run backup.yml first)", where)
	}
	l.loc, l.entry = bestLoc, best
	if d, ok := bestLoc.(store.Dir); ok && !best.Meta.Encrypted && !strings.HasSuffix(best.Name, store.EncryptedExt) {
		l.local = filepath.Join(string(d), best.Name)
	}
	return nil
}

// download copies a snapshot out of a location into dir/.fetch, decrypting
// it when it is encrypted, and checks the plaintext's sha256 against the
// metadata.
func download(ctx context.Context, cfg *Config, loc store.Location, e store.Entry, dir string) (*Fetched, error) {
	encrypted := strings.HasSuffix(e.Name, store.EncryptedExt)
	var dec func(io.Writer, io.Reader) error
	if encrypted {
		ids, err := cfg.Identities()
		if err != nil {
			return nil, err
		}
		dec = func(w io.Writer, r io.Reader) error { return store.Decrypt(w, r, ids, cfg.Identity) }
	}
	fetchDir := filepath.Join(dir, ".fetch")
	if err := os.MkdirAll(fetchDir, 0o700); err != nil {
		return nil, err
	}
	out := &Fetched{Path: filepath.Join(fetchDir, strings.TrimSuffix(e.Name, store.EncryptedExt)), From: e.URL(), Meta: e.Meta, HasMeta: e.HasMeta, Download: true}
	rc, err := loc.Open(ctx, e.Name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	h := sha256.New()
	pr, pw := io.Pipe()
	go func() {
		var err error
		if dec != nil {
			err = dec(pw, rc)
		} else {
			_, err = io.Copy(pw, rc)
		}
		pw.CloseWithError(err)
	}()
	if err := store.WriteFile(out.Path, io.TeeReader(pr, h)); err != nil {
		pr.CloseWithError(err)
		return nil, fmt.Errorf("fetch %s: %w", e.URL(), err)
	}
	if e.HasMeta && e.Meta.SHA256 != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != e.Meta.SHA256 {
			os.Remove(out.Path)
			return nil, fmt.Errorf("%s is damaged: its content has sha256 %s, its metadata says %s (truncated or altered in the store)", e.URL(), got, e.Meta.SHA256)
		}
	}
	return out, nil
}
