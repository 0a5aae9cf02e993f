package etcd_defrag_timer

// ScriptPath is where the defrag script is installed.
const ScriptPath = "/usr/local/lib/etcdplay/etcd-defrag"

// Script defragments this member when the rule says so, and only when it
// is safe: every member healthy, no alarm but NOSPACE (which defrag
// cures), and etcdplay's operation lock taken, the same key every rolling
// step of etcdplay takes, so no two members (and no etcdplay run)
// defragment or restart at once. A run that finds the lock held skips: the
// next run tries again. Settings come from the service's Environment=.
const Script = `#!/bin/sh
# Managed by etcdplay: rule-based defrag of this member. Run by
# etcd-defrag.service (etcd-defrag.timer).
set -eu
name=${ETCD_DEFRAG_NAME:?}
self=${ETCD_DEFRAG_SELF:?}
all=${ETCD_DEFRAG_CLUSTER:?}
free_above=${ETCD_DEFRAG_FREE_ABOVE:?}
quota_limit=${ETCD_DEFRAG_QUOTA_LIMIT:?}
timeout=${ETCD_DEFRAG_TIMEOUT:?}
lock=${ETCD_DEFRAG_LOCK:?}
etcdctl=${ETCD_DEFRAG_ETCDCTL:-etcdctl}
log() { echo "etcd-defrag: $*"; }

# The db size and what of it is in use, from the member itself.
sizes() {
  "$etcdctl" --endpoints="$self" endpoint status -w json |
    sed -n 's/.*"dbSize":\([0-9]*\).*"dbSizeInUse":\([0-9]*\).*/\1 \2/p'
}
set -- $(sizes)
size=${1:?cannot read the db size of $self}
inuse=${2:?cannot read the db size in use of $self}
free=$((size - inuse))
if [ "$free" -le "$free_above" ] && { [ "$quota_limit" -eq 0 ] || [ "$size" -le "$quota_limit" ]; }; then
  log "$name: db $size bytes, $free free: the rule says no defrag"
  exit 0
fi

if ! "$etcdctl" --endpoints="$all" endpoint health >/dev/null 2>&1; then
  log "$name: not every member is healthy: no defrag now"
  exit 1
fi
if "$etcdctl" --endpoints="$all" alarm list | grep -v 'alarm:NOSPACE' | grep -q 'alarm:'; then
  log "$name: an alarm other than NOSPACE is raised: no defrag"
  exit 1
fi

lease=$("$etcdctl" --endpoints="$all" lease grant 30 | sed -n 's/^lease \([0-9a-f]*\) granted.*/\1/p')
[ -n "$lease" ] || { log "$name: cannot grant a lease for $lock (under NOSPACE, run maintenance.yml)"; exit 1; }
# etcdctl txn reads compares, then the ops on success, then those on
# failure, each ended by an empty line.
got=$(printf 'create("%s") = "0"\n\nput --lease=%s %s "defrag timer on %s"\n\n\n' "$lock" "$lease" "$lock" "$name" |
  "$etcdctl" --endpoints="$all" txn 2>&1 | head -n 1)
case $got in
SUCCESS) ;;
FAILURE)
  "$etcdctl" --endpoints="$all" lease revoke "$lease" >/dev/null 2>&1 || true
  log "$name: $lock is held (another member's defrag or an etcdplay run): skipped"
  exit 0 ;;
*)
  # Under NOSPACE the lock cannot be written: maintenance.yml is the cure.
  log "$name: cannot take $lock: $got"
  exit 1 ;;
esac
"$etcdctl" --endpoints="$all" lease keep-alive "$lease" >/dev/null 2>&1 &
keeper=$!
trap 'kill $keeper 2>/dev/null || true; "$etcdctl" --endpoints="$all" lease revoke "$lease" >/dev/null 2>&1 || true' EXIT

log "$name: defragmenting (db $size bytes, $free free)"
"$etcdctl" --endpoints="$self" --command-timeout="$timeout" defrag
"$etcdctl" --endpoints="$self" endpoint health >/dev/null
set -- $(sizes)
log "$name: defragmented: db $size -> ${1:-?} bytes"
`
