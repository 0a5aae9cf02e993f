package etcd_snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd/etcdclient"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

// Target is where the controller's backups of one cluster go: its
// directory in the state dir and, with etcd_backup_s3, the store.
type Target struct {
	Dir    string
	Store  *store.S3
	Config *Config
	// Spare names backups (paths or URLs, as Entry.URL gives them) that
	// retention must not remove in this run: the snapshot a restore is
	// about to push, which its own "before" snapshot would otherwise push
	// out of the retention window.
	Spare []string
}

// OpenTarget reads the backup variables and proves the store answers
// (credentials, bucket, endpoint) before anything is taken. dir "" is
// <state>/backups/<cluster>.
func OpenTarget(ctx context.Context, env *modules.Env, c *etcd.Cluster, dir string) (*Target, error) {
	cfg, err := ConfigFromVars(env.Vars)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		if env.StateDir == "" {
			return nil, errors.New("no controller state directory")
		}
		dir = Dir(env.StateDir, c)
	}
	s, err := cfg.Store(ctx, c)
	if err != nil {
		return nil, err
	}
	return &Target{Dir: dir, Store: s, Config: cfg}, nil
}

// Locations are the target's places, the controller's dir first.
func (t *Target) Locations() []store.Location {
	ls := []store.Location{store.Dir(t.Dir)}
	if t.Store != nil {
		ls = append(ls, t.Store)
	}
	return ls
}

// Describe adds the plan's lines: the snapshot, the upload, and what
// retention would remove once the new backup is in.
func (t *Target) Describe(ctx context.Context, ch *modules.Change, src etcd.Member, why string) error {
	now := time.Now().UTC()
	name := fmt.Sprintf("%s-%s-rev<revision>.db", now.Format(store.TimeLayout), src.Name)
	ch.Add("!", "snapshot "+src.Name, fmt.Sprintf("%s; stream to %s/%s, verify hash, revision and keys", why, t.Dir, name))
	if t.Store != nil {
		how := "plaintext (no etcd_backup_age_recipients)"
		if len(t.Config.Recipients) > 0 {
			how = fmt.Sprintf("encrypted with age to %d recipient(s)", len(t.Config.Recipients))
			name += store.EncryptedExt
		}
		ch.Add("+", t.Store.String()+"/"+name, "upload with its metadata, "+how)
	}
	next := store.Entry{Meta: store.Meta{Time: now, Revision: 1 << 62, Verified: true, Origin: OriginController}, HasMeta: true}
	for _, loc := range t.Locations() {
		es, err := loc.List(ctx)
		if err != nil {
			return err
		}
		_, drop := t.Config.Policy.Select(append(store.OfOrigin(es, OriginController), next))
		for _, e := range drop {
			if e.Name == "" {
				continue // the new backup itself (a clock behind older ones): Take keeps it
			}
			ch.Add("-", e.URL(), "retention: "+t.Config.Policy.String())
		}
	}
	return nil
}

// Taken is one backup the controller took and stored.
type Taken struct {
	*Backup
	// Object is the store's copy ("" without a store).
	Object string
	// Removed lists what retention removed, as URLs.
	Removed []string
	// Warning is set when a backup already there is newer than this one
	// by the times in their names (the controller's clock went back).
	Warning string
}

// Take snapshots src to the controller, uploads it when there is a store
// (encrypted when there are recipients) and applies retention to both.
// The controller's copy stays plaintext in the state dir (0700).
func (t *Target) Take(ctx context.Context, c *etcd.Cluster, src etcd.Member, stateDir string, dial etcdclient.DialFunc) (*Taken, error) {
	b, err := Save(ctx, c, src, stateDir, dial, t.Dir)
	if err != nil {
		return nil, err
	}
	out := &Taken{Backup: b}
	if t.Store != nil {
		meta, err := t.upload(ctx, b)
		if err != nil {
			return out, fmt.Errorf("snapshot %s saved, but the upload failed: %w", b.Path, err)
		}
		out.Object = t.Store.String() + "/" + meta.SnapshotName()
	}
	// Retention orders backups by the times in their names, the
	// controller's clock when each was taken. A clock that went back
	// would make the new backup the "oldest" and prune it at once: it is
	// spared, and the run says the clock is behind.
	spare := append([]string{b.Path}, t.Spare...)
	if out.Object != "" {
		spare = append(spare, out.Object)
	}
	for _, loc := range t.Locations() {
		if es, err := loc.List(ctx); err == nil {
			for _, e := range store.OfOrigin(es, OriginController) {
				if e.Time().After(b.Meta.Time) && e.URL() != out.Object {
					out.Warning = fmt.Sprintf("the controller's clock (%s) is behind backup %s, taken at %s: retention and snapshot=latest order backups by these times, so check the clock (the new backup is kept)",
						b.Meta.Time.Format(time.RFC3339), e.URL(), e.Time().Format(time.RFC3339))
				}
			}
		}
		removed, err := store.Prune(ctx, loc, OriginController, t.Config.Policy, spare...)
		for _, e := range removed {
			out.Removed = append(out.Removed, e.URL())
		}
		if err != nil {
			return out, fmt.Errorf("snapshot %s saved, but retention failed: %w", b.Path, err)
		}
	}
	return out, nil
}

