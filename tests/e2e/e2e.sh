#!/usr/bin/env bash
# End to end over real processes and sockets: a PostgreSQL server behind
# lwwsync-server, SQLite clients (sqlite3 CLI processes) and a second
# PostgreSQL syncing over HTTP, concurrently, then faults:
#   kill -9 of the gateway mid-batch, Postgres stopped mid-sync, a connection
#   cut mid-response, a client killed between receiving a batch and committing
#   it, a client killed at a random moment;
# clocks (libfaketime): a client an hour ahead is refused by name, a client an
# hour behind still wins when it writes last in causal order;
# auth: JWT roles with row-level security, forged/expired/missing tokens;
# cancel: statement_timeout stops a Postgres lww_sync waiting on the network.
# After every fault all peers converge: dumps compared byte for byte, every
# inserted event present exactly once.
#
# SEED=N replays the workload; ROUNDS=N sizes it; KEEP=1 keeps the files.
# Prints "ok - …"/"not ok - …" per check and ends with "N passed, M failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
EXT="$ROOT/lwwsync.so"
GATEWAY="$ROOT/server/lwwsync-server"
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
ROUNDS=${ROUNDS:-6}
echo "# e2e seed $SEED (replay: SEED=$SEED tests/e2e/e2e.sh)"

. scripts/test_lib.sh

for bin in "$EXT" "$GATEWAY"; do [ -x "$bin" ] || [ -f "$bin" ] || die "setup" "$bin not built (make all)"; done
for cmd in sqlite3 psql openssl faketime curl; do command -v $cmd >/dev/null || die "setup" "$cmd not installed (scripts/deps.sh)"; done
PGBIN=$(pg_config --bindir)

W=$(mktemp -d /tmp/lwwsync-e2e.XXXXXX)
chmod 755 "$W"
g++ -O2 -std=c++17 -pthread -o "$W/cutproxy" tests/e2e/cutproxy.cpp || die "setup" "cannot build cutproxy"

