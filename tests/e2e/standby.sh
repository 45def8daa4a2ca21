#!/usr/bin/env bash
# Pulls served by a streaming replica, over real processes: a primary and a
# hot standby (pg_basebackup -R), two gateways that each hold both
# (--db-uri primary, --db-read-uri standby) with SQLite clients alternating
# between them, and a third gateway pointed at the standby alone.
#   - a pull-only lww_exchange runs in a read-only transaction (on the
#     standby, and in BEGIN READ ONLY on the primary), round after round;
#   - a push reaching the standby fails with 25006 ("read-only"), over HTTP
#     503 with a hint, never a 500; a client whose batch holds its own
#     writes fails by name, one that would only echo others' rows goes on
#     (over HTTP and over libpq from another Postgres database);
#   - a transaction left open on the primary: the standby's pull gives up
#     after its bound and the gateway runs it on the primary;
#   - rounds of concurrent writes and syncs through both gateways, pulls
#     served by the standby (the gateway log says "db":"replica"), converge
#     byte for byte with the primary and the standby; every event present once.
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
echo "# standby seed $SEED (replay: SEED=$SEED tests/e2e/standby.sh)"

. scripts/test_lib.sh
. scripts/free_port.sh

for bin in "$EXT" "$GATEWAY"; do [ -f "$bin" ] || die "setup" "$bin not built (make all)"; done
for cmd in sqlite3 psql curl openssl pg_config; do command -v $cmd >/dev/null || die "setup" "$cmd not installed (scripts/deps.sh)"; done
PGBIN=$(pg_config --bindir)

n_pg=0 n_gw=0
pg_port() { if [ -n "${PG_PORT_BASE:-}" ]; then echo $((PG_PORT_BASE + n_pg)); else free_port; fi; }
gw_port() { if [ -n "${GW_PORT_BASE:-}" ]; then echo $((GW_PORT_BASE + n_gw)); else free_port; fi; }
P1=$(pg_port); n_pg=1; P2=$(pg_port)
G1=$(gw_port); n_gw=1; G2=$(gw_port); n_gw=2; G3=$(gw_port); n_gw=3; G4=$(gw_port)

