#!/usr/bin/env bash
# Three regions, multi-primary: three PostgreSQL servers, each behind its own
# lwwsync-server, syncing with each other over HTTP in a ring
# (lww_sync('http://…') as a relay role: r1 -> r2 -> r3 -> r1), each with
# its own SQLite clients writing and syncing concurrently. One row is
# written in all three regions: the last write wins everywhere. After the
# rounds every server and every client holds the same rows byte for byte,
# and every event inserted anywhere is present once.
#
# SEED=N replays the workload; ROUNDS=N sizes it; KEEP=1 keeps the files.
# PG_PORT_BASE / GW_PORT_BASE pick fixed ports (else free ones).
# Prints "ok - …"/"not ok - …" per check and ends with "N passed, M failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
EXT="$ROOT/lwwsync.so"
GATEWAY="$ROOT/server/lwwsync-server"
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
ROUNDS=${ROUNDS:-4}
echo "# regions seed $SEED (replay: SEED=$SEED tests/e2e/regions.sh)"

. scripts/test_lib.sh
. scripts/free_port.sh

for bin in "$EXT" "$GATEWAY"; do [ -f "$bin" ] || die "setup" "$bin not built (make all)"; done
for cmd in sqlite3 psql curl openssl pg_config; do command -v $cmd >/dev/null || die "setup" "$cmd not installed (scripts/deps.sh)"; done

REGIONS=(r1 r2 r3)
declare -A PGP GWP
i=0
for r in "${REGIONS[@]}"; do
    if [ -n "${PG_PORT_BASE:-}" ]; then PGP[$r]=$((PG_PORT_BASE + i)); else PGP[$r]=$(free_port); fi
    if [ -n "${GW_PORT_BASE:-}" ]; then GWP[$r]=$((GW_PORT_BASE + i)); else GWP[$r]=$(free_port); fi
    i=$((i + 1))
done

