package etcd_pki

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	cflog "github.com/cloudflare/cfssl/log"
	"github.com/etcdplay/etcdplay/modules"
	"github.com/etcdplay/etcdplay/modules/etcd"
	"github.com/etcdplay/etcdplay/modules/etcd_install"
)

// Module is etcd_pki. It runs on the controller, where the CA key is.
type Module struct{}

// RunsOnController marks the module controller-side.
func (Module) RunsOnController() {}

var spec = modules.Spec{
	// owner and group of the files on the host (the etcd user).
	"owner": {Kind: modules.String},
	"group": {Kind: modules.String},
	// pki_dir overrides etcd's PKI directory on the host.
	"pki_dir": {Kind: modules.String},
	// rotate re-issues the member's server and peer certificates (and,
	// once per run, the shared client certificates) whatever their
	// expiry. Whenever a running member's certificates are re-issued,
	// Apply checks it serves the new ones.
	"rotate": {Kind: modules.Bool},
	// ca_rotation is a step of rotate-ca.yml: trust (a new CA beside the
	// current one: hosts trust both, leaves stay), reissue (leaves from
	// the new CA, hosts still trust both), finish (the new CA replaces the
	// current one on the controller, the old one kept aside; hosts trust
	// the new one only), done (the playbook's last task, on the controller
	// only: the rotation is recorded as finished, so that the next run
	// starts another rather than finishing this one).
	"ca_rotation": {Kind: modules.String, OneOf: []string{"trust", "reissue", "finish", "done"}},
}

func (Module) Validate(args modules.Args) error {
	if err := spec.Check(args); err != nil {
		return err
	}
	if d := args.Str("pki_dir", ""); d != "" && !filepath.IsAbs(d) {
		return &modules.ArgError{Arg: "pki_dir", Msg: "must be an absolute path"}
	}
	return nil
}

// now is the clock expiry checks use (tests move it).
var now = time.Now

// item is one certificate the plan needs: found good on disk, or to be
// issued (issue) with the pair already made in memory.
type item struct {
	kind Kind
	// name is what the plan calls the certificate: the member's name for
	// server and peer certificates, the CN for client ones.
	name              string
	cn                string
	sans              []string
	certPath, keyPath string
	shared            bool // not per member: the CA's client certificates
	// hostFile is the file name (without .crt/.key) the pair goes to on
	// the host, "" for a pair that stays on the controller.
	hostFile string
	pair     Pair
	issue    bool
}

type plan struct {
	dir   string
	ca    *CA
	caNew bool
	// next is the CA a rotation brings in (nextNew: made by this run);
	// promote makes it the CA on the controller in Apply.
	next     *CA
	nextNew  bool
	promote  bool
	done     bool // the rotation's end: drop its finishing mark
	caPaths  [2]string
	items    []item
	hostArgs modules.Args
	cluster  *etcd.Cluster
	member   etcd.Member
}

