#!/usr/bin/env bash
# Copies and restores of a PostgreSQL server, with real processes
# (docs/PROTOCOL.md, "Copies and restores"): SQLite devices (sqlite3 CLI)
# sync with Postgres over libpq as a non-superuser role.
#   1. pg_dump of the server restored into a second database; both write
#      before and after and sync with each other and with devices.
#   2. the server put back from an older dump: devices give it back every
#      row it lost (its own writes they pulled included) and it hands out
#      no sequence they consumed.
#   3. a streaming standby, replay paused while the primary takes hundreds
#      of changes that devices sync, promoted: the same.
#   4. a copied device file (a restored phone backup) writing on both copies.
# Each ends with every peer holding the same rows, byte for byte, and every
# written row present. Prints "ok - …"/"not ok - …" and "N passed, M failed".
# PORT=N picks the first of two ports (default 5840); KEEP=1 keeps the files.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
EXT="$ROOT/lwwsync.so"
. scripts/test_lib.sh
[ -f "$EXT" ] || die "setup" "$EXT not built (make all)"
for cmd in sqlite3 psql pg_config; do command -v $cmd >/dev/null || die "setup" "$cmd not installed"; done
PGBIN=$(pg_config --bindir)
P1=${PORT:-5840}
P2=$((P1 + 1))

