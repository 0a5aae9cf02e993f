// Package etcd_config is the etcd_config module: it renders etcd.yaml (etcd's
// config-file format) for a member from the cluster model at compile time on
// the controller, and writes it on the host atomically with a diff.
package etcd_config

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"

	"github.com/etcdplay/etcdplay/modules/etcd"
	tmplmod "github.com/etcdplay/etcdplay/modules/template"
)

// DefaultTemplate is the built-in template (templates/etcd.yaml.tmpl); a
// playbook overrides it with its own templates/etcd.yaml.tmpl.
const DefaultTemplate = "etcd.yaml.tmpl"

// Data is what the template sees.
type Data struct {
	Cluster *etcd.Cluster
	Member  *etcd.Member
	Paths   etcd.HostPaths
	Version string
	// State is initial-cluster-state: new, or existing for a joiner.
	State             string
	InitialCluster    string
	HeartbeatInterval int
	ElectionTimeout   int
	HasEnableV2       bool
	// PeerAllowedCN is peer-transport-security's allowed-cn as YAML: a
	// list from 3.5 on, a single string in 3.4.
	PeerAllowedCN string
	// Extra is etcd_extra_config as YAML, "" when none.
	Extra string
}

// Options are the per-task choices on top of the cluster model.
type Options struct {
	State string
	// HeartbeatInterval and ElectionTimeout override the model (etcd_tune
	// measures them when etcd_heartbeat_interval is auto); 0 keeps it.
	HeartbeatInterval int
	ElectionTimeout   int
}

var funcs = template.FuncMap{
	// quote makes a YAML double-quoted scalar (JSON string syntax is valid
	// YAML), so no value can change the document's structure.
	"quote": strconv.Quote,
}

// Render renders the template text for member host of cluster c.
func Render(name, text string, c *etcd.Cluster, host string, o Options) (string, error) {
	m, err := c.Member(host)
	if err != nil {
		return "", err
	}
	d := Data{
		Cluster: c, Member: m, Paths: c.Paths, Version: c.Version.String(),
		State:             o.State,
		InitialCluster:    c.InitialCluster(),
		HeartbeatInterval: c.HeartbeatInterval,
		ElectionTimeout:   c.ElectionTimeout,
		HasEnableV2:       c.EnableV2 && c.Version.HasOption("enable-v2"),
		PeerAllowedCN:     "[" + strconv.Quote(etcd.PeerCN) + "]",
	}
	if !c.Version.AtLeast(3, 5) {
		d.PeerAllowedCN = strconv.Quote(etcd.PeerCN)
	}
	if d.State == "" {
		d.State = "new"
	}
	if d.State != "new" && d.State != "existing" {
		return "", fmt.Errorf("state %q must be new or existing", d.State)
	}
	if o.HeartbeatInterval > 0 {
		d.HeartbeatInterval = o.HeartbeatInterval
	}
	if o.ElectionTimeout > 0 {
		d.ElectionTimeout = o.ElectionTimeout
	}
	if d.ElectionTimeout < 5*d.HeartbeatInterval {
		return "", fmt.Errorf("election timeout %dms must be at least 5 times the heartbeat interval %dms", d.ElectionTimeout, d.HeartbeatInterval)
	}
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	base, err := execute(t, d)
	if err != nil {
		return "", err
	}
	rendered := map[string]any{}
	if err := yaml.Unmarshal([]byte(base), &rendered); err != nil {
		return "", fmt.Errorf("%s does not render valid YAML: %w", name, err)
	}
	if len(c.ExtraConfig) == 0 {
		return base, nil
	}
	var clash []string
	for k := range c.ExtraConfig {
		if _, ok := rendered[k]; ok {
			clash = append(clash, k)
		}
	}
	if len(clash) > 0 {
		sort.Strings(clash)
		return "", fmt.Errorf("etcd_extra_config sets %s, which etcdplay already renders from its own variables (see docs/variables.md)", strings.Join(clash, ", "))
	}
	extra, err := yaml.Marshal(c.ExtraConfig)
	if err != nil {
		return "", fmt.Errorf("etcd_extra_config: %w", err)
	}
	d.Extra = strings.TrimRight(string(extra), "\n")
	return execute(t, d)
}

func execute(t *template.Template, d Data) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	out := b.String()
	if !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out, nil
}

// load finds the template like the template module does: the playbook's
// templates/ first, then the built-in one.
func load(base, name string) (string, string, error) {
	return tmplmod.Load(base, name)
}