func (Module) Plan(ctx context.Context, env *modules.Env, args modules.Args) (*modules.Change, error) {
	fail := func(err error) (*modules.Change, error) { return nil, fmt.Errorf("etcd_pki on %s: %w", env.Host, err) }
	c, err := etcd.FromVars(env.Vars)
	if err != nil {
		return fail(err)
	}
	m, px, err := hostRole(c, env.Host)
	if err != nil {
		return fail(err)
	}
	if env.StateDir == "" || env.Remote == nil {
		return fail(fmt.Errorf("needs the controller state directory and a connection to the host"))
	}
	pki := c.PKI(env.StateDir)
	st := storeFor(pki.Dir)
	st.mu.Lock()
	defer st.mu.Unlock()

	p := &plan{dir: pki.Dir, caPaths: [2]string{pki.CACert(), pki.CAKey()}, cluster: c}
	if m != nil {
		p.member = *m
	}
	ch := &modules.Change{Payload: p}
	owner := ownsShared(c, env)

	if p.ca, p.caNew, err = st.loadCA(c, pki); err != nil {
		return fail(err)
	}
	// The host's files: never the CA key.
	defDir := c.Paths.PKIDir
	if px != nil {
		defDir = etcd.ProxyPKIDir
	}
	dir := args.Str("pki_dir", defDir)
	caPath := filepath.Join(dir, "ca.crt")
	if p.caNew && !st.playChecked {
		if err := checkPlayCA(ctx, env, dir, p.ca, pki.CACert()); err != nil {
			return fail(err)
		}
		st.playChecked = true
	}
	if p.caNew && owner {
		ch.Add("+", pki.CACert(), fmt.Sprintf("new CA %q on the controller (valid until %s)", p.ca.cert.Subject.CommonName, p.ca.cert.NotAfter.UTC().Format("2006-01-02")))
	}
	step := args.Str("ca_rotation", "")
	signing, trusted, err := p.rotationStep(st, c, pki, step, owner, ch)
	if err != nil {
		return fail(err)
	}
	if step == "done" {
		return ch, nil // the controller's bookkeeping only
	}

	if m != nil {
		p.items = memberItems(c, pki, *m)
	} else {
		p.items = proxyItems(c, pki, *px)
	}
	for i := range p.items {
		it := &p.items[i]
		_, reissuedThisRun := st.pending[it.certPath] // under --check, by the rotation's second step
		reason, err := st.resolve(it, signing, c.CertValidity, c.CertRenewBefore, args.Bool("rotate", false))
		if err != nil {
			return fail(err)
		}
		if p.promote && reason != "" && !(env.Check && reissuedThisRun) {
			return fail(fmt.Errorf("%s %s certificate is not from the new CA yet (%s): dropping the old CA now would cut it off; run rotate-ca.yml again, whose second step re-issues it", it.name, it.kind, reason))
		}
		if reason == "" || (it.shared && !owner) {
			continue
		}
		what := fmt.Sprintf("cert %s %s", it.name, it.kind)
		detail := reason
		if it.kind != Client {
			detail += " (SANs " + strings.Join(it.sans, ", ") + ")"
		}
		op := "~"
		if reason == "new" {
			op = "+"
		}
		ch.Add(op, what, detail)
	}

	ownerName, group := args.Str("owner", "etcd"), args.Str("group", "etcd")
	file := func(name string, data []byte, mode string, secret bool) etcd_install.File {
		return etcd_install.File{Path: filepath.Join(dir, name), Content: string(data), Mode: mode, Owner: ownerName, Group: group, Secret: secret}
	}
	set := etcd_install.Set{
		Dirs:  []etcd_install.Dir{{Path: dir, Mode: "0700", Owner: ownerName, Group: group}},
		Files: []etcd_install.File{file("ca.crt", trusted, "0644", false)},
	}
	for _, it := range p.items {
		if it.hostFile != "" {
			set.Files = append(set.Files,
				file(it.hostFile+".crt", it.pair.Cert, "0644", false),
				file(it.hostFile+".key", it.pair.Key, "0600", true))
		}
	}
	p.hostArgs = set.Args()
	res, err := env.Remote.Plan(ctx, "etcd_files", p.hostArgs)
	if err != nil {
		return fail(err)
	}
	if res.Status == modules.StatusFailed {
		return fail(fmt.Errorf("%s", res.Msg))
	}
	if err := checkHostCA(env.Host, caPath, caBefore(res.Change, caPath), p.ca, p.caNew, pki.CACert()); err != nil {
		return fail(err)
	}
	if res.Change != nil {
		ch.Actions = append(ch.Actions, res.Change.Actions...)
		ch.Diffs = append(ch.Diffs, res.Change.Diffs...)
	}
	return ch, nil
}

// hostRole finds what h is: a member, or a client host's proxy.
func hostRole(c *etcd.Cluster, h string) (*etcd.Member, *etcd.Proxy, error) {
	if m, err := c.Member(h); err == nil {
		return m, nil, nil
	}
	if px, err := c.Proxy(h); err == nil {
		return nil, px, nil
	}
	return nil, nil, fmt.Errorf("host %s is in neither inventory group %q nor %q", h, etcd.Group, etcd.ClientsGroup)
}

// memberItems are a member's server and peer certificates, and the
// cluster's shared client certificates (kept on the controller).
func memberItems(c *etcd.Cluster, pki etcd.StatePKI, m etcd.Member) []item {
	sans := c.MemberSANs(m)
	srvCrt, srvKey := pki.Server(m.Name)
	peerCrt, peerKey := pki.Peer(m.Name)
	items := []item{
		{kind: Server, name: m.Name, cn: m.Name, sans: sans, certPath: srvCrt, keyPath: srvKey, hostFile: "server"},
		{kind: Peer, name: m.Name, cn: etcd.PeerCN, sans: sans, certPath: peerCrt, keyPath: peerKey, hostFile: "peer"},
	}
	for _, cn := range append([]string{etcd.EtcdplayClientCN}, c.ClientCertNames...) {
		crt, key := pki.Client(cn)
		items = append(items, item{kind: Client, name: cn, cn: cn, certPath: crt, keyPath: key, shared: true})
	}
	return items
}

