// Package playbook reads playbooks and compiles them into a graph of
// (task, host) nodes for the runner.
//
// Parse decodes a playbook strictly (yaml.v3 nodes, so every problem has a
// file:line:column) and checks what needs no inventory: keys, types,
// modules and their argument names, ids, needs, cycles, notify, serial,
// template syntax. Load (or Playbook.Compile) then resolves hosts against
// an inventory, merges variables (inventory < play vars < vars_files <
// extra vars, plus the facts inventory_hostname, inventory_hostname_short,
// group_names, groups, play_hosts and hostvars), renders every template
// for every host, runs module Resolvers and Validate, and lays out the
// graph. All problems come back together as Errors, sorted by position;
// nothing has connected to any host.
//
// Playbooks are Ansible's, with these etcdplay rules:
//   - Templates are Go text/template (package tmpl); {{ .x }} and {{ x }}
//     both read a variable, and "{{ .x }}" alone keeps x's type.
//   - when (and changed_when, until) is a template expression with or
//     without braces: `when: eq inventory_hostname "etcd1"`; a list means
//     all must hold. It is decided at compile time (a false when marks the
//     node Skip), unless it reads a registered result, which only exists
//     at run time (Task.WhenAtRuntime).
//   - id names a task for needs. A task with needs runs after exactly the
//     tasks it names (on the same host, or their run_once node), instead of
//     after every earlier task: independent tasks run in parallel. needs:
//     [] means "no dependency in this play".
//   - Module names may carry Ansible's ansible.builtin. prefix;
//     systemd_service is systemd. Arguments may be written on one line:
//     `command: echo hi creates=/x` or `file: path=/x state=directory`.
//   - Handlers run after the tasks of their batch, in the order written;
//     listen topics work as in Ansible.
//   - tags follow Ansible, including always, never, tagged, untagged.
package playbook