. scripts/free_port.sh
RANDOM=$SEED
PG1_PORT=$(free_port) && PG2_PORT=$(free_port) && GW_PORT=$(free_port) || die "setup" "no free port"
PROXY_PORT=""
GW_PID="" PROXY_PID="" LOCK_PID=""
cleanup() {
    [ -n "$GW_PID" ] && kill -9 "$GW_PID" 2>/dev/null
    [ -n "$PROXY_PID" ] && kill -9 "$PROXY_PID" 2>/dev/null
    [ -n "$LOCK_PID" ] && kill -9 "$LOCK_PID" 2>/dev/null
    jobs -p | xargs -r kill -9 2>/dev/null
    scripts/pg_cluster.sh stop "$W/pg1" >/dev/null 2>&1
    scripts/pg_cluster.sh stop "$W/pg2" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "# kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ servers
scripts/pg_cluster.sh start "$W/pg1" "$PG1_PORT" >/dev/null || die "setup" "cannot start Postgres 1"
scripts/pg_cluster.sh start "$W/pg2" "$PG2_PORT" >/dev/null || die "setup" "cannot start Postgres 2"
pg1() { psql -X -h "$W/pg1" -p "$PG1_PORT" -U postgres -d app -Atq -v ON_ERROR_STOP=1 "$@"; }
pg2() { psql -X -h "$W/pg2" -p "$PG2_PORT" -U postgres -d app -Atq -v ON_ERROR_STOP=1 "$@"; }
for n in 1 2; do
    port=PG${n}_PORT
    psql -X -h "$W/pg$n" -p "${!port}" -U postgres -d postgres -qc "CREATE DATABASE app" || die "setup" "createdb"
done

SCHEMA_PG="
CREATE EXTENSION lwwsync;
CREATE TABLE todos(id text PRIMARY KEY, title text, n bigint, done int);
CREATE TABLE events(id text PRIMARY KEY, peer text, k bigint);
CREATE TABLE notes(id text PRIMARY KEY, owner text NOT NULL, body text);
SELECT lww_track('todos'), lww_track('events'), lww_track('notes');"
pg1 -c "$SCHEMA_PG" >/dev/null || die "setup" "server schema"
pg2 -c "$SCHEMA_PG" >/dev/null || die "setup" "second Postgres schema"
# Roles as PostgREST sets them up: the gateway logs in as authenticator and
# switches to the token's role; notes are private to their owner (the token's sub).
pg1 >/dev/null <<'SQL' || die "setup" "roles"
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE app_user NOLOGIN;
CREATE ROLE alice NOLOGIN IN ROLE app_user;
CREATE ROLE bob NOLOGIN IN ROLE app_user;
GRANT app_user, alice, bob TO authenticator;
GRANT SELECT, INSERT, UPDATE, DELETE ON todos, events, notes TO app_user;
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes
    USING (owner = current_setting('request.jwt.claims', true)::json->>'sub')
    WITH CHECK (owner = current_setting('request.jwt.claims', true)::json->>'sub');
SQL
# The second Postgres reaches the server over HTTP only.
pg2 -c "CREATE EXTENSION IF NOT EXISTS lwwsync" >/dev/null

SECRET="e2e-secret-that-is-at-least-32-characters-long"
jwt() { jwt_hs256 "${2:-$SECRET}" "$1"; }  # payload [secret]
NOW=$(date +%s)
APP_TOKEN=$(jwt "{\"role\":\"app_user\",\"sub\":\"device\",\"exp\":$((NOW + 7200))}")
ALICE_TOKEN=$(jwt "{\"role\":\"alice\",\"sub\":\"alice\",\"exp\":$((NOW + 7200))}")
BOB_TOKEN=$(jwt "{\"role\":\"bob\",\"sub\":\"bob\",\"exp\":$((NOW + 7200))}")
EXPIRED_TOKEN=$(jwt "{\"role\":\"alice\",\"sub\":\"alice\",\"exp\":$((NOW - 60))}")
FORGED_TOKEN=$(jwt "{\"role\":\"alice\",\"sub\":\"alice\",\"exp\":$((NOW + 7200))}" "not-the-secret-but-also-long-enough-1234")

GW_LOG="$W/gateway.log"
start_gateway() {
    "$GATEWAY" --db-uri "host=$W/pg1 port=$PG1_PORT dbname=app user=authenticator" \
        --server-port "$GW_PORT" --jwt-secret "$SECRET" --db-pool 8 >>"$GW_LOG" 2>&1 &
    GW_PID=$!
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$GW_PORT/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
start_gateway || die "setup" "gateway did not become healthy: $(tail -3 "$GW_LOG")"
URL="http://127.0.0.1:$GW_PORT/rpc/lww_exchange"
APP_OPTS="{\"token\":\"$APP_TOKEN\"}"

# ------------------------------------------------------------------ peers
SCHEMA_SQ="CREATE TABLE todos(id TEXT PRIMARY KEY, title TEXT, n INTEGER, done INTEGER);
CREATE TABLE events(id TEXT PRIMARY KEY, peer TEXT, k INTEGER);
CREATE TABLE notes(id TEXT PRIMARY KEY, owner TEXT NOT NULL, body TEXT);
SELECT lww_track('todos'), lww_track('events'), lww_track('notes');"
sq() { local db=$1; shift; sqlite3 -bail "$W/$db.db" ".timeout 10000" ".load $EXT" "$@"; }
CLIENTS=(c1 c2 c3)
for c in "${CLIENTS[@]}" alice bob ahead behind; do sq "$c" "$SCHEMA_SQ" >/dev/null || die "setup" "client $c"; done

sync_sq() {  # client [options-json] [url]
    sq "$1" "SELECT lww_sync('${3:-$URL}', '${2:-$APP_OPTS}')"
}
sync_pg2() { pg2 -c "SET client_min_messages = warning" -c "SELECT lww_sync('$URL', '$APP_OPTS')"; }

# Canonical dumps, identical text in both engines.
DUMP_TODOS="SELECT id || '|' || coalesce(title, '~') || '|' || coalesce(CAST(n AS text), '~') || '|' || coalesce(CAST(done AS text), '~') FROM todos ORDER BY id"
DUMP_EVENTS="SELECT id || '|' || peer || '|' || CAST(k AS text) FROM events ORDER BY id"
dump_sq() { sq "$1" "$DUMP_TODOS;" "SELECT '--';" "$DUMP_EVENTS;"; }
dump_pg() { "$1" -c "$DUMP_TODOS" -c "SELECT '--'" -c "$DUMP_EVENTS" | sed 's/\r$//'; }

# Every peer syncs twice in turn; then all dumps must equal the server's.
converge() {  # label
    local label=$1 p
    for _ in 1 2; do
        for p in "${CLIENTS[@]}"; do sync_sq "$p" >/dev/null 2>>"$W/errors" || echo "sync $p failed" >>"$W/errors"; done
        sync_pg2 >/dev/null 2>>"$W/errors" || echo "sync pg2 failed" >>"$W/errors"
    done
    # Collation-free order: ids are ASCII and both sides sort bytewise.
    dump_pg pg1 | LC_ALL=C sort >"$W/server.dump"
    local bad=""
    for p in "${CLIENTS[@]}"; do
        dump_sq "$p" | LC_ALL=C sort >"$W/$p.dump"
        cmp -s "$W/server.dump" "$W/$p.dump" || bad+=" $p($(diff "$W/server.dump" "$W/$p.dump" | head -3 | tr '\n' ' '))"
    done
    dump_pg pg2 | LC_ALL=C sort >"$W/pg2.dump"
    cmp -s "$W/server.dump" "$W/pg2.dump" || bad+=" pg2($(diff "$W/server.dump" "$W/pg2.dump" | head -3 | tr '\n' ' '))"
    if [ -z "$bad" ]; then ok "$label: all peers converged ($(grep -c . "$W/server.dump") rows identical)"
    else not_ok "$label: peers differ from the server" "$bad"; fi
}

# Every event inserted anywhere is on the server exactly once.
events_complete() {  # label
    local label=$1
    LC_ALL=C sort -u "$W"/inserted.* >"$W/expected.ids" 2>/dev/null
    pg1 -c "SELECT id FROM events" | LC_ALL=C sort >"$W/server.ids"
    local want have
    want=$(grep -c . "$W/expected.ids"); have=$(grep -c . "$W/server.ids")
    if cmp -s "$W/expected.ids" "$W/server.ids"; then ok "$label: all $want inserted events present once"
    else not_ok "$label: events lost or extra" "want $want, server has $have; $(comm -3 "$W/expected.ids" "$W/server.ids" | head -3 | tr '\n' ' ')"; fi
}

# ------------------------------------------------------------------ 1. concurrent writers
# Each worker: ROUNDS rounds of random writes then a sync, all at once.
worker() {  # peer kind seed
    local peer=$1 kind=$2 r i key sql
    RANDOM=$3
    for r in $(seq 1 "$ROUNDS"); do
        sql="BEGIN;"
        for i in $(seq 1 $((5 + RANDOM % 20))); do
            sql+="INSERT INTO events VALUES ('$peer-$r-$i', '$peer', $((RANDOM)));"
            echo "$peer-$r-$i" >>"$W/inserted.$peer"
        done
        for i in $(seq 1 $((1 + RANDOM % 8))); do
            key="todo-$((RANDOM % 25))"
            case $((RANDOM % 5)) in
                0) sql+="DELETE FROM todos WHERE id = '$key';" ;;
                1) sql+="UPDATE todos SET done = 1 - coalesce(done, 0) WHERE id = '$key';" ;;
                *) sql+="INSERT INTO todos VALUES ('$key', '$peer r$r', $RANDOM, 0) ON CONFLICT (id) DO UPDATE SET title = excluded.title, n = excluded.n;" ;;
            esac
        done
        sql+="COMMIT;"
        if [ "$kind" = sqlite ]; then
            sq "$peer" "$sql" >/dev/null 2>>"$W/worker-errors" || echo "$peer write failed" >>"$W/worker-errors"
            sync_sq "$peer" >/dev/null 2>>"$W/worker-errors" || echo "$peer sync failed (retried later)" >>"$W/worker-log"
        else
            pg2 -c "$sql" >/dev/null 2>>"$W/worker-errors" || echo "pg2 write failed" >>"$W/worker-errors"
            sync_pg2 >/dev/null 2>>"$W/worker-errors" || echo "pg2 sync failed (retried later)" >>"$W/worker-log"
        fi
    done
}
# The server writes too, through plain SQL.
server_worker() {
    local r i
    RANDOM=$1
    for r in $(seq 1 "$ROUNDS"); do
        for i in $(seq 1 5); do
            pg1 -c "INSERT INTO events VALUES ('server-$r-$i', 'server', $RANDOM)" >/dev/null && echo "server-$r-$i" >>"$W/inserted.server"
        done
        pg1 -c "INSERT INTO todos VALUES ('todo-$((RANDOM % 25))', 'server r$r', $RANDOM, 1) ON CONFLICT (id) DO UPDATE SET title = excluded.title" >/dev/null
    done
}
pids=()
s=$SEED
for c in "${CLIENTS[@]}"; do s=$((s + 1)); worker "$c" sqlite $s & pids+=($!); done
worker pg2 postgres $((SEED + 10)) & pids+=($!)
server_worker $((SEED + 20)) & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
if [ -s "$W/worker-errors" ] && grep -qv "sync failed" "$W/worker-errors"; then
    not_ok "concurrent writers: local writes" "$(head -3 "$W/worker-errors")"
