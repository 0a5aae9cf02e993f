# Managed by etcdplay: etcdctl against this member, for root.
[ "$(id -u)" = 0 ] || return 0
export ETCDCTL_API=3
export ETCDCTL_ENDPOINTS=https://127.0.1.2:2379
export ETCDCTL_CACERT=/etc/etcd/pki/ca.crt
export ETCDCTL_CERT=/etc/etcd/pki/server.crt
export ETCDCTL_KEY=/etc/etcd/pki/server.key
