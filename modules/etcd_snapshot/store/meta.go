// Package store is where etcd backups live and how they are kept: a
// snapshot and its metadata file (JSON) side by side, in a directory on
// the controller or a host, or in an S3-compatible bucket; encryption
// with age before a snapshot leaves the machine that took it; and tiered
// (grandfather-father-son) retention that every location applies alike.
//
// A backup is named <UTC time>-<member>-rev<revision>.db (.db.age when
// encrypted), its metadata <UTC time>-<member>-rev<revision>.json. Nothing
// here touches a name it did not make.
package store

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// TimeLayout is the UTC time that starts every backup's name, so names
// sort by time.
const TimeLayout = "20060102T150405Z"

// EncryptedExt marks an age-encrypted snapshot.
const EncryptedExt = ".age"

// Meta is the metadata file beside each snapshot. SHA256 and Size are of
// the plaintext snapshot, so a decrypted copy verifies against them.
type Meta struct {
	Cluster     string    `json:"cluster"`
	ClusterID   string    `json:"cluster_id,omitempty"`
	Member      string    `json:"member"`
	Revision    int64     `json:"revision"`
	Keys        int       `json:"keys"`
	EtcdVersion string    `json:"etcd_version,omitempty"`
	SHA256      string    `json:"sha256"`
	Size        int64     `json:"size"`
	Time        time.Time `json:"time"`
	Encrypted   bool      `json:"encrypted"`
	// Origin is who took it and applies retention to it: "controller", or
	// "host:<inventory host>" for a member's timer. Each origin prunes
	// only its own backups, so two never race over one.
	Origin string `json:"origin"`
	// Verified says the snapshot passed etcd's integrity hash and a read
	// of its keyspace when it was taken.
	Verified bool `json:"verified"`
}

// Base is the name shared by the snapshot and its metadata, without
// extension.
func (m Meta) Base() string {
	return fmt.Sprintf("%s-%s-rev%d", m.Time.UTC().Format(TimeLayout), m.Member, m.Revision)
}

// SnapshotName is the snapshot's file or object name.
func (m Meta) SnapshotName() string {
	if m.Encrypted {
		return m.Base() + ".db" + EncryptedExt
	}
	return m.Base() + ".db"
}

// MetaName is the metadata file's name.
func (m Meta) MetaName() string { return m.Base() + ".json" }

// Marshal is the metadata file's content.
func (m Meta) Marshal() []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// ParseMeta reads a metadata file.
func ParseMeta(b []byte) (Meta, error) {
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("backup metadata: %w", err)
	}
	if m.Member == "" || m.Time.IsZero() {
		return Meta{}, fmt.Errorf("backup metadata: member or time missing")
	}
	return m, nil
}

// nameRE matches the snapshot names etcdplay gives, and only those.
var nameRE = regexp.MustCompile(`^(\d{8}T\d{6}Z)-([A-Za-z0-9][A-Za-z0-9._-]*)-rev(\d+)\.db(\.age)?$`)

// parsed is what a snapshot's name says.
type parsed struct {
	Base      string
	Time      time.Time
	Member    string
	Encrypted bool
}

func parseName(name string) (parsed, bool) {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return parsed{}, false
	}
	t, err := time.Parse(TimeLayout, m[1])
	if err != nil {
		return parsed{}, false
	}
	return parsed{Base: strings.TrimSuffix(strings.TrimSuffix(name, EncryptedExt), ".db"), Time: t, Member: m[2], Encrypted: m[4] != ""}, true
}

// Entry is one backup in a location.
type Entry struct {
	// Name is the snapshot's name in the location.
	Name string
	// Meta is its metadata; HasMeta says the metadata file was there
	// (without it, Meta holds what the name says, and Time is the
	// location's own time of the snapshot when the name has none).
	Meta    Meta
	HasMeta bool
	// Size is the stored size (of the ciphertext when encrypted).
	Size int64
	// Location names where it is, as String of the Location.
	Location string
}

// Time is when the snapshot was taken.
func (e Entry) Time() time.Time { return e.Meta.Time }

// URL is how restore.yml's snapshot= names it.
func (e Entry) URL() string {
	if strings.HasSuffix(e.Location, "/") {
		return e.Location + e.Name
	}
	return e.Location + "/" + e.Name
}
