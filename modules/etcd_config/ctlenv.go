package etcd_config

import (
	"fmt"
	"strings"

	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
)

// CtlEnvPath is where etcd_ctl_env writes the shell environment that points
// root's etcdctl at its own member (seed 000's alias; kubespray installs a
// wrapper for the same reason).
const CtlEnvPath = "/etc/profile.d/etcdctl.sh"

// ctlEnvModule is etcd_ctl_env: /etc/profile.d/etcdctl.sh on a member, so
// `etcdctl endpoint status` works for root in a login shell with no flags.
// Rendered on the controller like etcd.yaml and written by the same host
// side (Module's Validate, Plan, Apply); nothing restarts for it.
type ctlEnvModule struct{ Module }

var ctlEnvSpec = modules.Spec{"dest": {Kind: modules.String}}

// CtlEnv is the script for member m of c: the member's own client URL and,
// with TLS, the CA and the member's server certificate (it carries client
// auth, as the defrag and backup timers use it). Other users get nothing:
// the key is root's.
func CtlEnv(c *etcd.Cluster, m *etcd.Member) string {
	var b strings.Builder
	b.WriteString("# Managed by etcdplay: etcdctl against this member, for root.\n")
	b.WriteString("[ \"$(id -u)\" = 0 ] || return 0\n")
	b.WriteString("export ETCDCTL_API=3\n")
	fmt.Fprintf(&b, "export ETCDCTL_ENDPOINTS=%s\n", m.ClientURL)
	if c.TLS {
		fmt.Fprintf(&b, "export ETCDCTL_CACERT=%s\nexport ETCDCTL_CERT=%s\nexport ETCDCTL_KEY=%s\n", c.Paths.CACert, c.Paths.ServerCert, c.Paths.ServerKey)
	}
	return b.String()
}

// Resolve renders the script from the cluster model at compile time.
func (ctlEnvModule) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	if _, done := args[argContent]; done {
		return args, nil
	}
	if err := ctlEnvSpec.Check(args); err != nil {
		return nil, err
	}
	c, m, err := etcd.MemberOf(rc.Vars, rc.Host)
	if err != nil {
		return nil, fmt.Errorf("etcd_ctl_env for %s: %w", rc.Host, err)
	}
	return modules.Args{argContent: CtlEnv(c, m), "dest": args.Str("dest", CtlEnvPath), "mode": "0644", "owner": "root", "group": "root"}, nil
}

func init() { modules.Register("etcd_ctl_env", ctlEnvModule{}) }
