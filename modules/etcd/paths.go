package etcd

import "path/filepath"

// HostPaths are where etcd's files live on a member host. Modules take them
// from here so every module agrees; tests override them with temp dirs.
type HostPaths struct {
	ConfigDir   string // /etc/etcd
	ConfigFile  string // /etc/etcd/etcd.yaml
	PKIDir      string // /etc/etcd/pki
	CACert      string
	ServerCert  string
	ServerKey   string
	PeerCert    string
	PeerKey     string
	InstallRoot string // /opt/etcd; a release goes to InstallRoot/<version>
	BinDir      string // /usr/local/bin: stable links to the active release
	UploadDir   string // /var/tmp/etcdplay: tarballs pushed by the controller
	// RestoreMarker exists while a restore has members stopped: written
	// on every member before the first stop, removed once they run again.
	// etcd_service will not start a member while it is there (a killed
	// restore can leave some members on the old data, some on the new).
	RestoreMarker string // /etc/etcd/restore-in-progress.json
}

// DefaultHostPaths is the standard layout.
func DefaultHostPaths() HostPaths {
	return HostPaths{
		ConfigDir:   "/etc/etcd",
		ConfigFile:  "/etc/etcd/etcd.yaml",
		PKIDir:      "/etc/etcd/pki",
		CACert:      "/etc/etcd/pki/ca.crt",
		ServerCert:  "/etc/etcd/pki/server.crt",
		ServerKey:   "/etc/etcd/pki/server.key",
		PeerCert:    "/etc/etcd/pki/peer.crt",
		PeerKey:     "/etc/etcd/pki/peer.key",
		InstallRoot: "/opt/etcd",
		BinDir:      "/usr/local/bin",
		UploadDir:   "/var/tmp/etcdplay",

		RestoreMarker: "/etc/etcd/restore-in-progress.json",
	}
}

// InstallDir is the versioned directory a release is unpacked into.
func (p HostPaths) InstallDir(v Version) string {
	return p.InstallRoot + "/" + v.String()
}

// MemberDir is where etcd keeps a member's state inside its data dir. etcd
// creates it when the member bootstraps; while it is absent, etcd still
// reads the initial-cluster settings (and asks its peers) on start.
func MemberDir(dataDir string) string { return filepath.Join(dataDir, "member") }

// Binaries are the release's executables, installed and linked.
var Binaries = []string{"etcd", "etcdctl", "etcdutl"}

// StatePKI is the controller-side PKI directory of one cluster:
// <StateDir>/<cluster name>/pki. The CA key lives here and nowhere else.
type StatePKI struct{ Dir string }

// PKI returns the cluster's controller-side PKI layout under stateDir.
func (c *Cluster) PKI(stateDir string) StatePKI {
	return StatePKI{Dir: filepath.Join(stateDir, c.Name, "pki")}
}

func (s StatePKI) CACert() string { return filepath.Join(s.Dir, "ca.crt") }
func (s StatePKI) CAKey() string  { return filepath.Join(s.Dir, "ca.key") }

// UnitName is the systemd unit etcd_service installs for a member; every
// module that starts, stops or probes etcd names it through this.
const UnitName = "etcd.service"

// NextCACert and NextCAKey are the CA a rotation (rotate-ca.yml) brings
// in: present from its first step until its last promotes it to CACert.
func (s StatePKI) NextCACert() string { return filepath.Join(s.Dir, "ca-next.crt") }
func (s StatePKI) NextCAKey() string  { return filepath.Join(s.Dir, "ca-next.key") }

// RotationFinishing marks a CA rotation whose new CA is already CACert
// while hosts may still trust the old one beside it: from the promotion
// in rotate-ca.yml's last step until the playbook's end. A run killed in
// between is finished by the next, rather than a new CA made.
func (s StatePKI) RotationFinishing() string { return filepath.Join(s.Dir, "ca-rotation-finishing") }

// Server, Peer and Client return a certificate and its key.
func (s StatePKI) Server(member string) (crt, key string) { return s.pair("server-" + member) }
func (s StatePKI) Peer(member string) (crt, key string)   { return s.pair("peer-" + member) }
func (s StatePKI) Client(cn string) (crt, key string)     { return s.pair("client-" + cn) }

func (s StatePKI) pair(base string) (string, string) {
	return filepath.Join(s.Dir, base+".crt"), filepath.Join(s.Dir, base+".key")
}

// CacheDir is where release tarballs are cached on the controller:
// <StateDir>/cache/<version>.
func (c *Cluster) CacheDir(stateDir string) string {
	return filepath.Join(stateDir, "cache", c.Version.String())
}

// OpLockKey is the etcd key of etcdplay's cluster-wide operation lock
// (modules/etcd/oplock), which a member's defrag timer takes too. It is
// named here, in the model, so host-side code can use it without linking
// etcd's client into the agent.
const OpLockKey = "/etcdplay/locks/operation"
