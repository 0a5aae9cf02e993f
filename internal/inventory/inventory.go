// Package inventory loads Ansible inventories unchanged: the YAML layout
// (all / children / hosts / vars) and the INI layout, plus the group_vars/
// and host_vars/ directories beside the inventory file.
//
// Variable precedence follows Ansible (hash_behaviour=replace, so a key set
// at a stronger level replaces the whole value):
//
//  1. group vars written in the inventory file, "all" first, then by group
//     depth (a parent before its children), ansible_group_priority, name;
//  2. group_vars/all;
//  3. group_vars/<group>, in the same group order;
//  4. host vars written in the inventory file;
//  5. host_vars/<host>.
package inventory

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/etcdplay/etcdplay/internal/coerce"
	"github.com/etcdplay/etcdplay/internal/dag"
	"github.com/etcdplay/etcdplay/internal/yamlpos"
)

// Error is a problem in an inventory file, with its position.
type Error = yamlpos.Error

// Inventory is a loaded inventory: hosts in the order they first appear,
// groups, and every host's merged variables.
type Inventory struct {
	// File is the path Load was given.
	File string

	hosts  []*Host
	byName map[string]*Host
	groups map[string]*group
	// order lists group names as first seen, "all" and "ungrouped" first.
	order []string
	// members maps each group to its hosts in inventory order (set by
	// finish; read-only afterwards).
	members map[string][]string
}

type group struct {
	name     string
	vars     map[string]any // written in the inventory file
	fileVars map[string]any // from group_vars/
	// varsAt and fileVarsAt say where each of those was written.
	varsAt, fileVarsAt map[string]Pos
	children           []string
	parents            []string
	hosts              []string // direct members
	depth              int
}

// Host is one inventory host.
type Host struct {
	Name string
	// Vars are the merged variables (see the package comment for the order).
	Vars map[string]any
	// Groups are the groups the host belongs to, directly or through a
	// child group, sorted, without "all" (Ansible's group_names).
	Groups []string

	inline   map[string]any // host vars written in the inventory file
	fileVars map[string]any // from host_vars/
	// inlineAt and fileVarsAt say where each of those was written; at
	// is where each merged value comes from.
	inlineAt, fileVarsAt, at map[string]Pos
}

// Pos is where a variable's value is written: a file, and its line and
// column when the format has them.
type Pos = yamlpos.Pos

// VarPos says where the value of the host's variable name was written
// (the definition that wins the merge), if it is an inventory variable.
func (h *Host) VarPos(name string) (Pos, bool) {
	p, ok := h.at[name]
	return p, ok
}

// Load reads the inventory at path. A file named *.yml, *.yaml or *.json is
// YAML; *.ini is INI; anything else is sniffed from its first line.
func Load(path string) (*Inventory, error) { return LoadAll([]string{path}) }

// LoadAll reads several inventory sources and merges them in order, as
// ansible-playbook does with several -i: hosts and groups are the union,
// a later source's variables win. A source is a file, a directory (every
// inventory file in it, by name; group_vars/ and host_vars/ beside them),
// or a host list "h1,h2," (any source with a comma that is not a file).
func LoadAll(sources []string) (*Inventory, error) {
	if len(sources) == 0 {
		return nil, fmt.Errorf("inventory: no source")
	}
	inv := newInventory(sources[0])
	var dirs []string
	for _, src := range sources {
		files, dir, err := expandSource(src)
		if err != nil {
			return nil, err
		}
		if files == nil {
			if err := inv.addHostList(src); err != nil {
				return nil, err
			}
			continue
		}
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("inventory: %w", err)
			}
			inv.File = path
			if isYAML(path, data) {
				err = inv.parseYAML(data)
			} else {
				err = inv.parseINI(data)
			}
			if err != nil {
				return nil, err
			}
		}
		dirs = append(dirs, dir)
	}
	inv.File = sources[0]
	for _, dir := range dirs {
		if err := inv.loadVarDirs(dir); err != nil {
			return nil, err
		}
	}
	if err := inv.finish(); err != nil {
		return nil, err
	}
	if err := inv.checkConnections(); err != nil {
		return nil, err
	}
	return inv, nil
}