W=$(mktemp -d /tmp/lwwsync-standby.XXXXXX)
chmod 755 "$W"
GW_PIDS=()
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
cleanup() {
    for p in "${GW_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    jobs -p | xargs -r kill -9 2>/dev/null
    scripts/pg_cluster.sh stop "$W/pg2" >/dev/null 2>&1
    scripts/pg_cluster.sh stop "$W/pg1" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "# kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ primary + standby
scripts/pg_cluster.sh start "$W/pg1" "$P1" >/dev/null || die "setup" "cannot start the primary"
pg1() { psql -X -h "$W/pg1" -p "$P1" -U postgres -d app -Atq -v ON_ERROR_STOP=1 "$@"; }
pg2() { psql -X -h "$W/pg2" -p "$P2" -U postgres -d app -Atq -v ON_ERROR_STOP=1 "$@"; }
psql -X -h "$W/pg1" -p "$P1" -U postgres -d postgres -qc "CREATE DATABASE app" || die "setup" "createdb"
pg1 >/dev/null <<'SQL' || die "setup" "schema"
CREATE EXTENSION lwwsync;
CREATE TABLE todos(id text PRIMARY KEY, title text, n bigint, done int);
CREATE TABLE events(id text PRIMARY KEY, peer text, k bigint);
SELECT lww_track('todos'), lww_track('events');
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE app_user NOLOGIN;
GRANT app_user TO authenticator;
GRANT SELECT, INSERT, UPDATE, DELETE ON todos, events TO app_user;
SQL
mkdir -p "$W/pg2"
[ "$(id -u)" -eq 0 ] && chown postgres "$W/pg2"
as_postgres "'$PGBIN/pg_basebackup' -h '$W/pg1' -p $P1 -U postgres -D '$W/pg2/data' -R -X stream -c fast" \
    >"$W/basebackup.log" 2>&1 || die "setup" "pg_basebackup: $(tail -2 "$W/basebackup.log")"
scripts/pg_cluster.sh start "$W/pg2" "$P2" >/dev/null || die "setup" "cannot start the standby"
expect "the standby is a hot standby" "$(pg2 -c "SELECT pg_is_in_recovery()")" "t"

# Waits until the standby replayed everything the primary wrote so far.
caught_up() {
    local lsn i
    lsn=$(pg1 -c "SELECT pg_current_wal_lsn()")
    for i in $(seq 1 300); do
        [ "$(pg2 -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" = t ] && return 0
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------------ gateways
SECRET="standby-secret-that-is-at-least-32-characters-long"
jwt() { jwt_hs256 "$SECRET" "$1"; }
TOKEN=$(jwt "{\"role\":\"app_user\",\"sub\":\"device\",\"exp\":$(( $(date +%s) + 7200 ))}")
OPTS="{\"token\":\"$TOKEN\",\"retries\":0}"
PRIMARY="host=$W/pg1 port=$P1 dbname=app user=authenticator"
STANDBY="host=$W/pg2 port=$P2 dbname=app user=authenticator"
start_gateway() {  # port log args...
    local port=$1 log=$2
    shift 2
    "$GATEWAY" --server-port "$port" --jwt-secret "$SECRET" --db-pool 4 "$@" >>"$log" 2>&1 &
    GW_PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
start_gateway "$G1" "$W/gw1.log" --db-uri "$PRIMARY" --db-read-uri "$STANDBY" || die "setup" "gateway 1: $(tail -2 "$W/gw1.log")"
start_gateway "$G2" "$W/gw2.log" --db-uri "$PRIMARY" --db-read-uri "$STANDBY" || die "setup" "gateway 2: $(tail -2 "$W/gw2.log")"
start_gateway "$G3" "$W/gw3.log" --db-uri "$STANDBY" || die "setup" "standby-only gateway: $(tail -2 "$W/gw3.log")"
URL1="http://127.0.0.1:$G1/rpc/lww_exchange"
URL2="http://127.0.0.1:$G2/rpc/lww_exchange"
URL3="http://127.0.0.1:$G3/rpc/lww_exchange"

SCHEMA_SQ="CREATE TABLE todos(id TEXT PRIMARY KEY, title TEXT, n INTEGER, done INTEGER);
CREATE TABLE events(id TEXT PRIMARY KEY, peer TEXT, k INTEGER);
SELECT lww_track('todos'), lww_track('events');"
sq() { local db=$1; shift; sqlite3 -bail "$W/$db.db" ".timeout 10000" ".load $EXT" "$@"; }
sync_sq() { sq "$1" "SELECT lww_sync('$2', '$OPTS')"; }
CLIENTS=(c1 c2 c3)
for c in "${CLIENTS[@]}" reader pusher; do sq "$c" "$SCHEMA_SQ" >/dev/null || die "setup" "client $c"; done

DUMP_TODOS="SELECT id || '|' || coalesce(title, '~') || '|' || coalesce(CAST(n AS text), '~') || '|' || coalesce(CAST(done AS text), '~') FROM todos ORDER BY id"
DUMP_EVENTS="SELECT id || '|' || peer || '|' || CAST(k AS text) FROM events ORDER BY id"
dump_sq() { sq "$1" "$DUMP_TODOS;" "SELECT '--';" "$DUMP_EVENTS;" | LC_ALL=C sort; }
dump_pg() { "$1" -c "$DUMP_TODOS" -c "SELECT '--'" -c "$DUMP_EVENTS" | LC_ALL=C sort; }

# ------------------------------------------------------------------ 1. read-only exchanges
pg1 -c "INSERT INTO todos VALUES ('seed-1', 'from the primary', 1, 0), ('seed-2', 'also', 2, 1)" >/dev/null
caught_up || die "setup" "the standby did not catch up"
HELLO="{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"10000000-0000-4000-8000-000000000001\",\"limit\":100,\"limit_bytes\":65536}"
PULL="{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"10000000-0000-4000-8000-000000000001\",\"received\":\"0\",\"limit\":100,\"limit_bytes\":65536}"
ro_rounds() {  # psql-function label
    local out i bad=""
    for i in 1 2 3; do
        out=$("$1" -c "SET ROLE app_user" -c "SELECT lww_exchange('$HELLO'::json)->>'acked'" \
                   -c "SELECT json_array_length(lww_exchange('$PULL'::json)->'pull'->'tables'->0->'rows')" 2>&1) || bad+=" round $i: $out"
    done
    if [ -z "$bad" ]; then ok "$2: three rounds of hello + pull, read-only ($(tail -1 <<<"$out") rows pulled)"
    else not_ok "$2" "$bad"; fi
}
ro_rounds pg2 "pull-only lww_exchange on the standby"
pg1_ro() { pg1 -c "SET default_transaction_read_only = on" "$@"; }
ro_rounds pg1_ro "pull-only lww_exchange in a read-only transaction on the primary"
expect "a pull-only round trip binds no node (first push does)" \
    "$(pg1 -c "SELECT count(*) FROM lwwsync.bindings WHERE node = '10000000-0000-4000-8000-000000000001'")" "0"

PUSH="{\"format\":\"lwwsync.exchange\",\"version\":1,\"node\":\"10000000-0000-4000-8000-000000000001\",\"limit\":100,\"limit_bytes\":65536,\"push\":{\"format\":\"lwwsync.changeset\",\"version\":1,\"origin\":\"10000000-0000-4000-8000-000000000001\",\"since\":\"0\",\"after\":\"0\",\"tables\":[],\"upto\":\"0\",\"nodes\":[]}}"
out=$(pg2 -c "\\set VERBOSITY verbose" -c "SET ROLE app_user" -c "SELECT lww_exchange('$PUSH'::json)" 2>&1)
expect_match "a push on the standby fails with 25006, naming the primary" "$out" "25006.*read-only.*send pushes to the primary"

# ------------------------------------------------------------------ 2. a gateway at the standby alone
# The reported bug: a fresh client's first pull worked, every later sync
# failed (SELECT FOR UPDATE in a read-only transaction, HTTP 500).
bad=""
for i in 1 2 3 4; do out=$(sync_sq reader "$URL3" 2>&1) || bad+=" sync $i: $out"; done
if [ -z "$bad" ]; then ok "a client with nothing to push syncs 4 times through the standby-only gateway"
else not_ok "syncs through the standby-only gateway" "$bad"; fi
expect "the reader pulled the primary's rows from the standby" "$(dump_sq reader)" "$(dump_pg pg1)"
sq pusher "INSERT INTO events VALUES ('pusher-1', 'pusher', 1)" >/dev/null
out=$(sync_sq pusher "$URL3" 2>&1)
expect_match "a push through the standby-only gateway fails as read-only (503, retriable elsewhere)" "$out" \
    "read-only.*1 row written here wait to be pushed.*primary"
code=$(curl -s -o "$W/push.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data "$PUSH" "$URL3")
expect "HTTP status of a push at the standby" "$code" "503"
expect_match "its body names 25006 and the primary" "$(cat "$W/push.json")" '"code":"25006".*read-only.*db-read-uri'
out=$(sync_sq pusher "$URL1" 2>&1)
expect_match "the same client's push succeeds through a gateway with both" "$out" '"pushed":1'

# ------------------------------------------------------------------ 2c. a Postgres client over libpq
# Another database syncs with the standby directly (lww_sync('postgresql://…')):
# pulls work, its own writes are refused by name, and go to the primary.
psql -X -h "$W/pg1" -p "$P1" -U postgres -d postgres -qc "CREATE DATABASE pgclient" || not_ok "createdb pgclient"
pgc() { psql -X -h "$W/pg1" -p "$P1" -U postgres -d pgclient -Atq -v ON_ERROR_STOP=1 "$@"; }
pgc >/dev/null <<'SQL' || not_ok "pgclient schema"
CREATE EXTENSION lwwsync;
CREATE TABLE todos(id text PRIMARY KEY, title text, n bigint, done int);
CREATE TABLE events(id text PRIMARY KEY, peer text, k bigint);
SELECT lww_track('todos'), lww_track('events');
SQL
caught_up || not_ok "the standby catches up"
STANDBY_PG="postgresql://postgres@/app?host=$W/pg2&port=$P2"
PRIMARY_PG="postgresql://postgres@/app?host=$W/pg1&port=$P1"
out=$(pgc -c "SET client_min_messages = warning" -c "SELECT lww_sync('$STANDBY_PG')" 2>&1)
expect_match "a Postgres client pulls from the standby over libpq" "$out" '"pulled": ?[1-9]'
expect "...and holds what the standby holds" "$(dump_pg pgc)" "$(dump_pg pg2)"
pgc -c "INSERT INTO events VALUES ('pgclient-1', 'pgclient', 1)" >/dev/null && echo pgclient-1 >>"$W/inserted.pgclient"
out=$(pgc -c "SET client_min_messages = warning" -c "SELECT lww_sync('$STANDBY_PG')" 2>&1)
expect_match "its own write is refused by the standby, by name" "$out" "read-only.*1 row written here wait to be pushed.*primary"
out=$(pgc -c "SET client_min_messages = warning" -c "SELECT lww_sync('$PRIMARY_PG')" 2>&1)
expect_match "...and reaches the primary" "$out" '"pushed": ?[1-9]'
expect "...where it is now" "$(pg1 -c "SELECT peer FROM events WHERE id = 'pgclient-1'")" "pgclient"

# ------------------------------------------------------------------ 2a. what the gateway routes where
# The gateway reads the top of the document: a non-null "push" or "forked":
# true goes to the primary; the rest (also "push": null, "forked": false)
# to the replica; a body it cannot read goes to the primary, which answers.
route() {  # body -> "status db" of that request's log line
    local n
    n=$(grep -c '"path":"/rpc/lww_exchange"' "$W/gw1.log")
    curl -s -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data "$1" "$URL1"
    for _ in $(seq 1 50); do
        [ "$(grep -c '"path":"/rpc/lww_exchange"' "$W/gw1.log")" -gt "$n" ] && break
        sleep 0.1
    done
    grep '"path":"/rpc/lww_exchange"' "$W/gw1.log" | tail -1 | sed -E 's/.*"status":([0-9]+).*"db":"([a-z]+)".*/\1 \2/'
}
DOC='"format":"lwwsync.exchange","version":1,"limit":100,"limit_bytes":65536'
N2="20000000-0000-4000-8000-000000000002"
EMPTY_CS="{\"format\":\"lwwsync.changeset\",\"version\":1,\"origin\":\"$N2\",\"since\":\"0\",\"tables\":[],\"upto\":\"0\",\"nodes\":[]}"
expect "route: a pull" "$(route "{$DOC,\"node\":\"$N2\",\"received\":\"0\"}")" "200 replica"
expect "route: \"push\": null" "$(route "{$DOC,\"node\":\"$N2\",\"push\":null}")" "200 replica"
expect "route: \"forked\": false" "$(route "{$DOC,\"node\":\"$N2\",\"forked\":false}")" "200 replica"
expect "route: a push, first member" "$(route "{\"push\":$EMPTY_CS,$DOC,\"node\":\"$N2\"}")" "200 primary"
expect "route: \"forked\": true" \
    "$(route "{$DOC,\"node\":\"20000000-0000-4000-8000-000000000003\",\"forked\":true}")" "200 primary"
expect "route: not JSON" "$(route "{$DOC,\"node\":")" "400 primary"
# Hostile nesting: refused by the gateway's bounded reader, on no database
# (the routing scan is iterative and bounded too); the gateway stays up.
DEEP=$(printf '[%.0s' $(seq 1 100000))
expect_match "route: 100 000 nested arrays" "$(route "{$DOC,\"node\":\"$N2\",\"x\":$DEEP}")" \
    '"status":400.*JSON nested deeper than 32 levels'
expect "route: a pull after it" "$(route "{$DOC,\"node\":\"$N2\",\"received\":\"0\"}")" "200 replica"

# A replica that cannot be reached: the primary serves the pulls.
start_gateway "$G4" "$W/gw4.log" --db-uri "$PRIMARY" --db-read-uri "host=$W/nowhere port=$P2 dbname=app user=authenticator" \
    || not_ok "gateway with an unreachable replica: $(tail -2 "$W/gw4.log")"
sq lost "$SCHEMA_SQ" >/dev/null
out=$(sync_sq lost "http://127.0.0.1:$G4/rpc/lww_exchange" 2>&1)
expect_match "with its replica unreachable, a gateway pulls from the primary" "$out" '"pulled":[1-9]'
expect_match "...and says so in its log" "$(cat "$W/gw4.log")" "read replica unreachable, pulling from db-uri"

# ------------------------------------------------------------------ 2b. a transaction left open on the primary
# The standby cannot tell which running transactions of the primary took a
# change sequence, so it waits for them all, within a bound: past it the
# pull is refused as read-only (25006) and the gateway runs it on the primary.
pg1 -c "CREATE TABLE untracked(x int)" >/dev/null
( pg1 -c "BEGIN" -c "INSERT INTO untracked VALUES (1)" -c "SELECT pg_sleep(60)" -c "COMMIT" >/dev/null 2>&1 ) &
LONG_PID=$!
for _ in $(seq 1 100); do
    [ "$(pg1 -c "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND query LIKE '%pg_sleep(60)%'")" = 1 ] && break
    sleep 0.1
done
pg1 -c "INSERT INTO todos VALUES ('during-long', 'written while a transaction stays open', 7, 0)" >/dev/null
caught_up || not_ok "the standby catches up"
out=$(pg2 -c "SET ROLE app_user" -c "SELECT lww_exchange('$PULL'::json)" 2>&1)
expect_match "a standby pull behind a long transaction of the primary is refused as read-only, naming it" "$out" \
    "cannot end its feed yet: transaction [0-9]+ of the primary"
# A fresh client: its first round trips push nothing, so they go to the standby.
sq late "$SCHEMA_SQ" >/dev/null
out=$(sync_sq late "$URL1" 2>&1)
expect_match "through the two-pool gateway the same pull succeeds on the primary" "$out" '"pulled":[1-9]'
expect "...and brings the row written meanwhile" "$(sq late "SELECT title FROM todos WHERE id = 'during-long'")" \
    "written while a transaction stays open"
expect_match "the gateway logged the fallback" "$(cat "$W/gw1.log")" "read replica failed a pull, retrying on db-uri"
pg1 -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
wait "$LONG_PID" 2>/dev/null

# ------------------------------------------------------------------ 3. rounds through two gateways
worker() {  # client seed
    local c=$1 r i key sql url
    RANDOM=$2
    for r in $(seq 1 "$ROUNDS"); do
        sql="BEGIN;"
        for i in $(seq 1 $((3 + RANDOM % 8))); do
            sql+="INSERT INTO events VALUES ('$c-$r-$i', '$c', $RANDOM);"
            echo "$c-$r-$i" >>"$W/inserted.$c"
        done
        for i in 1 2 3; do
            key="todo-$((RANDOM % 12))"
            sql+="INSERT INTO todos VALUES ('$key', '$c r$r', $RANDOM, 0) ON CONFLICT (id) DO UPDATE SET title = excluded.title, n = excluded.n;"
        done
        sql+="COMMIT;"
        sq "$c" "$sql" >/dev/null 2>>"$W/worker-errors" || echo "$c write failed" >>"$W/worker-errors"
        # Alternate between the two gateways; a pull-only round right after.
        [ $((r % 2)) -eq 0 ] && url=$URL1 || url=$URL2
        sync_sq "$c" "$url" >/dev/null 2>>"$W/worker-log" || echo "$c sync failed (retried later)" >>"$W/worker-log"
        [ $((r % 2)) -eq 0 ] && url=$URL2 || url=$URL1
        sync_sq "$c" "$url" >/dev/null 2>>"$W/worker-log" || echo "$c sync failed (retried later)" >>"$W/worker-log"
    done
}
primary_worker() {
    local r
    RANDOM=$1
    for r in $(seq 1 "$ROUNDS"); do
        pg1 -c "INSERT INTO events VALUES ('primary-$r', 'primary', $RANDOM)" >/dev/null && echo "primary-$r" >>"$W/inserted.primary"
        pg1 -c "UPDATE todos SET done = 1 WHERE id = 'todo-$((RANDOM % 12))'" >/dev/null
    done
}
echo "pusher-1" >"$W/inserted.pusher"
pids=()
s=$SEED
for c in "${CLIENTS[@]}"; do s=$((s + 1)); worker "$c" $s & pids+=($!); done
primary_worker $((SEED + 50)) & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
if [ -s "$W/worker-errors" ]; then not_ok "concurrent writers" "$(head -3 "$W/worker-errors")"
else ok "${#CLIENTS[@]} SQLite clients wrote and synced $ROUNDS rounds through two gateways, the primary wrote too"; fi

# Every client syncs twice more, through each gateway, then the dumps.
for g in "$URL1" "$URL2"; do
    for c in "${CLIENTS[@]}" reader pusher late; do sync_sq "$c" "$g" >/dev/null 2>>"$W/final-errors" || echo "final sync $c failed" >>"$W/final-errors"; done
    caught_up || echo "standby behind" >>"$W/final-errors"
done
if [ -s "$W/final-errors" ]; then not_ok "final syncs" "$(head -3 "$W/final-errors")"; else ok "final syncs through both gateways"; fi
caught_up || not_ok "the standby catches up"
dump_pg pg1 >"$W/primary.dump"
bad=""
dump_pg pg2 >"$W/standby.dump"
cmp -s "$W/primary.dump" "$W/standby.dump" || bad+=" standby"
for c in "${CLIENTS[@]}" reader pusher late; do
    dump_sq "$c" >"$W/$c.dump"
    cmp -s "$W/primary.dump" "$W/$c.dump" || bad+=" $c($(diff "$W/primary.dump" "$W/$c.dump" | head -3 | tr '\n' ' '))"
done
if [ -z "$bad" ]; then ok "all clients and the standby equal the primary byte for byte ($(grep -c . "$W/primary.dump") rows)"
else not_ok "clients differ from the primary" "$bad"; fi
# A device that pulled another device's row does not push it back (no
# echo), but its next sync still sends a push that moves the server's cursor
# on it past the merged row. Through the standby-only gateway that push is
# refused as read-only; it carries no write of this device's, so it waits
# for a sync with a primary and the sync succeeds.
sq c1 "INSERT INTO events VALUES ('c1-late', 'c1', 1)" >/dev/null && echo c1-late >>"$W/inserted.c1"
sync_sq c1 "$URL1" >/dev/null || not_ok "c1 pushes its late row"
caught_up || not_ok "the standby catches up"
out=$(sync_sq reader "$URL3" 2>&1)
expect "the reader pulls another device's row through the standby-only gateway" \
    "$(sq reader "SELECT peer FROM events WHERE id = 'c1-late'")" "c1"
refused_before=$(grep -c '"status":503' "$W/gw3.log")
out=$(sync_sq reader "$URL3" 2>&1)
expect_match "its next sync there succeeds" "$out" '"peer"'
if [ "$(grep -c '"status":503' "$W/gw3.log")" -gt "$refused_before" ]; then ok "...its cursor-moving push was refused there as read-only and left for later"
else not_ok "...its cursor-moving push was refused there as read-only" "no 503 in the standby-only gateway's log"; fi
LC_ALL=C sort -u "$W"/inserted.* >"$W/expected.ids"
pg1 -c "SELECT id FROM events" | LC_ALL=C sort >"$W/server.ids"
if cmp -s "$W/expected.ids" "$W/server.ids"; then ok "every inserted event is on the primary once ($(grep -c . "$W/expected.ids"))"
else not_ok "events lost or extra" "$(comm -3 "$W/expected.ids" "$W/server.ids" | head -3 | tr '\n' ' ')"; fi

# ------------------------------------------------------------------ 4. what the gateways did
replica=$(cat "$W/gw1.log" "$W/gw2.log" | grep -c '"path":"/rpc/lww_exchange".*"db":"replica"')
primary=$(cat "$W/gw1.log" "$W/gw2.log" | grep -c '"path":"/rpc/lww_exchange".*"db":"primary"')
if [ "$replica" -gt 0 ] && [ "$primary" -gt 0 ]; then ok "pulls ran on the standby ($replica exchanges), pushes on the primary ($primary)"
else not_ok "routing" "replica $replica, primary $primary exchanges"; fi
push_on_replica=$(cat "$W/gw1.log" "$W/gw2.log" | grep '"db":"replica"' | grep -c '"status":503')
expect "no push was sent to the replica by the two-pool gateways" "$push_on_replica" "0"
fivehundreds=$(cat "$W/gw1.log" "$W/gw2.log" "$W/gw3.log" | grep -c '"status":5[0-9][0-9]' )
five00=$(cat "$W/gw1.log" "$W/gw2.log" "$W/gw3.log" | grep -c '"status":500')
expect "no gateway answered 500" "$five00" "0"
expect "5xx answers: only the pushes sent to the standby-only gateway" "$fivehundreds" \
    "$(grep -c '"status":503.*read-only' "$W/gw3.log")"
finish
