package etcd_backup_timer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdplay/etcdplay/modules/etcd_snapshot"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

// Paths on the member.
const (
	// ScriptPath is where the timer's program is installed: etcdplay
	// itself, run as `etcdplay backup-host`.
	ScriptPath = "/usr/local/lib/etcdplay/etcdplay"
	// ConfigPath is the job's settings (HostConfig as JSON).
	ConfigPath = "/etc/etcdplay/etcd-backup.json"
	// CredentialsPath holds the store's credentials on the member, in the
	// AWS shared-credentials format, readable by the etcd user only.
	CredentialsPath = "/etc/etcdplay/s3-credentials"
	// StoreCAPath is the store endpoint's CA (etcd_backup_s3.ca_file).
	StoreCAPath = "/etc/etcdplay/s3-ca.pem"
)

// HostConfig is what one run of the timer does.
type HostConfig struct {
	Cluster  string `json:"cluster"`
	Member   string `json:"member"`
	Host     string `json:"host"`
	Endpoint string `json:"endpoint"`
	// CACert, Cert and Key are the member's own TLS files (empty without
	// client TLS).
	CACert string `json:"cacert,omitempty"`
	Cert   string `json:"cert,omitempty"`
	Key    string `json:"key,omitempty"`
	// Dir keeps the local snapshots.
	Dir string `json:"dir"`
	// Retention applies to this member's timer's backups, in Dir and in
	// the store alike.
	Retention store.Policy `json:"retention"`
	// S3 is the store (nil: local only), with CredentialsFile and CAFile
	// paths on the member.
	S3 *store.S3Config `json:"s3,omitempty"`
	// Recipients encrypt the upload (age); the local copy stays plaintext
	// in Dir (0700, the etcd user's), like the data dir itself.
	Recipients []string `json:"age_recipients,omitempty"`
	// Verify proves each snapshot restores before it is uploaded: the
	// member's etcdutl and etcd (in BinDir) restore and serve it on
	// 127.0.0.1 in a scratch dir under Dir (etcd_backup_verify).
	Verify bool   `json:"verify,omitempty"`
	BinDir string `json:"bin_dir,omitempty"`
}

// RunHost is one run of the timer, `etcdplay backup-host --config FILE`:
// snapshot, verify, metadata, upload, retention. Each step's outcome goes
// to out (the journal). Any failure is the run's failure, so the service
// shows failed and the operator's alerting sees it.
func RunHost(ctx context.Context, configPath string, out io.Writer) error {
	b, err := os.ReadFile(configPath)
	if err != nil {
		return err
	}
	var cfg HostConfig
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("%s: %w", configPath, err)
	}
	// The service's TimeoutStartSec bounds the run.
	rs, err := store.Recipients(cfg.Recipients)
	if err != nil {
		return err
	}
	var s3 *store.S3
	if cfg.S3 != nil {
		// Checked first: a store that refuses us fails the run before
		// a snapshot is taken that would only pile up locally.
		if s3, err = store.OpenS3(*cfg.S3, cfg.Cluster); err != nil {
			return err
		}
		if err := s3.Check(ctx); err != nil {
			return err
		}
	}
	cli, err := client(ctx, cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	origin := etcd_snapshot.HostOrigin(cfg.Host)
	bk, err := etcd_snapshot.SaveFrom(ctx, cli, etcd_snapshot.Source{Cluster: cfg.Cluster, Member: cfg.Member, Endpoint: cfg.Endpoint, Origin: origin}, cfg.Dir)
	if err != nil {
		return fmt.Errorf("snapshot of %s: %w", cfg.Member, err)
	}
	fmt.Fprintf(out, "snapshot %s: revision %d, %d keys, %d bytes, sha256 %s, verified\n", bk.Path, bk.Revision, bk.Keys, bk.Size, bk.SHA256)
	if cfg.Verify {
		rev, keys, err := etcd_snapshot.Prove(ctx, cfg.BinDir, bk.Path, bk.Meta, filepath.Join(cfg.Dir, ".verify"), 2*time.Minute)
		if err != nil {
			// Kept for the operator to look at, but not as a good
			// backup: retention and restores see it unverified, and it
			// is not uploaded.
			bk.Meta.Verified = false
			_ = store.Dir(cfg.Dir).PutMeta(bk.Meta)
			return fmt.Errorf("snapshot %s does not restore: %w", bk.Path, err)
		}
		fmt.Fprintf(out, "restored into a throw-away etcd on 127.0.0.1: it served revision %d with %d keys\n", rev, keys)
	}
	var errs []error
	locs := []store.Location{store.Dir(cfg.Dir)}
	if s3 != nil {
		meta, err := etcd_snapshot.Upload(ctx, s3, bk, rs)
		if err != nil {
			// Retention still runs locally: the new local copy is kept
			// whatever the policy (it is the newest).
			errs = append(errs, err)
		} else {
			fmt.Fprintf(out, "uploaded %s/%s\n", s3, meta.SnapshotName())
			locs = append(locs, s3)
		}
	}
	for _, loc := range locs {
		removed, err := store.Prune(ctx, loc, origin, cfg.Retention)
		for _, e := range removed {
			fmt.Fprintf(out, "retention (%s): removed %s\n", cfg.Retention, e.URL())
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// client connects to the member with its own certificate.
func client(ctx context.Context, cfg HostConfig) (*clientv3.Client, error) {
	cc := clientv3.Config{Endpoints: []string{cfg.Endpoint}, DialTimeout: 10 * time.Second, Context: ctx, Logger: zap.NewNop()}
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", cfg.CACert)
		}
		pair, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
		if err != nil {
			return nil, err
		}
		cc.TLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	return clientv3.New(cc)
}
