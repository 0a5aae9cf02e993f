package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config is an S3-compatible bucket (etcd_backup_s3). Credentials come
// from CredentialsFile (the AWS shared-credentials format, profile
// Profile or "default") or else from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY in the environment; they are never printed.
type S3Config struct {
	// Endpoint is https://host[:port] (http:// for a store without TLS).
	Endpoint        string `json:"endpoint" yaml:"endpoint"`
	Bucket          string `json:"bucket" yaml:"bucket"`
	Prefix          string `json:"prefix,omitempty" yaml:"prefix"`
	Region          string `json:"region,omitempty" yaml:"region"`
	CAFile          string `json:"ca_file,omitempty" yaml:"ca_file"`
	CredentialsFile string `json:"credentials_file,omitempty" yaml:"credentials_file"`
	Profile         string `json:"profile,omitempty" yaml:"profile"`
}

// Validate checks the fields that need no network.
func (c S3Config) Validate() error {
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("endpoint %q must be https://HOST[:PORT] (or http:// for a store without TLS)", c.Endpoint)
	}
	if c.Bucket == "" || strings.ContainsAny(c.Bucket, "/ ") {
		return fmt.Errorf("bucket %q must be a bucket name (no '/')", c.Bucket)
	}
	if c.CAFile != "" && u.Scheme != "https" {
		return fmt.Errorf("ca_file is set but endpoint %s is not https", c.Endpoint)
	}
	return nil
}

// S3 is a bucket prefix holding one cluster's backups.
type S3 struct {
	cfg    S3Config
	bucket string
	prefix string // "" or ends with "/"
	cli    *minio.Client
}

// OpenS3 makes a client for the cluster's backups under
// <prefix>/<cluster>/ in the bucket. It does not talk to the store; Check
// does.
func OpenS3(cfg S3Config, cluster string) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.Endpoint)
	creds, err := s3Credentials(cfg)
	if err != nil {
		return nil, err
	}
	tr, err := s3Transport(cfg)
	if err != nil {
		return nil, err
	}
	cli, err := minio.New(u.Host, &minio.Options{
		Creds:     creds,
		Secure:    u.Scheme == "https",
		Region:    cfg.Region,
		Transport: tr,
		// One attempt per call: a store that is down should say so now,
		// not after minutes of retries in the middle of a run.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", cfg.Endpoint, err)
	}
	prefix := strings.Trim(path.Join(strings.Trim(cfg.Prefix, "/"), cluster), "/")
	if prefix != "" {
		prefix += "/"
	}
	return &S3{cfg: cfg, bucket: cfg.Bucket, prefix: prefix, cli: cli}, nil
}

func s3Credentials(cfg S3Config) (*credentials.Credentials, error) {
	if cfg.CredentialsFile != "" {
		if _, err := ReadCredentialsFile(cfg.CredentialsFile, cfg.Profile); err != nil {
			return nil, err
		}
		return credentials.NewFileAWSCredentials(cfg.CredentialsFile, profileOr(cfg.Profile)), nil
	}
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" || os.Getenv("AWS_SECRET_ACCESS_KEY") == "" {
		return nil, errors.New("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or credentials_file (AWS shared-credentials format, mode 0600)")
	}
	return credentials.NewEnvAWS(), nil
}

func profileOr(p string) string {
	if p == "" {
		return "default"
	}
	return p
}

// ReadCredentialsFile reads an access key pair from a file in the AWS
// shared-credentials format, refusing one that others can read.
func ReadCredentialsFile(file, profile string) (credentials.Value, error) {
	st, err := os.Stat(file)
	if err != nil {
		return credentials.Value{}, fmt.Errorf("credentials_file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return credentials.Value{}, fmt.Errorf("credentials_file %s is readable by others (mode %04o): chmod 600 it", file, st.Mode().Perm())
	}
	v, err := credentials.NewFileAWSCredentials(file, profileOr(profile)).GetWithContext(&credentials.CredContext{})
	if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		return credentials.Value{}, fmt.Errorf("credentials_file %s has no aws_access_key_id and aws_secret_access_key in profile [%s]", file, profileOr(profile))
	}
	return v, nil
}

func s3Transport(cfg S3Config) (http.RoundTripper, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return tr, nil
}

func (s *S3) String() string { return "s3://" + s.bucket + "/" + strings.TrimSuffix(s.prefix, "/") }

// Check reaches the store and the bucket, and turns the store's answer
// into what to fix.
func (s *S3) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	ok, err := s.cli.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.explain(err)
	}
	if !ok {
		return fmt.Errorf("s3 %s: bucket %q does not exist: create it (or fix etcd_backup_s3.bucket)", s.cfg.Endpoint, s.bucket)
	}
	return nil
}