else
    ok "concurrent writers: 3 SQLite clients, a second Postgres and the server wrote and synced at once ($ROUNDS rounds)"
fi
converge "after concurrent syncs"
events_complete "after concurrent syncs"
: >"$W/errors"

# A big local batch on one client, for the faults below.
bulk() {  # peer count tag
    local n
    n=$(sq "$1" "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $2)
        INSERT INTO events SELECT '$1-$3-' || i, '$1', i FROM s;" "SELECT changes();")
    sq "$1" "SELECT id FROM events WHERE id LIKE '$1-$3-%'" >>"$W/inserted.$1"
    echo "$n"
}
# Waits (bounded) until the gateway log has grown by n request lines.
wait_requests() {  # from-line n
    for _ in $(seq 1 300); do
        [ "$(grep -c '"path"' "$GW_LOG")" -ge $(($1 + $2)) ] && return 0
        sleep 0.05
    done
    return 1
}

# ------------------------------------------------------------------ 2. kill -9 the gateway mid-batch
bulk c1 20000 gwkill >/dev/null
mark=$(grep -c '"path"' "$GW_LOG")
sync_sq c1 "{\"token\":\"$APP_TOKEN\",\"batch_rows\":300}" >"$W/f1.out" 2>&1 &
spid=$!
if wait_requests "$mark" 4; then
    kill -9 "$GW_PID"; wait "$GW_PID" 2>/dev/null
    start_gateway || die "gateway restart" "$(tail -3 "$GW_LOG")"
    wait "$spid"; rc=$?
    ok "gateway killed with -9 mid-batch and restarted (the interrupted sync $( [ $rc -eq 0 ] && echo 'completed through retries' || echo "failed: $(head -c 120 "$W/f1.out")"))"
else
    wait "$spid"; not_ok "gateway kill" "the sync never reached the gateway"
fi
# The second Postgres pulls those 20 000 rows: it reports progress as NOTICEs.
pg2 -c "SELECT lww_sync('$URL', '$APP_OPTS')" >/dev/null 2>"$W/notices"
grep -qE "^NOTICE:  lww_sync: [0-9]+ batches, [0-9]+ rows pushed, [0-9]+ rows pulled" "$W/notices" &&
    ok "a Postgres lww_sync reports progress as NOTICEs ($(grep -c NOTICE "$W/notices") while pulling)" ||
    not_ok "NOTICE progress" "$(head -c 300 "$W/notices")"
converge "after the gateway was killed"
events_complete "after the gateway was killed"

# ------------------------------------------------------------------ 3. stop Postgres mid-sync
bulk c2 20000 pgstop >/dev/null
mark=$(grep -c '"path"' "$GW_LOG")
sync_sq c2 "{\"token\":\"$APP_TOKEN\",\"batch_rows\":300,\"retries\":1}" >"$W/f2.out" 2>&1 &
spid=$!
if wait_requests "$mark" 4; then
    "$PGBIN/pg_ctl" -D "$W/pg1/data" stop -m immediate >/dev/null 2>&1 ||
        su postgres -c "'$PGBIN/pg_ctl' -D '$W/pg1/data' stop -m immediate" >/dev/null 2>&1
    wait "$spid"; rc=$?
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT/health")
    if [ "$code" = 503 ]; then ok "Postgres down: the gateway's /health says 503"; else not_ok "Postgres down: /health" "HTTP $code"; fi
    if [ $rc -ne 0 ] && grep -q "HTTP 503" "$W/f2.out"; then ok "Postgres stopped mid-sync: the client got a clear 503 error ($(grep -o 'HTTP 503[^"]*' "$W/f2.out" | head -c 100))"
    elif [ $rc -eq 0 ]; then not_ok "Postgres stopped mid-sync" "the sync claimed success"
    else not_ok "Postgres stopped mid-sync: error text" "$(head -c 200 "$W/f2.out")"; fi
    scripts/pg_cluster.sh start "$W/pg1" "$PG1_PORT" >/dev/null || die "Postgres restart"