// expandSource lists the files of an inventory source and the directory
// whose group_vars/ and host_vars/ go with them; nil files for a host list.
func expandSource(src string) (files []string, dir string, err error) {
	st, err := os.Stat(src)
	switch {
	case err != nil && strings.Contains(src, ","):
		return nil, "", nil
	case err != nil:
		return nil, "", fmt.Errorf("inventory: %w", err)
	case !st.IsDir():
		return []string{src}, filepath.Dir(src), nil
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return nil, "", fmt.Errorf("inventory: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(n, ".") || ignoredInDir(n) {
			continue
		}
		files = append(files, filepath.Join(src, n))
	}
	if len(files) == 0 {
		return nil, "", fmt.Errorf("inventory: directory %s holds no inventory file", src)
	}
	return files, src, nil
}

// ignoredInDir are the files of an inventory directory that are not
// inventories: editors' and tools' leftovers and docs (Ansible's
// INVENTORY_IGNORE_EXTS, less .ini, which etcdplay reads).
func ignoredInDir(name string) bool {
	for _, ext := range []string{"~", ".orig", ".bak", ".retry", ".pyc", ".pyo", ".swp", ".md", ".txt", ".rst", ".cfg"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// addHostList adds the hosts of "h1,h2," (ansible-playbook -i h1,h2,) to
// ungrouped.
func (inv *Inventory) addHostList(list string) error {
	for _, h := range strings.Split(list, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		names, err := hostNames(h)
		if err != nil {
			return &Error{Pos: Pos{File: "-i " + list}, Msg: err.Error()}
		}
		for _, n := range names {
			inv.addHost("ungrouped", n)
		}
	}
	return nil
}

func newInventory(path string) *Inventory {
	inv := &Inventory{File: path, byName: map[string]*Host{}, groups: map[string]*group{}}
	inv.group("all")
	inv.group("ungrouped")
	return inv
}

func isYAML(path string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yml", ".yaml", ".json":
		return true
	case ".ini", ".cfg":
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line == "---" {
			continue
		}
		// An INI file opens with a [section] or a host line; a YAML one
		// with "all:" or "groupname:".
		return line[0] != '[' && (strings.HasSuffix(line, ":") || strings.Contains(line, ": ") || line[0] == '{')
	}
	return true
}

// group returns the named group, creating it.
func (inv *Inventory) group(name string) *group {
	g, ok := inv.groups[name]
	if !ok {
		g = &group{name: name, vars: map[string]any{}, varsAt: map[string]Pos{}}
		inv.groups[name] = g
		inv.order = append(inv.order, name)
	}
	return g
}

// host returns the named host, creating it.
func (inv *Inventory) host(name string) *Host {
	h, ok := inv.byName[name]
	if !ok {
		h = &Host{Name: name, inline: map[string]any{}, inlineAt: map[string]Pos{}}
		inv.byName[name] = h
		inv.hosts = append(inv.hosts, h)
	}
	return h
}

func (inv *Inventory) addHost(groupName, hostName string) {
	inv.host(hostName)
	g := inv.group(groupName)
	for _, n := range g.hosts {
		if n == hostName {
			return
		}
	}
	g.hosts = append(g.hosts, hostName)
}

func (inv *Inventory) addChild(parent, child string) {
	p, c := inv.group(parent), inv.group(child)
	for _, n := range p.children {
		if n == child {
			return
		}
	}
	p.children = append(p.children, child)
	c.parents = append(c.parents, parent)
}

// finish wires every group under "all", computes depths, membership,
// ungrouped hosts and merged vars.
func (inv *Inventory) finish() error {
	for _, name := range inv.order {
		g := inv.groups[name]
		if name != "all" && len(g.parents) == 0 {
			inv.addChild("all", name)
		}
	}
	if cyc := inv.groupCycle(); cyc != "" {
		return &Error{Pos: Pos{File: inv.File}, Field: "children", Msg: "group cycle: " + cyc}
	}
	inv.setDepth("all", 0)

	member := map[string]map[string]bool{} // host -> groups
	for _, name := range inv.order {
		for _, h := range inv.groups[name].hosts {
			if member[h] == nil {
				member[h] = map[string]bool{}
			}
			inv.markAncestors(name, member[h])
		}
	}
	for _, h := range inv.hosts {
		delete(member[h.Name], "all")
		if len(member[h.Name]) == 0 {
			inv.addHost("ungrouped", h.Name)
			member[h.Name] = map[string]bool{"ungrouped": true}
		}
		for g := range member[h.Name] {
			h.Groups = append(h.Groups, g)
		}
		sort.Strings(h.Groups)
	}
	for _, h := range inv.hosts {
		h.Vars = inv.mergeVars(h)
	}
	inv.computeMembers()
	return nil
}

func (inv *Inventory) markAncestors(name string, seen map[string]bool) {
	if seen[name] {
		return
	}
	seen[name] = true
	for _, p := range inv.groups[name].parents {
		inv.markAncestors(p, seen)
	}
}

func (inv *Inventory) setDepth(name string, d int) {
	g := inv.groups[name]
	if d < g.depth {
		return
	}
	g.depth = d
	for _, c := range g.children {
		inv.setDepth(c, d+1)
	}
}

// groupCycle names a cycle among the groups' children ("a -> b -> a"), or
// is "" when there is none.
func (inv *Inventory) groupCycle() string {
	g := dag.New[struct{}]()
	for _, n := range inv.order {
		_ = g.Add(n, struct{}{})
	}
	for _, n := range inv.order {
		for _, c := range inv.groups[n].children {
			_ = g.Connect(n, c)
		}
	}
	if c := g.Cycle(); c != nil {
		return strings.Join(append(c, c[0]), " -> ")
	}
	return ""
}

func (inv *Inventory) mergeVars(h *Host) map[string]any {
	groups := append([]string{"all"}, h.Groups...)
	sort.SliceStable(groups, func(a, b int) bool {
		ga, gb := inv.groups[groups[a]], inv.groups[groups[b]]
		if ga.depth != gb.depth {
			return ga.depth < gb.depth
		}
		pa, pb := priority(ga), priority(gb)
		if pa != pb {
			return pa < pb
		}
		return ga.name < gb.name
	})
	out := map[string]any{}
	h.at = map[string]Pos{}
	layer := func(vars map[string]any, at map[string]Pos) {
		maps.Copy(out, vars)
		for k := range vars {
			if p, ok := at[k]; ok {
				h.at[k] = p
			} else {
				delete(h.at, k)
			}
		}
	}
	for _, g := range groups {
		layer(inv.groups[g].vars, inv.groups[g].varsAt)
	}
	for _, g := range groups { // "all" sorts first: group_vars/all, then the rest
		layer(inv.groups[g].fileVars, inv.groups[g].fileVarsAt)
	}
	layer(h.inline, h.inlineAt)
	layer(h.fileVars, h.fileVarsAt)
	return out
}

func priority(g *group) int {
	for _, vs := range []map[string]any{g.fileVars, g.vars} {
		if v, ok := vs["ansible_group_priority"]; ok {
			if n, ok := coerce.Int(v); ok {
				return n
			}
		}
	}
	return 1
}

// Hosts lists every host in inventory order.
func (inv *Inventory) Hosts() []*Host { return append([]*Host(nil), inv.hosts...) }

// Host returns the named host.
func (inv *Inventory) Host(name string) (*Host, bool) {
	h, ok := inv.byName[name]
	return h, ok
}

// Groups maps every group, "all" and "ungrouped" included, to the names of
// its hosts (direct or through child groups) in inventory order.
func (inv *Inventory) Groups() map[string][]string {
	out := make(map[string][]string, len(inv.members))
	for g, hs := range inv.members {
		out[g] = append([]string{}, hs...)
	}
	return out
}

func (inv *Inventory) computeMembers() {
	inv.members = make(map[string][]string, len(inv.groups))
	for _, name := range inv.order {
		inv.members[name] = []string{}
	}
	for _, h := range inv.hosts {
		inv.members["all"] = append(inv.members["all"], h.Name)
		for _, g := range h.Groups {
			inv.members[g] = append(inv.members[g], h.Name)
		}
	}
}

// GroupNames lists the groups in the order they first appear, "all" and
// "ungrouped" first.
func (inv *Inventory) GroupNames() []string { return append([]string(nil), inv.order...) }

// GroupVars returns the variables a group sets itself (inventory file, then
// group_vars/ over them), for display.
func (inv *Inventory) GroupVars(name string) map[string]any {
	g, ok := inv.groups[name]
	if !ok {
		return nil
	}
	out := maps.Clone(g.vars)
	maps.Copy(out, g.fileVars)
	return out
}

// Children lists a group's direct child groups.
func (inv *Inventory) Children(name string) []string {
	if g, ok := inv.groups[name]; ok {
		return append([]string(nil), g.children...)
	}
	return nil
}
