# Managed by etcdplay: etcdctl against this member, for root.
[ "$(id -u)" = 0 ] || return 0
export ETCDCTL_API=3
export ETCDCTL_ENDPOINTS=http://127.0.1.2:2379