// explain says what an S3 error means for the operator.
func (s *S3) explain(err error) error {
	code := minio.ToErrorResponse(err).Code
	switch code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidSecretKey", "InvalidToken", "ExpiredToken":
		return fmt.Errorf("s3 %s: the store refused the credentials (%s): check the access key and secret (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or etcd_backup_s3.credentials_file)", s.cfg.Endpoint, code)
	case "NoSuchBucket":
		return fmt.Errorf("s3 %s: bucket %q does not exist: create it (or fix etcd_backup_s3.bucket)", s.cfg.Endpoint, s.bucket)
	case "":
		var uerr *url.Error
		if errors.As(err, &uerr) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("s3 %s: cannot reach the store: %v (check etcd_backup_s3.endpoint and the network)", s.cfg.Endpoint, err)
		}
	}
	return fmt.Errorf("s3 %s: %w", s.cfg.Endpoint, err)
}

// List reads the prefix: snapshots, then the metadata of each.
func (s *S3) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	metas := map[string]bool{}
	var snaps []minio.ObjectInfo
	for o := range s.cli.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix}) {
		if o.Err != nil {
			return nil, s.explain(o.Err)
		}
		name := strings.TrimPrefix(o.Key, s.prefix)
		if strings.HasSuffix(name, ".json") {
			metas[strings.TrimSuffix(name, ".json")] = true
			continue
		}
		snaps = append(snaps, o)
	}
	for _, o := range snaps {
		name := strings.TrimPrefix(o.Key, s.prefix)
		p, ok := parseName(name)
		if !ok {
			continue
		}
		e := Entry{Name: name, Size: o.Size, Location: s.String(), Meta: fromName(p)}
		if metas[p.Base] {
			if m, err := s.readMeta(ctx, p.Base+".json"); err == nil {
				e.Meta, e.HasMeta = m, true
			}
		}
		out = append(out, e)
	}
	sortOldestFirst(out)
	return out, nil
}

func (s *S3) readMeta(ctx context.Context, name string) (Meta, error) {
	obj, err := s.cli.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return Meta{}, s.explain(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, 1<<20))
	if err != nil {
		return Meta{}, s.explain(err)
	}
	return ParseMeta(b)
}

// Open reads a snapshot object.
func (s *S3) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	obj, err := s.cli.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.explain(err)
	}
	// GetObject is lazy: Stat makes a missing object an error here.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		if minio.ToErrorResponse(err).Code == "NoSuchKey" {
			return nil, fmt.Errorf("%s/%s: no such object", s, name)
		}
		return nil, s.explain(err)
	}
	return obj, nil
}

// Put uploads the snapshot, then its metadata.
func (s *S3) Put(ctx context.Context, meta Meta, src io.Reader, size int64) error {
	// Parts of 16 MiB bound the memory of an upload of unknown size (an
	// encrypted stream) and keep a retried part cheap.
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: 16 << 20}
	if _, err := s.cli.PutObject(ctx, s.bucket, s.prefix+meta.SnapshotName(), src, size, opts); err != nil {
		return fmt.Errorf("upload %s: %w", meta.SnapshotName(), s.explain(err))
	}
	b := meta.Marshal()
	if _, err := s.cli.PutObject(ctx, s.bucket, s.prefix+meta.MetaName(), strings.NewReader(string(b)), int64(len(b)), minio.PutObjectOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("upload %s: %w", meta.MetaName(), s.explain(err))
	}
	return nil
}

// Remove deletes the snapshot, then its metadata.
func (s *S3) Remove(ctx context.Context, e Entry) error {
	p, ok := parseName(e.Name)
	if !ok {
		return fmt.Errorf("%s is not a backup name", e.Name)
	}
	for _, k := range []string{e.Name, p.Base + ".json"} {
		if err := s.cli.RemoveObject(ctx, s.bucket, s.prefix+k, minio.RemoveObjectOptions{}); err != nil {
			return s.explain(err)
		}
	}
	return nil
}

// ParseURL splits s3://bucket/key.
func ParseURL(u string) (bucket, key string, ok bool) {
	rest, found := strings.CutPrefix(u, "s3://")
	if !found {
		return "", "", false
	}
	bucket, key, _ = strings.Cut(rest, "/")
	return bucket, key, bucket != "" && key != ""
}

// OpenURL opens the bucket prefix an s3://BUCKET/KEY URL points into,
// with the store's configuration for endpoint and credentials, and
// returns it with the object's name.
func OpenURL(ctx context.Context, cfg S3Config, u string) (*S3, string, error) {
	bucket, key, ok := ParseURL(u)
	if !ok {
		return nil, "", fmt.Errorf("%q is not s3://BUCKET/KEY", u)
	}
	cfg.Bucket = bucket
	cfg.Prefix = ""
	if d := path.Dir(key); d != "." {
		cfg.Prefix = d
	}
	s, err := OpenS3(cfg, "")
	if err != nil {
		return nil, "", err
	}
	if err := s.Check(ctx); err != nil {
		return nil, "", err
	}
	return s, path.Base(key), nil
}

// MetaOf reads the metadata beside a snapshot object, if there is one.
func (s *S3) MetaOf(ctx context.Context, name string) (Meta, bool) {
	p, ok := parseName(name)
	if !ok {
		return Meta{}, false
	}
	m, err := s.readMeta(ctx, p.Base+".json")
	return m, err == nil
}