else
    wait "$spid"; not_ok "Postgres stop" "the sync never reached the gateway"
fi
converge "after Postgres was stopped mid-sync (gateway not restarted)"
events_complete "after Postgres was stopped mid-sync"

# ------------------------------------------------------------------ 4. connection cut mid-response
# c3 lacks c1's new events: its pull responses are large. The proxy cuts the
# first connection 50 000 bytes into the server's answers.
bulk c1 20000 cut >/dev/null
sync_sq c1 >/dev/null 2>>"$W/errors" || echo "sync c1 failed" >>"$W/errors"
# A port picked at the start may be taken since: try a few.
for _ in 1 2 3 4 5; do
    PROXY_PORT=$(free_port) || continue
    "$W/cutproxy" "$PROXY_PORT" "$GW_PORT" 50000 >"$W/proxy.out" 2>"$W/proxy.err" &
    PROXY_PID=$!
    for _ in $(seq 1 50); do
        grep -q listening "$W/proxy.out" 2>/dev/null && break
        kill -0 "$PROXY_PID" 2>/dev/null || break
        sleep 0.05
    done
    grep -q listening "$W/proxy.out" 2>/dev/null && break
done
if sync_sq c3 "{\"token\":\"$APP_TOKEN\",\"batch_rows\":2000,\"gzip\":false}" "http://127.0.0.1:$PROXY_PORT/rpc/lww_exchange" >"$W/f3.out" 2>&1 &&
    grep -q "cut after" "$W/proxy.err"; then
    ok "connection cut mid-response: the client retried and finished ($(grep -o '"retries":[0-9]*' "$W/f3.out"))"
