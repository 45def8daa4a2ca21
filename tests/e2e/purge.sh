#!/usr/bin/env bash
# Tombstone purge and re-snapshot over HTTP (docs/PROTOCOL.md, "Purge and
# re-snapshot"): one PostgreSQL server behind lwwsync-server, SQLite devices.
# 1. A device offline past the server's purge, holding unsynced edits,
#    inserts and deletes: it re-snapshots, loses nothing of its own,
#    resurrects nothing, misses no delete.
# 2. The other direction: a device purges only what the server holds.
# 3. Randomized rounds: devices write, sync or stay offline, the server
#    purges by hand and by itself during sync; at the end every device and
#    the server hold the same rows byte for byte.
#
# SEED=N replays the workload; ROUNDS=N sizes it; KEEP=1 keeps the files.
# Prints "ok - …"/"not ok - …" per check and ends with "N passed, M failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
EXT="$ROOT/lwwsync.so"
GATEWAY="$ROOT/server/lwwsync-server"
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
ROUNDS=${ROUNDS:-12}
echo "# purge seed $SEED (replay: SEED=$SEED tests/e2e/purge.sh)"

. scripts/test_lib.sh
. scripts/free_port.sh

for bin in "$EXT" "$GATEWAY"; do [ -f "$bin" ] || die "setup" "$bin not built (make all)"; done
for cmd in sqlite3 psql curl openssl pg_config; do command -v $cmd >/dev/null || die "setup" "$cmd not installed (scripts/deps.sh)"; done