W=$(mktemp -d /tmp/lwwsync-regions.XXXXXX)
chmod 755 "$W"
GW_PIDS=()
cleanup() {
    for p in "${GW_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    jobs -p | xargs -r kill -9 2>/dev/null
    for r in "${REGIONS[@]}"; do scripts/pg_cluster.sh stop "$W/$r" >/dev/null 2>&1; done
    if [ -n "${KEEP:-}" ]; then echo "# kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

pg() { local r=$1; shift; psql -X -h "$W/$r" -p "${PGP[$r]}" -U postgres -d app -Atq -v ON_ERROR_STOP=1 "$@"; }

SECRET="regions-secret-that-is-at-least-32-characters-long"
jwt() { jwt_hs256 "$SECRET" "$1"; }
EXP=$(( $(date +%s) + 7200 ))
DEVICE_OPTS="{\"token\":\"$(jwt "{\"role\":\"app_user\",\"sub\":\"device\",\"exp\":$EXP}")\"}"
# Servers sync with each other as a relay (docs/SECURITY.md): they forward
# registers stamped by other regions' devices.
RELAY_OPTS="{\"token\":\"$(jwt "{\"role\":\"replicator\",\"sub\":\"region\",\"exp\":$EXP}")\"}"

# ------------------------------------------------------------------ servers
for r in "${REGIONS[@]}"; do
    scripts/pg_cluster.sh start "$W/$r" "${PGP[$r]}" >/dev/null || die "setup" "cannot start Postgres $r"
    psql -X -h "$W/$r" -p "${PGP[$r]}" -U postgres -d postgres -qc "CREATE DATABASE app" || die "setup" "createdb $r"
    pg "$r" >/dev/null <<'SQL' || die "setup" "schema $r"
CREATE EXTENSION lwwsync;
CREATE TABLE todos(id text PRIMARY KEY, title text, n bigint, done int);
CREATE TABLE events(id text PRIMARY KEY, peer text, k bigint);
SELECT lww_track('todos'), lww_track('events');
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE app_user NOLOGIN;
CREATE ROLE replicator NOLOGIN;
GRANT app_user, replicator TO authenticator;
GRANT SELECT, INSERT, UPDATE, DELETE ON todos, events TO app_user, replicator;
INSERT INTO lwwsync.relays VALUES ('replicator');
SQL
    "$GATEWAY" --db-uri "host=$W/$r port=${PGP[$r]} dbname=app user=authenticator" --server-port "${GWP[$r]}" \
        --jwt-secret "$SECRET" --db-pool 4 >>"$W/gw-$r.log" 2>&1 &
    GW_PIDS+=($!)
done
for r in "${REGIONS[@]}"; do
    up=""
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:${GWP[$r]}/health" >/dev/null 2>&1 && { up=1; break; }
        sleep 0.1
    done
    [ -n "$up" ] || die "setup" "gateway $r: $(tail -2 "$W/gw-$r.log")"
done
url() { echo "http://127.0.0.1:${GWP[$1]}/rpc/lww_exchange"; }
declare -A NEXT=([r1]=r2 [r2]=r3 [r3]=r1)
ring_sync() {  # region: syncs with the next one in the ring
    pg "$1" -c "SET client_min_messages = warning" -c "SELECT lww_sync('$(url "${NEXT[$1]}")', '$RELAY_OPTS')"
}

# ------------------------------------------------------------------ clients
SCHEMA_SQ="CREATE TABLE todos(id TEXT PRIMARY KEY, title TEXT, n INTEGER, done INTEGER);
CREATE TABLE events(id TEXT PRIMARY KEY, peer TEXT, k INTEGER);
SELECT lww_track('todos'), lww_track('events');"
sq() { local db=$1; shift; sqlite3 -bail "$W/$db.db" ".timeout 10000" ".load $EXT" "$@"; }
region_of() { echo "${1%%-*}"; }
sync_sq() { sq "$1" "SELECT lww_sync('$(url "$(region_of "$1")")', '$DEVICE_OPTS')"; }
CLIENTS=()
for r in "${REGIONS[@]}"; do for k in a b; do CLIENTS+=("$r-$k"); done; done
for c in "${CLIENTS[@]}"; do sq "$c" "$SCHEMA_SQ" >/dev/null || die "setup" "client $c"; done

DUMP_TODOS="SELECT id || '|' || coalesce(title, '~') || '|' || coalesce(CAST(n AS text), '~') || '|' || coalesce(CAST(done AS text), '~') FROM todos ORDER BY id"
DUMP_EVENTS="SELECT id || '|' || peer || '|' || CAST(k AS text) FROM events ORDER BY id"
dump_sq() { sq "$1" "$DUMP_TODOS;" "SELECT '--';" "$DUMP_EVENTS;" | LC_ALL=C sort; }
dump_pg() { pg "$1" -c "$DUMP_TODOS" -c "SELECT '--'" -c "$DUMP_EVENTS" | LC_ALL=C sort; }

# ------------------------------------------------------------------ 1. one row, three regions
# Written on a device in each region in turn, before any sync: r3's write is
# the last, and must win everywhere.
for r in "${REGIONS[@]}"; do
    sq "$r-a" "INSERT INTO todos VALUES ('contested', 'written in $r', 0, 0) ON CONFLICT (id) DO UPDATE SET title = excluded.title" \
        >/dev/null || die "contested write in $r"
    sleep 0.05
done
# ...and one written on the servers themselves, r1 last this time.
for r in r2 r3 r1; do
    pg "$r" -c "INSERT INTO todos VALUES ('contested-server', 'server $r', 1, 1) ON CONFLICT (id) DO UPDATE SET title = excluded.title" \
        >/dev/null || die "contested server write in $r"
    sleep 0.05
done

# ------------------------------------------------------------------ 2. concurrent rounds
device() {  # client seed
    local c=$1 r i key sql
    RANDOM=$2
    for r in $(seq 1 "$ROUNDS"); do
        sql="BEGIN;"
        for i in $(seq 1 $((3 + RANDOM % 8))); do
            sql+="INSERT INTO events VALUES ('$c-$r-$i', '$c', $RANDOM);"
            echo "$c-$r-$i" >>"$W/inserted.$c"
        done
        for i in 1 2 3; do
            key="todo-$((RANDOM % 15))"
            case $((RANDOM % 4)) in
                0) sql+="DELETE FROM todos WHERE id = '$key';" ;;
                *) sql+="INSERT INTO todos VALUES ('$key', '$c r$r', $RANDOM, 0) ON CONFLICT (id) DO UPDATE SET title = excluded.title, n = excluded.n;" ;;
            esac
        done
        sql+="COMMIT;"
        sq "$c" "$sql" >/dev/null 2>>"$W/write-errors" || echo "$c write failed" >>"$W/write-errors"
        sync_sq "$c" >/dev/null 2>>"$W/sync-log" || echo "$c sync failed (retried later)" >>"$W/sync-log"
    done
}
region() {  # region seed: local writes and ring syncs
    local g=$1 r
    RANDOM=$2
    for r in $(seq 1 "$ROUNDS"); do
        pg "$g" -c "INSERT INTO events VALUES ('$g-server-$r', '$g', $RANDOM)" >/dev/null 2>>"$W/write-errors" \
            && echo "$g-server-$r" >>"$W/inserted.$g"
        pg "$g" -c "UPDATE todos SET done = 1 WHERE id = 'todo-$((RANDOM % 15))'" >/dev/null 2>>"$W/write-errors"
        ring_sync "$g" >/dev/null 2>>"$W/sync-log" || echo "$g ring sync failed (retried later)" >>"$W/sync-log"
    done
}
pids=()
s=$SEED
for c in "${CLIENTS[@]}"; do s=$((s + 1)); device "$c" $s & pids+=($!); done
for g in "${REGIONS[@]}"; do s=$((s + 1)); region "$g" $s & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
if [ -s "$W/write-errors" ]; then not_ok "concurrent writes" "$(head -3 "$W/write-errors")"
else ok "${#CLIENTS[@]} devices in 3 regions and the 3 servers wrote and synced concurrently ($ROUNDS rounds)"; fi

