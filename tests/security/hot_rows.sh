#!/usr/bin/env bash
# Hot rows through the gateway: 20 SQLite devices write the same 10 rows of
# one table and sync concurrently through lwwsync-server (pool of 10) into a
# PostgreSQL with the real lwwsync extension.
#   40 rounds: every device upserts one of the 10 rows (random, seeded) and
#   then runs SELECT lww_sync('http://…/rpc/lww_exchange', '{"token": …}');
#   the 20 devices run at once. Then every device syncs twice more, in turn.
# Pass: no failed sync, no "deadlock detected" in the PostgreSQL log, every
# device byte-identical to the server, and each row holding the last write
# by stamp (the greatest (hlc, node id) among the writes to it).
# SEED=N replays a run; DEVICES/ROUNDS resize it; KEEP=1 keeps the files.
# Needs the extension installed for the PostgreSQL on PATH (make pg-install)
# and lwwsync.so (make lwwsync.so). Prints "ok - …"/"not ok - …" and ends
# with "N passed, M failed". Bounded: the concurrent phase is killed after
# 110 s (a run that deadlocks ends there), the whole test stays under 3 min.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SEED=${SEED:-$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') ))}
DEVICES=${DEVICES:-20}
ROUNDS=${ROUNDS:-40}
ROWS=10
echo "# hot rows: seed $SEED, $DEVICES devices, $ROUNDS rounds, $ROWS rows (replay: SEED=$SEED tests/security/hot_rows.sh)"

. scripts/test_lib.sh

EXT=$ROOT/lwwsync.so
for tool in sqlite3 psql openssl curl; do command -v "$tool" >/dev/null || die "prerequisites" "$tool not found"; done
[ -f "$EXT" ] || die "prerequisites" "$EXT not built (make lwwsync.so)"
build_log=$(make -s -C server 2>&1 >/dev/null) || { echo "$build_log"; die "build" "make -C server failed"; }
GW=$ROOT/server/lwwsync-server

