package lab

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

type invHost struct {
	AnsibleHost string `yaml:"ansible_host"`
	AnsibleUser string `yaml:"ansible_user"`
	KeyFile     string `yaml:"ansible_ssh_private_key_file"`
}

type invGroup struct {
	Hosts map[string]invHost `yaml:"hosts"`
}

type invAll struct {
	Vars     map[string]any      `yaml:"vars,omitempty"`
	Children map[string]invGroup `yaml:"children"`
}

// writeInventory writes an Ansible YAML inventory: every host in group
// etcd, reached as root with the lab key. Callers hold l.mu.
func (l *Lab) writeInventory() error {
	g := invGroup{Hosts: map[string]invHost{}}
	for _, h := range l.hosts {
		g.Hosts[h.Name] = invHost{AnsibleHost: h.Addr, AnsibleUser: "root", KeyFile: l.KeyFile}
	}
	inv := map[string]invAll{"all": {Vars: l.opts.Vars, Children: map[string]invGroup{"etcd": g}}}
	var buf bytes.Buffer
	buf.WriteString("# etcdplay lab " + l.Name + ": written by integration/lab, rewritten on every change.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(inv); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	return writeFileAtomic(l.InventoryFile, buf.Bytes(), 0o644)
}
