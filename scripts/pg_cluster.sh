#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for tests and the demo.
#   scripts/pg_cluster.sh start DIR PORT   initdb (if needed) + start; socket in DIR
#   scripts/pg_cluster.sh stop DIR
# initdb refuses root: as root, the cluster runs as the "postgres" user.
set -euo pipefail
BIN=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
[ -x "$BIN/initdb" ] || BIN=/usr/lib/postgresql/15/bin
cmd=${1:?start|stop} dir=${2:?directory}
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}
case "$cmd" in
start)
    port=${3:?port}
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "'$BIN/initdb' -D '$dir/data' -A trust -U postgres --no-sync >'$dir/initdb.log' 2>&1"
    fi
    as_owner "'$BIN/pg_ctl' -D '$dir/data' -o \"-p $port -k '$dir' -c listen_addresses='' -c fsync=off\" -l '$dir/server.log' -w start >/dev/null"
    ;;
stop)
    [ -f "$dir/data/postmaster.pid" ] && as_owner "'$BIN/pg_ctl' -D '$dir/data' -m fast -w stop >/dev/null" || true
    ;;
*) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
