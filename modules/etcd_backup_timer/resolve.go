package etcd_backup_timer

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot"
	"github.com/etcdplay/etcdplay/modules/etcd_snapshot/store"
)

// Defaults of the variables this module reads.
const (
	DefaultDir       = "/var/backups/etcd"
	DefaultLocalKeep = 7
	defaultTimeout   = "15min"
)

// unitData is what the unit templates see.
type unitData struct {
	Name, User, Group string
	Endpoint          string
	TLS               bool
	CACert, Cert, Key string
	Dir               string
	Keep              int
	Script            string
	Config            string
	// Store is the store's prefix ("" without etcd_backup_s3).
	Store    string
	Schedule string
	Timeout  string
	Vars     map[string]any
}

// safeRE is what may appear in an Environment= value or ExecStart path
// without systemd quoting or specifier expansion coming into play.
var safeRE = regexp.MustCompile(`^[A-Za-z0-9/._:+@-]+$`)

// Resolve reads the backup variables, renders the units on the controller
// and hands the agent plain content.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	st, err := job.Start(args, rc)
	if err != nil {
		return nil, err
	}
	c, m, out, schedule := st.Cluster, st.Member, st.Out, st.Schedule
	if st.Absent() {
		// Not chosen for local backups: make sure no timer is left.
		return out, nil
	}
	vars := modules.Args(rc.Vars)
	pick := func(arg, variable, def string) string {
		if v := args.Str(arg, ""); v != "" {
			return v
		}
		return vars.Str(variable, def)
	}
	dir := pick("dir", "etcd_backup_dir", DefaultDir)
	if !path.IsAbs(dir) || !safeRE.MatchString(dir) || path.Clean(dir) == "/" {
		return nil, &etcd.VarError{Var: "etcd_backup_dir", Host: rc.Host, Msg: fmt.Sprintf("%q must be an absolute path of letters, digits and /._:+@-", dir)}
	}
	keep := args.Int("keep", vars.Int("etcd_backup_local_keep", DefaultLocalKeep))
	if keep < 1 {
		return nil, &etcd.VarError{Var: "etcd_backup_local_keep", Host: rc.Host, Msg: fmt.Sprintf("%v must be at least 1", keep)}
	}
	bc, err := etcd_snapshot.ConfigFromVars(rc.Vars)
	if err != nil {
		return nil, err
	}
	policy := store.Policy{Last: keep}
	if _, ok := rc.Vars[etcd_snapshot.VarRetention]; ok && args["keep"] == nil {
		policy = bc.Policy
	}
	d := unitData{
		Name: m.Name, User: "etcd", Group: "etcd",
		Endpoint: m.ClientURL, TLS: c.TLS,
		CACert: c.Paths.CACert, Cert: c.Paths.ServerCert, Key: c.Paths.ServerKey,
		Dir: dir, Keep: keep,
		Script:   ScriptPath,
		Config:   ConfigPath,
		Schedule: schedule,
		Timeout:  args.Str("timeout", defaultTimeout),
		Vars:     rc.Vars,
	}
	hc := HostConfig{Cluster: c.Name, Member: m.Name, Host: rc.Host, Endpoint: m.ClientURL, Dir: dir, Retention: policy, Recipients: bc.RecipientKeys}
	if vars.Bool("etcd_backup_verify", false) {
		hc.Verify, hc.BinDir = true, c.Paths.BinDir
	}
	if c.TLS {
		hc.CACert, hc.Cert, hc.Key = c.Paths.CACert, c.Paths.ServerCert, c.Paths.ServerKey
	}
	files := etcd_install.Set{Dirs: []etcd_install.Dir{{Path: path.Dir(ConfigPath), Mode: "0755", Owner: "root", Group: "root"}}}
	if bc.S3 != nil {
		s3 := *bc.S3
		creds, err := hostCredentials(s3)
		if err != nil {
			return nil, &etcd.VarError{Var: etcd_snapshot.VarS3, Host: rc.Host, Msg: err.Error()}
		}
		files.Files = append(files.Files, etcd_install.File{Path: CredentialsPath, Content: creds, Mode: "0600", Owner: d.User, Group: d.Group, Secret: true})
		s3.CredentialsFile, s3.Profile = CredentialsPath, ""
		if s3.CAFile != "" {
			ca, err := os.ReadFile(s3.CAFile)
			if err != nil {
				return nil, &etcd.VarError{Var: etcd_snapshot.VarS3, Host: rc.Host, Msg: "ca_file: " + err.Error()}
			}
			files.Files = append(files.Files, etcd_install.File{Path: StoreCAPath, Content: string(ca), Mode: "0644", Owner: "root", Group: "root"})
			s3.CAFile = StoreCAPath
		}
		hc.S3 = &s3
		d.Store = strings.TrimSuffix("s3://"+path.Join(s3.Bucket, s3.Prefix, c.Name), "/")
	}
	conf, err := json.MarshalIndent(hc, "", "  ")
	if err != nil {
		return nil, err
	}
	files.Files = append(files.Files, etcd_install.File{Path: ConfigPath, Content: string(conf) + "\n", Mode: "0600", Owner: d.User, Group: d.Group})
	if err := job.RenderUnits(rc.BaseDir, rc.Host, d, []string{d.Endpoint, d.CACert, d.Cert, d.Key, d.Timeout}, out); err != nil {
		return nil, err
	}
	out["files"] = map[string]any(files.Args())
	out["schedule"] = schedule
	out["dir"] = dir
	out["keep"] = keep
	out["user"] = d.User
	detail := fmt.Sprintf("snapshots into %s, %s", dir, policy)
	if d.Store != "" {
		detail += ", uploaded to " + d.Store
	}
	out["start_detail"] = detail
	return out, nil
}

// hostCredentials is the store's credentials as the member keeps them:
// the controller's credentials file (its profile), or the controller's
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, in the shared-credentials
// format. They travel as a secret file: a diff shows hashes only.
func hostCredentials(s3 store.S3Config) (string, error) {
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if s3.CredentialsFile != "" {
		v, err := store.ReadCredentialsFile(s3.CredentialsFile, s3.Profile)
		if err != nil {
			return "", err
		}
		id, secret = v.AccessKeyID, v.SecretAccessKey
	}
	if id == "" || secret == "" {
		return "", fmt.Errorf("no credentials for the members' timers: set credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY where etcdplay runs")
	}
	return fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", id, secret), nil
}