W=$(mktemp -d /tmp/lwwsync-restore.XXXXXX)
chmod 755 "$W"
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
cleanup() {
    scripts/pg_cluster.sh stop "$W/pg1" >/dev/null 2>&1
    [ -f "$W/pg2/data/postmaster.pid" ] && as_pg "'$PGBIN/pg_ctl' -D '$W/pg2/data' -m immediate -w stop" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "# kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

scripts/pg_cluster.sh start "$W/pg1" "$P1" >/dev/null || die "setup" "cannot start Postgres"
# psql as the superuser on cluster DIR, port, database
q() { psql -X -h "$1" -p "$2" -U postgres -d "$3" -Atq -v ON_ERROR_STOP=1 "${@:4}"; }
p1() { q "$W/pg1" "$P1" "$@"; }
url() { echo "postgresql://dev@/$3?host=$1&port=$2"; }   # DIR PORT DB, as the device role
SCHEMA_PG="CREATE EXTENSION lwwsync;
CREATE TABLE t(id text PRIMARY KEY, v text);
SELECT lww_track('t');
GRANT SELECT, INSERT, UPDATE, DELETE ON t TO dev;"
p1 postgres -c "CREATE ROLE dev LOGIN" -c "CREATE DATABASE app" || die "setup" "roles"
p1 app -c "$SCHEMA_PG" >/dev/null || die "setup" "schema"

# A device: a SQLite file.
dev() {  # NAME SQL...
    local name=$1; shift
    sqlite3 -bail "$W/$name.db" ".load $EXT" "$@"
}
new_dev() {
    sqlite3 -bail "$W/$1.db" ".load $EXT" "CREATE TABLE t(id TEXT PRIMARY KEY, v TEXT)" "SELECT lww_track('t')" >/dev/null
}
sync_dev() {  # NAME URL
    dev "$1" "SELECT lww_sync('$2')" >/dev/null 2>"$W/err" || { echo "# sync $1: $(cat "$W/err")"; return 1; }
}
# Rows written, one id a line: every peer must end with all of them.
WROTE="$W/wrote"
: >"$WROTE"
dev_write() {  # NAME PREFIX N
    dev "$1" "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $3)
              INSERT INTO t SELECT '$2-' || i, '$1 wrote $2 ' || i FROM k" >/dev/null
    for i in $(seq 1 "$3"); do echo "$2-$i"; done >>"$WROTE"
}
pg_write() {  # DIR PORT DB PREFIX N
    q "$1" "$2" "$3" -c "INSERT INTO t SELECT '$4-' || g, '$3 wrote $4 ' || g FROM generate_series(1, $5) g" >/dev/null
    for i in $(seq 1 "$5"); do echo "$4-$i"; done >>"$WROTE"
}
dev_rows() { dev "$1" "SELECT id || '|' || coalesce(v, '') FROM t ORDER BY id COLLATE BINARY"; }
pg_rows() { q "$1" "$2" "$3" -c "SELECT id || '|' || coalesce(v, '') FROM t ORDER BY id COLLATE \"C\""; }
# check NAME REFERENCE-FILE PEER-FILES...: identical and holding every written id.
check() {
    local name=$1 ref=$2; shift 2
    local bad=""
    for f in "$@"; do cmp -s "$ref" "$f" || bad="$bad $(basename "$f")"; done
    local missing
    missing=$(sort -u "$WROTE" | comm -23 - <(cut -d'|' -f1 "$ref" | sort -u) | head -5 | tr '\n' ' ')
    if [ -z "$bad" ] && [ -z "$missing" ]; then ok "$name ($(wc -l <"$ref") rows on $(($# + 1)) peers)"
    else not_ok "$name" "differ:${bad:- none}; missing: ${missing:-none}"; fi
}

# ------------------------------------------------------------ 1. dump into a second database
for d in d1 d2 d3; do new_dev $d; done
APP=$(url "$W/pg1" "$P1" app)
dev_write d1 s1d1 20; dev_write d2 s1d2 20
pg_write "$W/pg1" "$P1" app s1app 20
sync_dev d1 "$APP"; sync_dev d2 "$APP"; sync_dev d1 "$APP"
p1 app -c "INSERT INTO t VALUES ('unsynced-at-dump', 'app before the dump')" && echo unsynced-at-dump >>"$WROTE"
pg_dump -h "$W/pg1" -p "$P1" -U postgres app >"$W/app.sql" 2>"$W/err" || die "dump" "$(cat "$W/err")"
p1 postgres -c "CREATE DATABASE app2" || die "setup" "createdb app2"
p1 app2 -f "$W/app.sql" >/dev/null 2>"$W/err"
expect "restore into a second database: no error" "$(grep -c ERROR "$W/err")" "0"
APP2=$(url "$W/pg1" "$P1" app2)
id1=$(p1 app -c "SELECT lww_node_id()"); id2=$(p1 app2 -c "SELECT lww_node_id()")
[ -n "$id1" ] && [ "$id1" != "$id2" ] && ok "the restored database took a new node id" || not_ok "the restored database took a new node id" "$id1 / $id2"
expect "the old id is a retired node there" "$(p1 app2 -c "SELECT count(*) FROM lwwsync.retired WHERE node = '$id1'")" "1"
# Both write after the restore, the same number of changes, and devices sync with either.
pg_write "$W/pg1" "$P1" app s1after-app 15
pg_write "$W/pg1" "$P1" app2 s1after-app2 15
p1 app2 -c "UPDATE t SET v = 'app2 edit' WHERE id = 's1d1-1'" >/dev/null
dev_write d1 s1d1b 5; dev_write d3 s1d3 10
sync_dev d1 "$APP"; sync_dev d3 "$APP2"; sync_dev d2 "$APP2"
# Postgres to Postgres over libpq, both ways.
p1 app2 -c "SELECT lww_sync('postgresql:///app?host=$W/pg1&port=$P1&user=postgres')" >/dev/null 2>"$W/err" || not_ok "app2 syncs with app" "$(cat "$W/err")"
p1 app -c "SELECT lww_sync('postgresql:///app2?host=$W/pg1&port=$P1&user=postgres')" >/dev/null 2>"$W/err" || not_ok "app syncs with app2" "$(cat "$W/err")"
for d in d1 d2 d3; do sync_dev $d "$APP"; done
p1 app2 -c "SELECT lww_sync('postgresql:///app?host=$W/pg1&port=$P1&user=postgres')" >/dev/null
for d in d1 d2 d3; do sync_dev $d "$APP2"; done
pg_rows "$W/pg1" "$P1" app >"$W/r.app"; pg_rows "$W/pg1" "$P1" app2 >"$W/r.app2"
for d in d1 d2 d3; do dev_rows $d >"$W/r.$d"; done
check "dump restored into a second database: all peers converge" "$W/r.app" "$W/r.app2" "$W/r.d1" "$W/r.d2" "$W/r.d3"
expect "the edit made on the restored database reached the original" "$(p1 app -c "SELECT v FROM t WHERE id = 's1d1-1'")" "app2 edit"

# ------------------------------------------------------------ 2. server put back from an older dump
p1 postgres -c "DROP DATABASE app2" >/dev/null
pg_dump -h "$W/pg1" -p "$P1" -U postgres app >"$W/backup.sql" 2>"$W/err" || die "dump" "$(cat "$W/err")"
old_id=$(p1 app -c "SELECT lww_node_id()")
# After the backup: the server writes (its P-late rows), devices push and pull.
pg_write "$W/pg1" "$P1" app s2server 200
dev_write d1 s2d1 30; dev_write d2 s2d2 30
for d in d1 d2 d3; do sync_dev $d "$APP"; done
sync_dev d1 "$APP"
seq_before=$(p1 app -c "SELECT lww_seq()")
# Disaster: the server is put back from the backup.
p1 postgres -c "DROP DATABASE app" -c "CREATE DATABASE app" >/dev/null
p1 app -f "$W/backup.sql" >/dev/null 2>"$W/err"
expect "restore of the backup: no error" "$(grep -c ERROR "$W/err")" "0"
expect "the restored server lost the rows written after the backup" "$(p1 app -c "SELECT count(*) FROM t WHERE id LIKE 's2%'")" "0"
new_id=$(p1 app -c "SELECT lww_node_id()")
[ "$new_id" != "$old_id" ] && ok "the restored server took a new node id" || not_ok "the restored server took a new node id" "$new_id"
dev_write d3 s2d3 10
pg_write "$W/pg1" "$P1" app s2after 10
for d in d1 d2 d3; do sync_dev $d "$APP" || not_ok "device $d syncs with the restored server"; done
for d in d1 d2 d3; do sync_dev $d "$APP"; done
pg_rows "$W/pg1" "$P1" app >"$W/r.app"
for d in d1 d2 d3; do dev_rows $d >"$W/r.$d"; done
check "server restored from an older backup: every row back, all peers converge" "$W/r.app" "$W/r.d1" "$W/r.d2" "$W/r.d3"
expect "its own lost writes came back from devices" "$(p1 app -c "SELECT count(*) FROM t WHERE id LIKE 's2server-%'")" "200"
expect "no register was refused" "$(p1 app -c "SELECT count(*) FROM lww_rejected" 2>/dev/null || echo 0)" "0"

# ------------------------------------------------------------ 3. a lagging standby promoted
as_pg "'$PGBIN/pg_basebackup' -h '$W/pg1' -p $P1 -U postgres -D '$W/pg2/data' -R -X stream" >/dev/null 2>"$W/err" ||
    { mkdir -p "$W/pg2" && chown postgres "$W/pg2" 2>/dev/null; as_pg "'$PGBIN/pg_basebackup' -h '$W/pg1' -p $P1 -U postgres -D '$W/pg2/data' -R -X stream" >/dev/null 2>"$W/err"; } ||
    die "standby" "pg_basebackup: $(cat "$W/err")"
as_pg "'$PGBIN/pg_ctl' -D '$W/pg2/data' -o \"-p $P2 -k '$W/pg2' -c listen_addresses='' -c hot_standby=on\" -l '$W/pg2/server.log' -w start" >/dev/null ||
    die "standby" "cannot start the standby"
p2() { q "$W/pg2" "$P2" "$@"; }
for _ in $(seq 1 50); do [ "$(p2 app -c "SELECT count(*) FROM t" 2>/dev/null)" = "$(p1 app -c "SELECT count(*) FROM t")" ] && break; sleep 0.2; done
expect "the standby replays" "$(p2 app -c "SELECT pg_is_in_recovery()")" "t"
p2 app -c "SELECT pg_wal_replay_pause()" >/dev/null
standby_had=$(p2 app -c "SELECT count(*) FROM t")
primary_id=$(p1 app -c "SELECT lww_node_id()")
# The primary takes hundreds of changes the standby does not replay; devices sync them.
pg_write "$W/pg1" "$P1" app s3late 300
p1 app -c "UPDATE t SET v = 'late update' WHERE id LIKE 's2d1-%'" >/dev/null
dev_write d1 s3d1 50; dev_write d2 s3d2 50
for d in d1 d2 d3; do sync_dev $d "$APP"; done
sync_dev d1 "$APP"
expect "the standby is behind by hundreds of changes" "$(p2 app -c "SELECT count(*) FROM t")" "$standby_had"
# Failover: the old primary goes away, the standby is promoted.
scripts/pg_cluster.sh stop "$W/pg1" >/dev/null
# (pg_ctl, not pg_promote(): resumed replay would cancel the waiting session.)
as_pg "'$PGBIN/pg_ctl' -D '$W/pg2/data' -w -t 60 promote" >/dev/null || die "standby" "cannot promote"
for _ in $(seq 1 100); do [ "$(p2 app -c "SELECT pg_is_in_recovery()" 2>/dev/null)" = "f" ] && break; sleep 0.2; done
expect "promoted" "$(p2 app -c "SELECT pg_is_in_recovery()")" "f"
NEW=$(url "$W/pg2" "$P2" app)
promoted_id=$(p2 app -c "SELECT lww_node_id()")
[ "$promoted_id" != "$primary_id" ] && ok "the promoted standby took a new node id" || not_ok "the promoted standby took a new node id" "$promoted_id"
dev_write d3 s3d3 10
pg_write "$W/pg2" "$P2" app s3new 10
for d in d1 d2 d3; do sync_dev $d "$NEW" || not_ok "device $d syncs with the promoted standby"; done
for d in d1 d2 d3; do sync_dev $d "$NEW"; done
pg_rows "$W/pg2" "$P2" app >"$W/r.new"
for d in d1 d2 d3; do dev_rows $d >"$W/r.$d"; done
check "lagging standby promoted: every row back, all peers converge" "$W/r.new" "$W/r.d1" "$W/r.d2" "$W/r.d3"
expect "the late update came back" "$(p2 app -c "SELECT count(*) FROM t WHERE v = 'late update'")" "30"
# No sequence devices consumed is handed out again under the id they know it
# by: their cursors on the new id are within what the promoted server made.
seq_new=$(p2 app -c "SELECT lww_seq()")
over=$(for d in d1 d2 d3; do dev $d "SELECT count(*) FROM lww_peers WHERE node = '$promoted_id' AND received > $seq_new"; done | awk "{s += \$1} END {print s + 0}")
expect "device cursors on the promoted server are within its sequence" "$over" "0"

# ------------------------------------------------------------ 4. a copied device file
cp "$W/d1.db" "$W/d1copy.db"
dev_write d1 s4orig 5; dev_write d1copy s4copy 5
dev d1copy "UPDATE t SET v = 'copy edit' WHERE id = 's1d1-2'" >/dev/null
sync_dev d1 "$NEW"; sync_dev d1copy "$NEW"; sync_dev d1 "$NEW"
for d in d2 d3 d1copy; do sync_dev $d "$NEW"; done
[ "$(dev d1 "SELECT lww_node_id()")" != "$(dev d1copy "SELECT lww_node_id()")" ] && ok "the copy took a new node id" || not_ok "the copy took a new node id"
pg_rows "$W/pg2" "$P2" app >"$W/r.new"
for d in d1 d2 d3 d1copy; do dev_rows $d >"$W/r.$d"; done
check "a copied device file: every write on both copies everywhere" "$W/r.new" "$W/r.d1" "$W/r.d2" "$W/r.d3" "$W/r.d1copy"

finish
