package etcd_snapshot

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"filippo.io/age"
	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

// Variables of the backup targets (docs/VARIABLES.md).
const (
	VarS3         = "etcd_backup_s3"
	VarRecipients = "etcd_backup_age_recipients"
	VarIdentity   = "etcd_backup_age_identity"
	VarRetention  = "etcd_backup_retention"
	VarKeep       = "etcd_backup_keep"
)

// Config is where backups go and how long they stay, read from the
// variables.
type Config struct {
	// S3 is the bucket (etcd_backup_s3), nil without one.
	S3 *store.S3Config
	// Recipients encrypt what leaves the machine that took the snapshot
	// (etcd_backup_age_recipients); none means plaintext.
	Recipients    []age.Recipient
	RecipientKeys []string
	// Identity is the controller's age identity file that decrypts for a
	// restore (etcd_backup_age_identity).
	Identity string
	// Policy is etcd_backup_retention, or the newest etcd_backup_keep (7).
	Policy store.Policy
}

// ConfigFromVars reads the backup variables. Errors name the variable,
// so the runner can point at where it was written.
func ConfigFromVars(vars map[string]any) (*Config, error) {
	cfg := &Config{}
	if v, ok := vars[VarS3]; ok && v != nil {
		var s3 store.S3Config
		if err := decodeStrict(v, &s3); err != nil {
			return nil, &etcd.VarError{Var: VarS3, Msg: err.Error()}
		}
		if err := s3.Validate(); err != nil {
			return nil, &etcd.VarError{Var: VarS3, Msg: err.Error()}
		}
		cfg.S3 = &s3
	}
	keys := modules.Args(vars).Strings(VarRecipients)
	if raw, ok := vars[VarRecipients]; ok && raw != nil && keys == nil {
		if s, isStr := raw.(string); isStr && s != "" {
			keys = []string{s}
		} else if !isStr {
			return nil, &etcd.VarError{Var: VarRecipients, Msg: "must be a list of age recipients (age1...)"}
		}
	}
	rs, err := store.Recipients(keys)
	if err != nil {
		return nil, &etcd.VarError{Var: VarRecipients, Msg: err.Error()}
	}
	cfg.Recipients, cfg.RecipientKeys = rs, keys
	cfg.Identity = modules.Args(vars).Str(VarIdentity, "")

	keep, err := keepOf(nil, vars)
	if err != nil {
		return nil, err
	}
	cfg.Policy = store.Policy{Last: keep}
	if v, ok := vars[VarRetention]; ok && v != nil {
		var p store.Policy
		if err := decodeStrict(v, &p); err != nil {
			return nil, &etcd.VarError{Var: VarRetention, Msg: err.Error() + " (fields: last, hourly, daily, weekly, monthly)"}
		}
		if p.Last < 0 || p.Hourly < 0 || p.Daily < 0 || p.Weekly < 0 || p.Monthly < 0 {
			return nil, &etcd.VarError{Var: VarRetention, Msg: "counts must not be negative"}
		}
		if p.Empty() {
			return nil, &etcd.VarError{Var: VarRetention, Msg: "keeps nothing: set at least one of last, hourly, daily, weekly, monthly"}
		}
		cfg.Policy = p
	}
	return cfg, nil
}

// decodeStrict decodes a variable's value into out, refusing unknown
// fields (a typo would otherwise silently mean "not set").
func decodeStrict(v any, out any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  "))
	}
	return nil
}

// Store opens the cluster's bucket prefix and checks that it answers: the
// credentials, the bucket and the endpoint are proven before anything
// happens. Nil without etcd_backup_s3.
func (cfg *Config) Store(ctx context.Context, c *etcd.Cluster) (*store.S3, error) {
	if cfg.S3 == nil {
		return nil, nil
	}
	s, err := store.OpenS3(*cfg.S3, c.Name)
	if err != nil {
		return nil, &etcd.VarError{Var: VarS3, Msg: err.Error()}
	}
	if err := s.Check(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Identities reads the controller's age identity file, or says which
// variable to set.
func (cfg *Config) Identities() ([]age.Identity, error) {
	if cfg.Identity == "" {
		return nil, &etcd.VarError{Var: VarIdentity, Msg: "the snapshot is encrypted: set it to the age identity file (on the controller) that decrypts it"}
	}
	ids, err := store.Identities(cfg.Identity)
	if err != nil {
		return nil, &etcd.VarError{Var: VarIdentity, Msg: err.Error()}
	}
	return ids, nil
}