W=$(mktemp -d /tmp/lwwsync-hotrows.XXXXXX)
chmod 755 "$W"
GW_PID="" DEV_PIDS=()
cleanup() {
    for p in "${DEV_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
    scripts/pg_cluster.sh stop "$W/pg" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "# kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

. scripts/free_port.sh
PGPORT=$(free_port) && GWPORT=$(free_port) || die "setup" "no free port"
scripts/pg_cluster.sh start "$W/pg" "$PGPORT" >/dev/null 2>&1 ||
    { tail -5 "$W/pg/server.log" 2>/dev/null; die "setup" "cannot start PostgreSQL"; }
pg() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$W/pg" -p "$PGPORT" -U postgres -d "${PGDB:-app}" "$@"; }
PGDB=postgres pg -c "CREATE DATABASE app" || die "setup" "createdb"
pg >/dev/null <<SQL || die "setup" "CREATE EXTENSION lwwsync failed (make pg-install for the PostgreSQL on PATH)"
CREATE EXTENSION lwwsync;
CREATE TABLE hot(id int PRIMARY KEY, v text NOT NULL, n bigint NOT NULL);
INSERT INTO hot SELECT i, 'init-' || i, 0 FROM generate_series(1, $ROWS) i;
SELECT lww_track('hot');
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE app_user NOLOGIN;
GRANT app_user TO authenticator;
GRANT SELECT, INSERT, UPDATE, DELETE ON hot TO app_user;
SQL

SECRET="hot-rows-secret-that-is-at-least-32-characters"
TOKEN=$(jwt_hs256 "$SECRET" "$(printf '{"role":"app_user","sub":"devices","exp":%d}' $(( $(date +%s) + 7200 )))")

"$GW" --db-uri "host=$W/pg port=$PGPORT dbname=app user=authenticator" --server-port "$GWPORT" \
    --jwt-secret "$SECRET" --db-pool 10 2>"$W/gateway.log" &
GW_PID=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$GWPORT/health" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "http://127.0.0.1:$GWPORT/health" || die "setup" "gateway not healthy: $(tail -3 "$W/gateway.log")"
URL="http://127.0.0.1:$GWPORT/rpc/lww_exchange"
SYNC_EXPR="lww_sync('$URL', '{\"token\":\"$TOKEN\"}')"
SYNC="SELECT $SYNC_EXPR;"

# Each device: a table like the server's, one first sync for the 10 rows.
t0=$(date +%s%N)
for d in $(seq -w 1 "$DEVICES"); do
    sqlite3 -batch "$W/dev$d.db" ".load $ROOT/lwwsync" \
        "CREATE TABLE hot(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER NOT NULL);" \
        "SELECT lww_track('hot');" "$SYNC" >/dev/null 2>"$W/dev$d.init.err" ||
        die "setup" "device $d: $(head -c 300 "$W/dev$d.init.err")"
done
setup_ms=$((($(date +%s%N) - t0) / 1000000))
have=$(sqlite3 "$W/dev01.db" "SELECT count(*) FROM hot")
[ "$have" = "$ROWS" ] || die "setup" "device 01 holds $have rows after its first sync, want $ROWS"
echo "# setup: $DEVICES devices pulled the $ROWS rows in ${setup_ms} ms"

# Each device's script: ROUNDS x (upsert a random row; record its stamp; sync).
RANDOM=$SEED
for d in $(seq -w 1 "$DEVICES"); do
    {
        echo ".load $ROOT/lwwsync"
        echo ".timeout 10000"
        echo "CREATE TEMP TABLE mark(s INTEGER);"
        for r in $(seq 1 "$ROUNDS"); do
            id=$((1 + RANDOM % ROWS))
            n=$((10#$d * 1000 + r))
            echo "DELETE FROM mark; INSERT INTO mark SELECT max(max_seq) FROM lww__hot;"
            echo "INSERT INTO hot(id, v, n) VALUES ($id, 'dev$d-r$r', $n) ON CONFLICT(id) DO UPDATE SET v = excluded.v, n = excluded.n;"
            # The write's stamp of column v (index 0), from the change set of
            # just this write: its own [col, value, hlc, node] or the row's stamp.
            echo "SELECT 'W|$id|dev$d-r$r|' ||
                    coalesce(json_extract(col.value, '\$[2]'), json_extract(rw.value, '\$.stamp[0]')) || '|' ||
                    json_extract(cs.c, '\$.nodes[' || coalesce(json_extract(col.value, '\$[3]'), json_extract(rw.value, '\$.stamp[1]')) || ']')
                  FROM (SELECT lww_changes((SELECT s FROM mark)) AS c) AS cs,
                       json_each(cs.c, '\$.tables[0].rows') AS rw, json_each(rw.value, '\$.cols') AS col
                  WHERE json_extract(rw.value, '\$.key[0]') = $id AND json_extract(col.value, '\$[0]') = 0;"
            echo "SELECT 'S|' || $SYNC_EXPR;"
        done
    } >"$W/dev$d.sql"
done

t0=$(date +%s%N)
for d in $(seq -w 1 "$DEVICES"); do
    timeout 110 sqlite3 -batch "$W/dev$d.db" <"$W/dev$d.sql" >"$W/dev$d.out" 2>"$W/dev$d.err" &
    DEV_PIDS+=($!)
done
timed_out=0
for p in "${DEV_PIDS[@]}"; do wait "$p"; [ $? = 124 ] && timed_out=$((timed_out + 1)); done
DEV_PIDS=()
rounds_ms=$((($(date +%s%N) - t0) / 1000000))

syncs_ok=$(cat "$W"/dev*.out | grep -c '^S|')
writes=$(cat "$W"/dev*.out | grep -c '^W|')
want=$((DEVICES * ROUNDS))
failed_syncs=$((want - syncs_ok))
echo "# concurrent rounds: ${rounds_ms} ms for $want writes and $want syncs ($syncs_ok syncs succeeded, $timed_out devices timed out)"
errs=$(cat "$W"/dev*.err | grep -v '^$' | sed 's/near line [0-9]*/near line N/' | sort | uniq -c | sort -rn | head -5)
[ -n "$errs" ] && echo "# sync errors (count, message):" && sed 's/^/#   /' <<<"$errs"
if [ "$failed_syncs" = 0 ] && [ "$writes" = "$want" ]; then ok "$want concurrent syncs through the gateway, none failed"
else not_ok "concurrent syncs" "$failed_syncs of $want syncs failed or never ran ($timed_out devices still syncing when stopped at 110 s), $writes of $want writes made"; fi

# Then every device syncs twice more, in turn.
t0=$(date +%s%N)
final_failed=0
for _ in 1 2; do
    for d in $(seq -w 1 "$DEVICES"); do
        timeout 60 sqlite3 -batch "$W/dev$d.db" ".load $ROOT/lwwsync" "$SYNC" >/dev/null 2>>"$W/final.err" ||
            final_failed=$((final_failed + 1))
    done
done
final_ms=$((($(date +%s%N) - t0) / 1000000))
echo "# final syncs: $((2 * DEVICES)) in ${final_ms} ms"
if [ "$final_failed" = 0 ]; then ok "final syncs (2 per device) all succeeded"
else not_ok "final syncs" "$final_failed failed: $(head -c 300 "$W/final.err")"; fi

deadlocks=$(grep -c 'deadlock detected' "$W/pg/server.log")
gw503=$(grep -c '"status":503' "$W/gateway.log")
gw40p01=$(grep '"status":503' "$W/gateway.log" | grep -c 'deadlock')
gw5xx=$(grep -cE '"status":5[0-9][0-9]' "$W/gateway.log")
echo "# PostgreSQL log: $deadlocks 'deadlock detected'; gateway: $gw5xx 5xx answers ($gw503 503, of which $gw40p01 deadlocks after 3 attempts)"
if [ "$deadlocks" = 0 ]; then ok "no deadlock detected in the PostgreSQL log"
else
    not_ok "deadlocks" "$deadlocks 'deadlock detected' in the PostgreSQL log; first: $(grep -m1 -A2 'deadlock detected' "$W/pg/server.log" | tr '\n' ' ' | head -c 400)"
fi

# Convergence: byte-identical dumps.
pg -c "SELECT id || '|' || v || '|' || n FROM hot ORDER BY id" >"$W/server.dump"
differ=""
for d in $(seq -w 1 "$DEVICES"); do
    sqlite3 "$W/dev$d.db" "SELECT id || '|' || v || '|' || n FROM hot ORDER BY id" >"$W/dev$d.dump"
    cmp -s "$W/server.dump" "$W/dev$d.dump" || differ+=" dev$d"
done
if [ -z "$differ" ]; then ok "all $DEVICES devices byte-identical to the server ($(grep -c . "$W/server.dump") rows)"
else not_ok "convergence" "devices differing from the server:$differ (first: $(diff "$W/server.dump" "$W/dev${differ:4:2}.dump" | head -4 | tr '\n' ' '))"; fi

# Last write wins: per row, the write with the greatest (hlc, node id).
cat "$W"/dev*.out | grep '^W|' | LC_ALL=C sort -t'|' -k2,2n -k4,4n -k5,5 |
    awk -F'|' '{ last[$2] = $3 } END { for (k in last) print k "|" last[k] }' | LC_ALL=C sort -t'|' -k1,1n >"$W/expected"
wrong=""
while IFS='|' read -r id v; do
    got=$(grep "^$id|" "$W/server.dump" | cut -d'|' -f2)
    [ "$got" = "$v" ] || wrong+=" row $id: server '$got', last write '$v';"
done <"$W/expected"
written=$(grep -c . "$W/expected")
if [ -z "$wrong" ]; then ok "each of the $written written rows holds its last write by stamp"
else not_ok "last write wins" "$wrong"; fi

ex_ms=$(grep '"path":"/rpc/lww_exchange"' "$W/gateway.log" | grep -o '"ms":[0-9.]*' | cut -d: -f2 | sort -n |
        awk '{a[NR] = $1} END { if (NR) printf "p50 %s ms, p99 %s ms, max %s ms", a[int((NR + 1) / 2)], a[int(NR * 0.99) + (NR < 100)], a[NR] }')
echo "# timings: setup ${setup_ms} ms, concurrent rounds ${rounds_ms} ms, final syncs ${final_ms} ms; exchanges: $ex_ms"
echo "# RESULT: seed $SEED: $failed_syncs failed syncs of $want, $deadlocks deadlocks in the PostgreSQL log, $gw5xx gateway 5xx, devices differing:${differ:- none}"
finish