// proxyItems are a grpc-proxy's own client certificate (with an empty CN:
// see etcd.Proxy.CertName), and its server certificate when it serves
// local clients over TLS. A gateway needs neither: it forwards TCP, and
// its clients do TLS with the members.
func proxyItems(c *etcd.Cluster, pki etcd.StatePKI, px etcd.Proxy) []item {
	name := px.CertName()
	var items []item
	if px.Mode == etcd.ProxyGRPC && c.TLS {
		crt, key := pki.Client(name)
		items = append(items, item{kind: Client, name: name, cn: "", certPath: crt, keyPath: key, hostFile: "client"})
	}
	if px.TLS {
		srvCrt, srvKey := pki.Server(name)
		items = append(items, item{kind: Server, name: name, cn: px.Host, sans: px.SANs(), certPath: srvCrt, keyPath: srvKey, hostFile: "server"})
	}
	return items
}

func (Module) Apply(ctx context.Context, env *modules.Env, ch *modules.Change) (*modules.Result, error) {
	p := ch.Payload.(*plan)
	if err := persist(p, env); err != nil {
		return nil, fmt.Errorf("etcd_pki on %s: %w", env.Host, err)
	}
	if p.hostArgs == nil {
		return &modules.Result{Status: modules.StatusChanged, Change: ch}, nil
	}
	w, err := env.Writer(env.Host)
	if err != nil {
		return nil, fmt.Errorf("etcd_pki: %w", err)
	}
	res, err := w.Apply(ctx, "etcd_files", p.hostArgs)
	if err != nil {
		return nil, fmt.Errorf("etcd_pki on %s: %w", env.Host, err)
	}
	if res.Status == modules.StatusFailed {
		return res, fmt.Errorf("etcd_pki on %s: %s", env.Host, res.Msg)
	}
	if p.member.ClientURL != "" && leafIssued(p) {
		if err := checkServed(ctx, env, p); err != nil {
			return nil, fmt.Errorf("etcd_pki on %s: %w", env.Host, err)
		}
	}
	return &modules.Result{Status: modules.StatusChanged, Change: ch}, nil
}

// persist writes what the plan issued into the state directory, under the
// process lock and the directory's file lock.
func persist(p *plan, env *modules.Env) error {
	st := storeFor(p.dir)
	st.mu.Lock()
	defer st.mu.Unlock()
	if !p.caNew && !anyIssued(p) && !p.nextNew && !p.promote && !p.done {
		return nil
	}
	unlock, err := lockDir(p.dir)
	if err != nil {
		return err
	}
	defer unlock()
	if p.caNew {
		cur, err := os.ReadFile(p.caPaths[0])
		switch {
		case err == nil && !bytes.Equal(cur, p.ca.Cert):
			return fmt.Errorf("%s appeared while this run was planning (another etcdplay run?); run again", p.caPaths[0])
		case err != nil:
			if err := writePair(p.caPaths[0], p.caPaths[1], p.ca.Pair); err != nil {
				return err
			}
			env.Logf("created CA %s", p.caPaths[0])
		}
		delete(st.pending, p.caPaths[0])
	}
	for _, it := range p.items {
		if !it.issue {
			continue
		}
		if err := writePair(it.certPath, it.keyPath, it.pair); err != nil {
			return err
		}
		delete(st.pending, it.certPath)
	}
	if err := persistRotation(p, p.cluster.PKI(env.StateDir), env.Logf); err != nil {
		return err
	}
	delete(st.pending, p.cluster.PKI(env.StateDir).NextCACert())
	return nil
}

// leafIssued reports whether the member's own server or peer certificate
// was (re-)issued.
func leafIssued(p *plan) bool {
	for _, it := range p.items {
		if it.issue && !it.shared {
			return true
		}
	}
	return false
}

func anyIssued(p *plan) bool {
	for _, it := range p.items {
		if it.issue {
			return true
		}
	}
	return false
}