else
    not_ok "connection cut mid-response" "$(head -c 200 "$W/f3.out") / $(cat "$W/proxy.err")"
fi
kill -9 "$PROXY_PID" 2>/dev/null; PROXY_PID=""
converge "after a cut connection"
events_complete "after a cut connection"

# ------------------------------------------------------------------ 5. client killed between receiving and committing
bulk c1 5000 crash >/dev/null
sync_sq c1 >/dev/null 2>&1  # the server has them; c2 has not
before=$(sq c2 "SELECT count(*) FROM events")
LWWSYNC_FAILPOINT=apply_before_commit:2 sync_sq c2 "{\"token\":\"$APP_TOKEN\",\"batch_rows\":1000}" >/dev/null 2>&1
rc=$?
integrity=$(sq c2 "PRAGMA integrity_check")
after=$(sq c2 "SELECT count(*) FROM events")
if [ $rc -eq 137 ] && [ "$integrity" = ok ]; then
    ok "client died between receiving its 2nd batch and committing it (exit $rc); its database is intact"
else
    not_ok "client crash before commit" "exit $rc, integrity '$integrity'"
fi
# Its 1st batch committed with its cursor; the 2nd is gone with the process.
if [ "$after" -gt "$before" ] && [ $((after - before)) -le 1000 ]; then
    ok "the batch committed before the crash stayed ($((after - before)) events), the interrupted one left nothing"
else
    not_ok "batches around the crash" "events $before -> $after"
