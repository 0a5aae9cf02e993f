// Package templates holds the templates built into the binary (etcd.yaml,
// unit files). The template module falls back to them when a playbook has
// no templates/ directory of its own with the same name, so a playbook can
// override any of them by shipping a file with that name.
package templates

import "embed"

// FS holds every *.tmpl file of this directory.
//
//go:embed *.tmpl
var FS embed.FS