PGPORT=$(free_port)
GWPORT=$(free_port)
W=$(mktemp -d /tmp/lwwsync-purge.XXXXXX)
chmod 755 "$W"
GW_PID=""
cleanup() {
    [ -n "$GW_PID" ] && { kill -9 "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null; }
    scripts/pg_cluster.sh stop "$W/pg" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "# kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

pg() { psql -X -h "$W/pg" -p "$PGPORT" -U postgres -d app -Atq -v ON_ERROR_STOP=1 "$@"; }
SECRET="purge-secret-that-is-at-least-32-characters-long"
jwt() { jwt_hs256 "$SECRET" "$1"; }
EXP=$(( $(date +%s) + 7200 ))
OPTS="{\"token\":\"$(jwt "{\"role\":\"app_user\",\"sub\":\"device\",\"exp\":$EXP}")\"}"

scripts/pg_cluster.sh start "$W/pg" "$PGPORT" >/dev/null || die "setup" "cannot start Postgres"
psql -X -h "$W/pg" -p "$PGPORT" -U postgres -d postgres -qc "CREATE DATABASE app" || die "setup" "createdb"
pg >/dev/null <<'SQL' || die "setup" "schema"
CREATE EXTENSION lwwsync;
CREATE TABLE items(id int PRIMARY KEY, name text, n bigint);
SELECT lww_track('items');
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE app_user NOLOGIN;
GRANT app_user TO authenticator;
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO app_user;
SQL
"$GATEWAY" --db-uri "host=$W/pg port=$PGPORT dbname=app user=authenticator" --server-port "$GWPORT" \
    --jwt-secret "$SECRET" --db-pool 4 >>"$W/gw.log" 2>&1 &
GW_PID=$!
wait_gateway "$GWPORT" || die "setup" "gateway: $(tail -2 "$W/gw.log")"
URL="http://127.0.0.1:$GWPORT/rpc/lww_exchange"

sq() { local db=$1; shift; sqlite3 -bail "$W/$db.db" ".timeout 10000" ".load $EXT" "$@"; }
sync_sq() { sq "$1" "SELECT lww_sync('$URL', '$OPTS')"; }
DEVICES=(a b c d)
for d in "${DEVICES[@]}"; do
    sq "$d" "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, n INTEGER); SELECT lww_track('items');" >/dev/null ||
        die "setup" "device $d"
done
DUMP="SELECT id || '|' || coalesce(name, '~') || '|' || coalesce(CAST(n AS text), '~') FROM items ORDER BY id"
dump_sq() { sq "$1" "$DUMP;"; }
dump_pg() { pg -c "$DUMP"; }
json() { sed -nE "s/.*\"$1\":([0-9]+).*/\1/p" <<<"$2"; }

# ------------------------------------------------------------------ 1. offline past the horizon
sq a "INSERT INTO items VALUES (1,'one',1),(2,'two',2),(3,'three',3),(4,'four',4),(5,'five',5),(6,'six',6)" >/dev/null
sync_sq a >/dev/null && sync_sq b >/dev/null && sync_sq c >/dev/null || die "first syncs"
# Meanwhile, on b: rows 1 and 2 deleted, 5 deleted and created again, 6 edited.
sq b "DELETE FROM items WHERE id IN (1, 2, 5); INSERT INTO items VALUES (5, 'five again', 50);
      UPDATE items SET name = 'six by b' WHERE id = 6" >/dev/null
sync_sq b >/dev/null || die "b syncs"
purged=$(pg -c "SELECT lww_purge(0)")
expect "the server purges the tombstones of rows 1 and 2" "$purged" "2"
# c, offline all along: an edit of a row deleted elsewhere, an edit of a
# kept row, an insert, a delete.
sq c "UPDATE items SET n = 100 WHERE id = 1; UPDATE items SET n = 300 WHERE id = 3;
      INSERT INTO items VALUES (7, 'seven', 7); DELETE FROM items WHERE id = 4" >/dev/null
out=$(sync_sq c)
expect "the device re-snapshots once" "$(json resnapshots "$out")" "1"
expect "it drops the two rows the server deleted and purged" "$(json dropped "$out")" "2"
want=$'3|three|300\n5|five again|50\n6|six by b|6\n7|seven|7'
expect "it keeps its own edit and insert, its delete went out" "$(dump_sq c)" "$want"
expect "the server holds the same rows" "$(dump_pg)" "$want"
sync_sq b >/dev/null
expect "so does the device that deleted them" "$(dump_sq b)" "$want"
out=$(sync_sq c)
expect "the next sync is an ordinary one" "$(json resnapshots "$out")" ""
# A client from before 0.7 (no horizon in its requests) is refused, saying why.
old=$(curl -sS -H "Authorization: Bearer $(jwt "{\"role\":\"app_user\",\"sub\":\"device\",\"exp\":$EXP}")" \
    -H 'Content-Type: application/json' --data \
    '{"format":"lwwsync.exchange","version":1,"node":"00000000-0000-4000-8000-0000000000e1","received":"1"}' "$URL")
expect_match "an old client behind the horizon is refused with the reason" "$old" "purged deleted rows.*re-snapshot"

# ------------------------------------------------------------------ 2. the device purges
sq d "SELECT lww_sync('$URL', '$OPTS')" >/dev/null
sq d "DELETE FROM items WHERE id = 3" >/dev/null
expect "a device keeps a tombstone its server has not received" "$(sq d "SELECT lww_purge(0)")" "0"
sync_sq d >/dev/null
expect "the delete reaches the server" "$(pg -c "SELECT count(*) FROM items WHERE id = 3")" "0"
expect "then it goes" "$(sq d "SELECT lww_purge(0) > 0, (SELECT count(*) FROM lww__items WHERE k0 = 3)")" "1|0"

# ------------------------------------------------------------------ 3. randomized rounds
# The server purges by itself during sync (tombstone_ttl_ms 0: every
# tombstone it has held at all) and by hand; devices go offline for a few
# rounds and come back with what they wrote meanwhile.
pg -c "SELECT lww_config('tombstone_ttl_ms', 0)" >/dev/null
RANDOM=$SEED
declare -A AWAY
errors=""
for round in $(seq 1 "$ROUNDS"); do
    for d in "${DEVICES[@]}"; do
        sql="BEGIN;"
        for _ in $(seq 1 $((1 + RANDOM % 5))); do
            k=$((RANDOM % 24))
            case $((RANDOM % 4)) in
                0) sql+="INSERT INTO items VALUES ($k, '$d-$round', $RANDOM) ON CONFLICT(id) DO UPDATE SET name = excluded.name;" ;;
                1) sql+="UPDATE items SET n = $RANDOM WHERE id = $k;" ;;
                2) sql+="DELETE FROM items WHERE id = $k;" ;;
                3) sql+="DELETE FROM items WHERE id = $k; INSERT INTO items VALUES ($k, '$d-$round-again', $RANDOM);" ;;
            esac
        done
        sq "$d" "$sql COMMIT;" >/dev/null || errors+=" write:$d"
        if [ -n "${AWAY[$d]:-}" ]; then
            AWAY[$d]=$((AWAY[$d] - 1))
            [ "${AWAY[$d]}" -le 0 ] && unset "AWAY[$d]"
            continue
        fi
        [ $((RANDOM % 5)) -eq 0 ] && { AWAY[$d]=$((2 + RANDOM % 4)); continue; }
        echo "$d: $(sync_sq "$d" 2>&1)" >>"$W/sync.log" || errors+=" sync:$d"
    done
    [ $((RANDOM % 3)) -eq 0 ] && pg -c "SELECT lww_purge(0)" >>"$W/purge.log"
    pg -c "UPDATE items SET n = coalesce(n, 0) + 1 WHERE id = $((RANDOM % 24))" >/dev/null
done
[ -z "$errors" ] && ok "$ROUNDS rounds of writes, syncs, offline stretches and purges" ||
    not_ok "rounds" "failed:$errors; $(tail -2 "$W/sync.log")"
for _ in 1 2 3; do for d in "${DEVICES[@]}"; do sync_sq "$d" >>"$W/sync.log" 2>&1 || errors+=" final:$d"; done; done
[ -z "$errors" ] || not_ok "final syncs" "$errors"
expect_match "the server purged during the rounds" "$(pg -c "SELECT value FROM lwwsync.state WHERE key = 'purged_upto'")" '^[0-9]+$'
expect_match "devices re-snapshotted" "$(cat "$W/sync.log")" '"resnapshots":[1-9]'
server=$(dump_pg)
bad=""
for d in "${DEVICES[@]}"; do [ "$(dump_sq "$d")" == "$server" ] || bad+=" $d"; done
if [ -z "$bad" ]; then ok "the server and ${#DEVICES[@]} devices hold the same $(grep -c . <<<"$server") rows byte for byte"
else not_ok "devices differ from the server" "$bad: $(diff <(echo "$server") <(dump_sq ${bad%% *}) | head -5 | tr '\n' ' ')"; fi
finish
