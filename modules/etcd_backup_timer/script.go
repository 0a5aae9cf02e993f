package etcd_backup_timer

// ScriptPath is where the backup script is installed.
const ScriptPath = "/usr/local/lib/etcdplay/etcd-backup"

// Script takes one snapshot and prunes. Its settings come from the
// service's Environment= lines (etcdctl reads ETCDCTL_* itself), so no
// value is ever spliced into shell code, and retention only ever removes
// names matching the exact pattern the script writes.
const Script = `#!/bin/sh
# Managed by etcdplay: one etcd snapshot into $ETCD_BACKUP_DIR, then keep
# the newest $ETCD_BACKUP_KEEP. Run by etcd-backup.service (etcd-backup.timer).
set -eu
dir=${ETCD_BACKUP_DIR:?ETCD_BACKUP_DIR is not set}
keep=${ETCD_BACKUP_KEEP:?ETCD_BACKUP_KEEP is not set}
etcdctl=${ETCD_BACKUP_ETCDCTL:-etcdctl}
case $keep in
  '' | *[!0-9]*) echo "etcd-backup: ETCD_BACKUP_KEEP=$keep is not a number" >&2; exit 2 ;;
esac
if [ "$keep" -lt 1 ]; then
  echo "etcd-backup: ETCD_BACKUP_KEEP must be at least 1" >&2
  exit 2
fi
name="snapshot-$(date -u +%Y%m%dT%H%M%SZ).db"
# etcdctl writes NAME.part and renames it once the whole snapshot is in.
"$etcdctl" snapshot save "$dir/$name"
# Names sort by time; the newest $keep stay.
ls -1 -- "$dir" | grep -E '^snapshot-[0-9]{8}T[0-9]{6}Z\.db$' | sort -r | tail -n +"$((keep + 1))" |
  while read -r old; do
    rm -f -- "$dir/$old"
  done
`