fi
# And killed at a random moment of a long sync, three times.
for k in 1 2 3; do
    bulk c3 3000 "kill$k" >/dev/null
    # exec: $! is the sqlite3 process itself, not a shell around it.
    (exec sqlite3 -bail "$W/c3.db" ".timeout 10000" ".load $EXT" \
        "SELECT lww_sync('$URL', '{\"token\":\"$APP_TOKEN\",\"batch_rows\":200}')" >/dev/null 2>&1) &
    spid=$!
    sleep "0.$((RANDOM % 9 + 1))"
    kill -9 "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
done
integrity=$(sq c3 "PRAGMA integrity_check")
[ "$integrity" = ok ] && ok "client killed with -9 at random moments, 3 times: database intact" ||
    not_ok "client killed at random moments" "integrity '$integrity'"
converge "after clients were killed"
events_complete "after clients were killed"

# ------------------------------------------------------------------ 6. clocks
ahead_node=$(sq ahead "SELECT lww_node_id()")
faketime -f '+1h' sqlite3 "$W/ahead.db" ".load $EXT" "INSERT INTO todos VALUES ('from-the-future', 'x', 1, 0)" >/dev/null
out=$(faketime -f '+1h' sqlite3 "$W/ahead.db" ".load $EXT" "SELECT lww_sync('$URL', '$APP_OPTS')" 2>&1)
if echo "$out" | grep -q "the clock of node $ahead_node is 3[56][0-9][0-9] s ahead"; then
    ok "a client an hour ahead is refused by name: $(echo "$out" | grep -o 'the clock of node [^;]*' | head -c 120)"
else
    not_ok "client an hour ahead" "$out"
fi
[ "$(pg1 -c "SELECT count(*) FROM todos WHERE id = 'from-the-future'")" = 0 ] && ok "nothing of the refused client landed" ||
    not_ok "refused client" "its row reached the server"

behind() { faketime -f '-1h' sqlite3 -bail "$W/behind.db" ".timeout 10000" ".load $EXT" "$@"; }
behind "SELECT lww_sync('$URL', '$APP_OPTS')" >/dev/null || not_ok "client an hour behind: first sync" ""
pg1 -c "INSERT INTO todos VALUES ('race', 'server wrote first', 1, 0) ON CONFLICT (id) DO UPDATE SET title = excluded.title" >/dev/null
out=$(behind "SELECT lww_sync('$URL', '$APP_OPTS')" "UPDATE todos SET title = 'behind wrote last' WHERE id = 'race'" \
    "SELECT lww_sync('$URL', '$APP_OPTS')" 2>&1)
server_title=$(pg1 -c "SELECT title FROM todos WHERE id = 'race'")
if [ "$server_title" = "behind wrote last" ]; then
    ok "a client an hour behind wins when it writes last in causal order"
else
    not_ok "client an hour behind" "server has '$server_title'; $out"
fi
converge "after the clock tests"

# ------------------------------------------------------------------ 7. auth and row-level security
sq alice "INSERT INTO notes VALUES ('a1', 'alice', 'alice 1'), ('a2', 'alice', 'alice 2'), ('a3', 'alice', 'alice 3')"
sq bob "INSERT INTO notes VALUES ('b1', 'bob', 'bob 1'), ('b2', 'bob', 'bob 2')"
for _ in 1 2; do
    sync_sq alice "{\"token\":\"$ALICE_TOKEN\"}" >/dev/null 2>>"$W/errors"
    sync_sq bob "{\"token\":\"$BOB_TOKEN\"}" >/dev/null 2>>"$W/errors"
done
[ "$(sq alice "SELECT group_concat(id, ',') FROM (SELECT id FROM notes ORDER BY id)")" = "a1,a2,a3" ] &&
    [ "$(sq bob "SELECT group_concat(id, ',') FROM (SELECT id FROM notes ORDER BY id)")" = "b1,b2" ] &&
    [ "$(pg1 -c "SELECT string_agg(id, ',' ORDER BY id) FROM notes")" = "a1,a2,a3,b1,b2" ] &&
    ok "two users sync only their own rows of one shared table (row-level security on the token's sub)" ||
    not_ok "row-level security" "alice: $(sq alice "SELECT group_concat(id) FROM notes"), bob: $(sq bob "SELECT group_concat(id) FROM notes"), server: $(pg1 -c "SELECT string_agg(id, ',') FROM notes")"
