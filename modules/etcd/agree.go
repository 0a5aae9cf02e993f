package etcd

import (
	"fmt"
	"strconv"
)

// mustAgree are the cluster-wide settings that make a member part of its
// cluster. A task reads them from the vars of the host it runs for, so a
// member whose host vars said otherwise would be set up as part of
// another cluster (its own token or CA), on another release, or with
// timing its peers do not share (etcd asks for one heartbeat and election
// timeout across a cluster). Each is read as the model reads it, defaults
// and spellings included, so "100" and 100 agree.
var mustAgree = []struct {
	name string
	read func(r varReader) string
}{
	{"etcd_cluster_token", func(r varReader) string {
		return r.str("etcd_cluster_token", r.str("etcd_cluster_name", DefaultClusterName))
	}},
	{"etcd_version", func(r varReader) string {
		s := r.str("etcd_version", DefaultVersion)
		if v, err := ParseVersion(s); err == nil {
			return v.String()
		}
		return s
	}},
	{"etcd_tls", func(r varReader) string { return strconv.FormatBool(r.boolean("etcd_tls", true)) }},
	{"etcd_enable_v2", func(r varReader) string { return strconv.FormatBool(r.boolean("etcd_enable_v2", false)) }},
	{"etcd_heartbeat_interval", func(r varReader) string {
		if s := r.str("etcd_heartbeat_interval", ""); s == "auto" {
			return s
		}
		return strconv.Itoa(r.integer("etcd_heartbeat_interval", DefaultHeartbeat))
	}},
	{"etcd_election_timeout", func(r varReader) string {
		return strconv.Itoa(r.integer("etcd_election_timeout", DefaultElection))
	}},
	{"etcd_ca_cert", func(r varReader) string { return r.str("etcd_ca_cert", "") }},
	{"etcd_ca_key", func(r varReader) string { return r.str("etcd_ca_key", "") }},
}

// checkAgreement reports each member whose value of a mustAgree setting
// differs from the cluster's first member's, naming both: the inventory
// set it per host where it must be set for the cluster's group.
func checkAgreement(hosts []string, hostvars map[string]any, errs *[]error) {
	if len(hosts) < 2 {
		return
	}
	read := func(h string, f func(varReader) string) string {
		hv, _ := hostvars[h].(map[string]any)
		var ignored []error // a bad value is reported where the model reads it
		return f(varReader{vars: hv, host: h, errs: &ignored})
	}
	for _, s := range mustAgree {
		first := read(hosts[0], s.read)
		for _, h := range hosts[1:] {
			if v := read(h, s.read); v != first {
				*errs = append(*errs, &VarError{Var: s.name, Host: h, Msg: fmt.Sprintf(
					"%s here but %s on %s: the members of a cluster must agree on it; set it for the cluster's group, not per host",
					shown(v), shown(first), hosts[0])})
			}
		}
	}
}

// shown is a value for a message: an empty one says so.
func shown(v string) string {
	if v == "" {
		return "unset"
	}
	return strconv.Quote(v)
}