# ------------------------------------------------------------------ 3. convergence
# Devices up to their region, the ring twice round (a change crosses at most
# two hops), devices again.
errors=""
for c in "${CLIENTS[@]}"; do sync_sq "$c" >/dev/null 2>>"$W/final-log" || errors+=" $c"; done
for _ in 1 2; do for g in "${REGIONS[@]}"; do ring_sync "$g" >/dev/null 2>>"$W/final-log" || errors+=" ring-$g"; done; done
for c in "${CLIENTS[@]}"; do sync_sq "$c" >/dev/null 2>>"$W/final-log" || errors+=" $c"; done
if [ -z "$errors" ]; then ok "final syncs: devices, the ring twice, devices"
else not_ok "final syncs" "failed:$errors; $(tail -2 "$W/final-log")"; fi

dump_pg r1 >"$W/r1.dump"
bad=""
for g in r2 r3; do
    dump_pg "$g" >"$W/$g.dump"
    cmp -s "$W/r1.dump" "$W/$g.dump" || bad+=" $g($(diff "$W/r1.dump" "$W/$g.dump" | head -3 | tr '\n' ' '))"
done
for c in "${CLIENTS[@]}"; do
    dump_sq "$c" >"$W/$c.dump"
    cmp -s "$W/r1.dump" "$W/$c.dump" || bad+=" $c($(diff "$W/r1.dump" "$W/$c.dump" | head -3 | tr '\n' ' '))"
done
if [ -z "$bad" ]; then ok "3 servers and ${#CLIENTS[@]} devices hold the same $(grep -c . "$W/r1.dump") rows byte for byte"
else not_ok "regions differ" "$bad"; fi

expect "the row written in all three regions: the last write (r3's device) wins everywhere" \
    "$( (for g in "${REGIONS[@]}"; do pg "$g" -c "SELECT title FROM todos WHERE id = 'contested'"; done; for c in "${CLIENTS[@]}"; do sq "$c" "SELECT title FROM todos WHERE id = 'contested'"; done) | sort -u)" \
    "written in r3"
expect "the row written on all three servers: the last write (r1) wins everywhere" \
    "$( (for g in "${REGIONS[@]}"; do pg "$g" -c "SELECT title FROM todos WHERE id = 'contested-server'"; done; for c in "${CLIENTS[@]}"; do sq "$c" "SELECT title FROM todos WHERE id = 'contested-server'"; done) | sort -u)" \
    "server r1"

LC_ALL=C sort -u "$W"/inserted.* >"$W/expected.ids"
bad=""
for g in "${REGIONS[@]}"; do
    pg "$g" -c "SELECT id FROM events" | LC_ALL=C sort >"$W/$g.ids"
    cmp -s "$W/expected.ids" "$W/$g.ids" || bad+=" $g($(comm -3 "$W/expected.ids" "$W/$g.ids" | head -3 | tr '\n' ' '))"
done
if [ -z "$bad" ]; then ok "every event inserted anywhere is in every region once ($(grep -c . "$W/expected.ids"))"
else not_ok "events lost or extra" "$bad"; fi
expect "no gateway answered 500" "$(cat "$W"/gw-*.log | grep -c '"status":500')" "0"
finish