func (t *Target) upload(ctx context.Context, b *Backup) (store.Meta, error) {
	return Upload(ctx, t.Store, b, t.Config.Recipients)
}

// Upload puts a saved backup into the store with its metadata, encrypted
// on the way when there are recipients (the metadata keeps the
// plaintext's sha256 and size).
func Upload(ctx context.Context, s *store.S3, b *Backup, recipients []age.Recipient) (store.Meta, error) {
	meta := b.Meta
	f, err := os.Open(b.Path)
	if err != nil {
		return meta, err
	}
	defer f.Close()
	if len(recipients) == 0 {
		return meta, s.Put(ctx, meta, f, b.Size)
	}
	meta.Encrypted = true
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(store.Encrypt(pw, f, recipients)) }()
	err = s.Put(ctx, meta, pr, -1)
	pr.CloseWithError(err)
	return meta, err
}

// Summary is the backup in one line for the run's output.
func (t *Taken) Summary() string {
	mb := float64(t.Size) / (1 << 20)
	msg := fmt.Sprintf("%s: revision %d, %d keys, %.1f MiB in %s (%.1f MiB/s)",
		t.Path, t.Revision, t.Keys, mb, t.Took.Round(time.Millisecond), mb/max(t.Took.Seconds(), 1e-6))
	if t.Object != "" {
		msg += "; uploaded " + t.Object
	}
	if len(t.Removed) > 0 {
		msg += "; removed " + strings.Join(t.Removed, ", ")
	}
	if t.Warning != "" {
		msg += "; WARNING: " + t.Warning
	}
	return msg
}

// Before is the snapshot every disruptive runbook step takes first
// (scale-in, replace-node, restore, upgrade, CA rotation): from a healthy
// follower, to the controller and the store like backup.yml, with the
// same retention, which spares the backups named in spare. The step must
// not go on when it fails.
func Before(ctx context.Context, env *modules.Env, c *etcd.Cluster, why string, spare ...string) (*Taken, error) {
	t, err := OpenTarget(ctx, env, c, "")
	if err != nil {
		return nil, fmt.Errorf("snapshot before %s: %w", why, err)
	}
	t.Spare = spare
	dial := etcdclient.Dialer(c, env)
	h, err := etcdclient.CheckHealth(ctx, c, env.StateDir, dial, etcdclient.CheckOptions{})
	if err != nil {
		return nil, fmt.Errorf("snapshot before %s: %w", why, err)
	}
	src, _, err := pickSource(c, h, "")
	if err != nil {
		return nil, fmt.Errorf("snapshot before %s: %w", why, err)
	}
	env.Logf("snapshot before %s: from %s", why, src.Name)
	taken, err := t.Take(ctx, c, src, env.StateDir, dial)
	if err != nil {
		return nil, fmt.Errorf("snapshot before %s (from %s): %w", why, src.Name, err)
	}
	env.Logf("snapshot before %s: %s", why, taken.Summary())
	return taken, nil
}

// PlanBefore is Before's part of a plan: it proves the store answers
// (so bad credentials stop the run before anything changes) and adds the
// snapshot's line.
func PlanBefore(ctx context.Context, ch *modules.Change, env *modules.Env, c *etcd.Cluster, why string) error {
	t, err := OpenTarget(ctx, env, c, "")
	if err != nil {
		return fmt.Errorf("snapshot before %s: %w", why, err)
	}
	where := t.Dir
	if t.Store != nil {
		where += " and " + t.Store.String()
	}
	ch.Add("+", "snapshot to "+where, "verified, before "+why+"; stops here if it fails")
	return nil
}
