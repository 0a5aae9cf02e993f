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

// Done removes a downloaded copy once it is no longer needed.
func (f *Fetched) Done() {
	if f.Download {
		os.Remove(f.Path)
	}
}

// Fetch resolves what an operator named as a snapshot: "latest" (the
// newest backup on the controller or in the store), s3://BUCKET/KEY, or a
// file on the controller. Objects are downloaded and decrypted into the
// cluster's .fetch dir (0700) and checked against their metadata's sha256
// (of the plaintext); nothing happens on any host.
func Fetch(ctx context.Context, env *modules.Env, c *etcd.Cluster, ref string) (*Fetched, error) {
	ref = strings.TrimSpace(ref)
	cfg, err := ConfigFromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	dir := Dir(env.StateDir, c)
	switch {
	case ref == "latest":
		return fetchLatest(ctx, cfg, c, dir)
	case strings.HasPrefix(ref, "s3://"):
		if cfg.S3 == nil {
			return nil, &etcd.VarError{Var: VarS3, Msg: "snapshot=" + ref + " needs the store's endpoint and credentials: set etcd_backup_s3"}
		}
		s, name, err := store.OpenURL(ctx, *cfg.S3, ref)
		if err != nil {
			return nil, err
		}
		meta, ok := s.MetaOf(ctx, name)
		return download(ctx, cfg, s, store.Entry{Name: name, Meta: meta, HasMeta: ok, Location: s.String()}, dir)
	default:
		f := &Fetched{Path: ref, From: ref}
		if b, err := os.ReadFile(strings.TrimSuffix(strings.TrimSuffix(ref, store.EncryptedExt), ".db") + ".json"); err == nil {
			if m, err := store.ParseMeta(b); err == nil {
				f.Meta, f.HasMeta = m, true
			}
		}
		if !strings.HasSuffix(ref, store.EncryptedExt) {
			return f, nil
		}
		d := store.Dir(filepath.Dir(ref))
		return download(ctx, cfg, d, store.Entry{Name: filepath.Base(ref), Meta: f.Meta, HasMeta: f.HasMeta, Location: d.String()}, dir)
	}
}

func fetchLatest(ctx context.Context, cfg *Config, c *etcd.Cluster, dir string) (*Fetched, error) {
	var best store.Entry
	var bestLoc store.Location
	locs := []store.Location{store.Dir(dir)}
	if s, err := cfg.Store(ctx, c); err != nil {
		return nil, err
	} else if s != nil {
		locs = append(locs, s)
	}
	for _, loc := range locs {
		es, err := loc.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
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
		where := dir
		if len(locs) > 1 {
			where += " or " + locs[1].String()
		}
		return nil, fmt.Errorf("snapshot=latest: no backup in %s (run backup.yml first)", where)
	}
	if d, ok := bestLoc.(store.Dir); ok && !best.Meta.Encrypted {
		return &Fetched{Path: filepath.Join(string(d), best.Name), From: best.URL(), Meta: best.Meta, HasMeta: best.HasMeta}, nil
	}
	return download(ctx, cfg, bestLoc, best, dir)
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
