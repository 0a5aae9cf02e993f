package integration

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"filippo.io/age"

	"github.com/etcdplay/etcdplay/integration/mirror"
	"github.com/etcdplay/etcdplay/integration/s3server"
)

// s3Lab is a real S3-compatible store (versitygw) on 127.0.0.1 for one
// test, with one bucket and a credentials file.
type s3Lab struct {
	srv    *s3server.Server
	Bucket string
	Creds  string
	dir    string
}

const s3Bucket = "etcd-backups"

func startS3(t testing.TB, tls bool) *s3Lab {
	t.Helper()
	bin, err := s3server.Build(context.Background(), mirror.DefaultCacheDir())
	if err != nil {
		t.Fatalf("build the lab's S3 server: %v", err)
	}
	dir := t.TempDir()
	srv, err := s3server.Start(context.Background(), bin, dir, s3server.Options{TLS: tls})
	if err != nil {
		t.Fatalf("start the lab's S3 server: %v", err)
	}
	t.Cleanup(srv.Stop)
	if err := srv.MakeBucket(s3Bucket); err != nil {
		t.Fatal(err)
	}
	creds, err := srv.CredentialsFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &s3Lab{srv: srv, Bucket: s3Bucket, Creds: creds, dir: dir}
}

// vars is etcd_backup_s3 for this store.
func (s *s3Lab) vars(prefix string) map[string]any {
	v := map[string]any{"endpoint": s.srv.Endpoint, "bucket": s.Bucket, "prefix": prefix, "credentials_file": s.Creds}
	if s.srv.CAFile != "" {
		v["ca_file"] = s.srv.CAFile
	}
	return v
}

// objects lists the bucket's objects as the store keeps them on disk,
// relative to the bucket, sorted.
func (s *s3Lab) objects(t testing.TB) []string {
	t.Helper()
	root := filepath.Join(s.srv.Root, s.Bucket)
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// objectPath is where the store keeps an object's bytes.
func (s *s3Lab) objectPath(key string) string {
	return filepath.Join(s.srv.Root, s.Bucket, key)
}

// ageIdentity writes a fresh age identity file (0600) and returns it with
// its recipient.
func ageIdentity(t testing.TB) (file, recipient string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(t.TempDir(), "backup-key.txt")
	if err := os.WriteFile(file, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, id.Recipient().String()
}