// loadCA finds the CA: the user's (etcd_ca_cert/etcd_ca_key), the one in
// the state dir, one a concurrent plan already made, or a new one.
// Callers hold s.mu.
func (s *store) loadCA(c *etcd.Cluster, pki etcd.StatePKI) (*CA, bool, error) {
	if c.CACertFile != "" {
		crt, err := os.ReadFile(c.CACertFile)
		if err != nil {
			return nil, false, fmt.Errorf("etcd_ca_cert: %w", err)
		}
		key, err := os.ReadFile(c.CAKeyFile)
		if err != nil {
			return nil, false, fmt.Errorf("etcd_ca_key: %w", err)
		}
		ca, err := LoadCA(crt, key)
		if err != nil {
			return nil, false, fmt.Errorf("etcd_ca_cert/etcd_ca_key: %w", err)
		}
		return ca, false, nil
	}
	if err := settlePromotion(pki); err != nil {
		return nil, false, err
	}
	return s.caAt(pki.CACert(), pki.CAKey(), c.Name+"-ca", c.CAValidity)
}

// caAt is the CA whose pair is at certPath/keyPath: on disk, pending from
// a plan of this process, or (name not "") a new one made pending. New
// reports that it is not on disk yet; nil without a name and none there.
// Callers hold s.mu.
func (s *store) caAt(certPath, keyPath, name string, validity time.Duration) (ca *CA, isNew bool, err error) {
	pair, ok, err := readPair(certPath, keyPath)
	if err != nil {
		return nil, false, err
	}
	if ok {
		ca, err := LoadCA(pair.Cert, pair.Key)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", certPath, err)
		}
		return ca, false, nil
	}
	if p, ok := s.pending[certPath]; ok {
		ca, err := LoadCA(p.Cert, p.Key)
		return ca, true, err
	}
	if name == "" {
		return nil, false, nil
	}
	if ca, err = NewCA(name, validity); err != nil {
		return nil, false, err
	}
	s.pending[certPath] = ca.Pair
	return ca, true, nil
}

// resolve fills it.pair from disk when still good, else from a pending
// issue that is, else issues anew. It returns why it (re)issues, "new"
// for a first issue, or "" when the disk copy stands. Callers hold s.mu.
func (s *store) resolve(it *item, ca *CA, validity, renewBefore time.Duration, rotate bool) (string, error) {
	disk, ok, err := readPair(it.certPath, it.keyPath)
	if err != nil {
		return "", err
	}
	reason := "new"
	if ok {
		reason = Reason(disk, ca, it.cn, it.sans, now(), renewBefore)
		if reason == "" && rotate {
			// Once per run: the first plan to get here rotates it, and
			// plans made while that rotation is still pending (members
			// planned in parallel) share it and report it too.
			_, pending := s.pending[it.certPath]
			if !s.rotated[it.certPath] || pending {
				reason = "rotation asked for"
				s.rotated[it.certPath] = true
			}
		}
		if reason == "" {
			it.pair = disk
			return "", nil
		}
		reason = "re-issue: " + reason
	}
	it.issue = true
	if p, ok := s.pending[it.certPath]; ok && Reason(p, ca, it.cn, it.sans, now(), renewBefore) == "" {
		it.pair = p
		return reason, nil
	}
	if it.pair, err = ca.Issue(it.kind, it.cn, it.sans, validity); err != nil {
		return "", err
	}
	s.pending[it.certPath] = it.pair
	return reason, nil
}

// ownsShared reports whether this host's plan reports the cluster-wide
// items (the CA, client certificates): the first member in the play does,
// so a plan shows them once. Every host's Apply still writes them if they
// are missing, so nothing depends on that host succeeding.
func ownsShared(c *etcd.Cluster, env *modules.Env) bool {
	if env.Hosts == nil {
		return true // no view of the play: report everything
	}
	for _, m := range c.Members {
		if _, inPlay := env.Hosts[m.Host]; inPlay {
			return m.Host == env.Host
		}
	}
	return true
}

func init() {
	// cfssl logs every CSR and signature to stderr at info level; that
	// would interleave with etcdplay's own output. Its errors come back
	// as values anyway.
	cflog.Level = cflog.LevelCritical
	modules.Register("etcd_pki", Module{})
}

// Resolve checks the cluster model at compile time (and that the host is a
// member), so bad variables stop the run before any host is touched.
func (Module) Resolve(args modules.Args, rc *modules.ResolveContext) (modules.Args, error) {
	c, err := etcd.FromVars(rc.Vars)
	if err == nil {
		_, _, err = hostRole(c, rc.Host)
	}
	if err != nil {
		return nil, fmt.Errorf("etcd_pki for %s: %w", rc.Host, err)
	}
	return args, nil
}