[ "$(sq alice "SELECT count(*) FROM todos")" = "$(pg1 -c "SELECT count(*) FROM todos")" ] &&
    ok "the same users get the shared tables whole" || not_ok "shared tables for users" ""
sq alice "INSERT INTO notes VALUES ('a-as-bob', 'bob', 'sneaky')"
out=$(sync_sq alice "{\"token\":\"$ALICE_TOKEN\"}" 2>&1)
# Refused by the policy and parked in alice's lww_rejected; her sync goes on.
parked=$(pg1 -c "SELECT role || ' ' || subject || ' ' || (reason LIKE '%row-level security%') FROM lwwsync.rejected
                  WHERE tbl = 'notes' AND key = '[\"a-as-bob\"]'")
[ "$(pg1 -c "SELECT count(*) FROM notes WHERE id = 'a-as-bob'")" = "0" ] && [ "${parked##* }" = "true" ] &&
    ! echo "$out" | grep -qi "error" &&
    ok "a row written for another user is refused by the policy, parked, and the sync goes on" ||
    not_ok "write as another user" "$out / parked: $parked"
sq alice "DELETE FROM notes WHERE id = 'a-as-bob'"
for t in "FORGED:$FORGED_TOKEN" "EXPIRED:$EXPIRED_TOKEN" "MISSING:"; do
    name=${t%%:*}; tok=${t#*:}
    opts='{"retries":0}'; [ -n "$tok" ] && opts="{\"token\":\"$tok\",\"retries\":0}"
    out=$(sync_sq bob "$opts" 2>&1)
    echo "$out" | grep -q "refused the credentials (HTTP 401)" && ok "$(echo "$name" | tr 'A-Z' 'a-z') token refused with 401" ||
        not_ok "$name token" "$out"
done

# ------------------------------------------------------------------ 8. cancel a Postgres lww_sync waiting on the network
# A session on the server holds a lock every exchange needs (the cursors):
# the request hangs. (A pull with nothing to send never opens the user tables.)
pg1 -c "BEGIN; LOCK TABLE lwwsync.peers IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);" >/dev/null 2>&1 &
LOCK_PID=$!
for _ in $(seq 1 100); do
    [ "$(pg1 -c "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation = 'lwwsync.peers'::regclass")" = 1 ] && break
    sleep 0.05
done
pg2 -c "SET statement_timeout = '1500ms'" -c "SELECT lww_sync('$URL', '$APP_OPTS')" >"$W/cancel.out" 2>&1 &
spid=$!
seen=""
for _ in $(seq 1 60); do
    seen=$(pg2 -c "SELECT url FROM lww_sync_status()" 2>/dev/null)
    [ -n "$seen" ] && break
    sleep 0.05
done
wait "$spid"
if grep -q "canceling statement due to statement timeout" "$W/cancel.out"; then
    ok "statement_timeout cancels a Postgres lww_sync waiting on the gateway"
else
    not_ok "cancel" "$(cat "$W/cancel.out")"
fi
[ "$seen" = "$URL" ] && ok "lww_sync_status() showed the running sync from another session" ||
    not_ok "lww_sync_status while running" "saw '$seen'"
[ "$(pg2 -c "SELECT 1")" = 1 ] && ok "the cancelled backend's session is healthy" || not_ok "after cancel" ""
kill "$LOCK_PID" 2>/dev/null; wait "$LOCK_PID" 2>/dev/null; LOCK_PID=""
pg1 -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()" >/dev/null
converge "after the cancelled sync"
events_complete "at the end"

# The gateway logged one JSON line per request.
lines=$(grep -c '"path"' "$GW_LOG")
[ "$lines" -gt 100 ] && ok "gateway logged $lines requests, one JSON line each" || not_ok "gateway log" "$lines lines"
[ -s "$W/errors" ] && echo "# sync errors during convergence rounds: $(head -3 "$W/errors")"
finish
