#!/usr/bin/env bash
# lwwsync demo: a PostgreSQL server behind lwwsync-server (the HTTP gateway)
# and two SQLite devices (a phone and a laptop) edit the same to-do list,
# partly offline, and converge with SELECT lww_sync('http://…/rpc/lww_exchange').
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
EXT="$ROOT/lwwsync"
work=$(mktemp -d /tmp/lwwsync-demo.XXXXXX)
chmod 755 "$work"
PORT=${DEMO_PORT:-5544}
HTTP_PORT=${DEMO_HTTP_PORT:-3044}
GATEWAY_PID=""
cleanup() {
    [ -n "$GATEWAY_PID" ] && kill "$GATEWAY_PID" 2>/dev/null && wait "$GATEWAY_PID" 2>/dev/null
    scripts/pg_cluster.sh stop "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

scripts/pg_cluster.sh start "$work/pg" "$PORT"
pg() { psql -X -q -v ON_ERROR_STOP=1 -h "$work/pg" -p "$PORT" -U postgres -d postgres "$@"; }
lite() { sqlite3 -bail -cmd ".load $EXT" "$@"; }
phone="$work/phone.db" laptop="$work/laptop.db"

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
show_all() {
    echo "server (PostgreSQL):"; pg -c "SELECT id, title, done, note FROM todos ORDER BY id"
    for c in phone laptop; do
        echo "$c (SQLite):"; sqlite3 -header -column "$work/$c.db" "SELECT id, title, done, note FROM todos ORDER BY id"; echo
    done
}

say "1. The server's table, tracked by lwwsync"
pg <<'SQL'
CREATE EXTENSION lwwsync;
CREATE TABLE todos(id bigint PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false, note text);
INSERT INTO todos(id, title) VALUES (1, 'buy milk'), (2, 'call mum'), (3, 'book flights');
SELECT lww_track('todos') AS rows_stamped;
-- The gateway logs in as authenticator and becomes the role named in the
-- caller's token (as PostgREST does).
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE todo_user NOLOGIN;
GRANT todo_user TO authenticator;
GRANT SELECT, INSERT, UPDATE, DELETE ON todos TO todo_user;
SQL

say "2. The HTTP gateway: lwwsync-server on 127.0.0.1:$HTTP_PORT, HS256 tokens"
SECRET="demo-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
server/lwwsync-server --db-uri "host=$work/pg port=$PORT dbname=postgres user=authenticator" \
    --server-port "$HTTP_PORT" --jwt-secret "$SECRET" 2>"$work/gateway.log" &
GATEWAY_PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$HTTP_PORT/health"; echo
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
claims=$(printf '{"role":"todo_user","sub":"demo","exp":%d}' $(( $(date +%s) + 3600 )) | b64url)
TOKEN="$header.$claims.$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -hmac "$SECRET" -binary | b64url)"
URL="http://127.0.0.1:$HTTP_PORT/rpc/lww_exchange"
OPTS="{\"token\":\"$TOKEN\"}"
sync_device() {  # device: prints the stats lww_sync returns, shortened
    lite "$work/$1.db" "SELECT printf('%-6s: %d batches, pushed %d rows, pulled %d rows, %d bytes sent (%d on the wire), %d received (%d), %.1f ms', '$1',
        s->>'batches', s->>'pushed', s->>'pulled', s->>'bytes_sent', s->>'wire_bytes_sent', s->>'bytes_received',
        s->>'wire_bytes_received', s->>'ms') FROM (SELECT lww_sync('$URL', '$OPTS') AS s)"
}
say "3. Two devices create the same table and sync once over HTTP"
for db in "$phone" "$laptop"; do
    lite "$db" "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, note TEXT);
                SELECT lww_track('todos');" >/dev/null
    sync_device "$(basename "$db" .db)"
done

say "4. Offline, everyone edits the same rows"
echo "  phone : marks 'buy milk' done, deletes 'call mum', renames 'book flights' to '... to Porto', adds 'pay rent'"
lite "$phone" "UPDATE todos SET done = 1 WHERE id = 1; DELETE FROM todos WHERE id = 2;
               UPDATE todos SET title = 'book flights to Porto' WHERE id = 3;
               INSERT INTO todos(id, title) VALUES (4, 'pay rent');"
sleep 0.01
echo "  laptop: notes 'oat milk' on 'buy milk', renames 'call mum', and later renames 'book flights' to '... to Lisbon'"
lite "$laptop" "UPDATE todos SET note = 'oat milk' WHERE id = 1; UPDATE todos SET title = 'call mum (sunday)' WHERE id = 2;
                UPDATE todos SET title = 'book flights to Lisbon' WHERE id = 3;"
sleep 0.01
echo "  server: someone adds 'water plants' in the web app"
pg -c "INSERT INTO todos(id, title) VALUES (5, 'water plants')"
show_all

say "5. Back online: each device syncs through the gateway (the laptop twice, to pick up the phone's edits)"
sync_device laptop
sync_device phone
sync_device laptop
show_all

say "6. Same rows everywhere?"
server_rows=$(pg -At -c "SELECT string_agg(concat_ws('|', id, title, done::int, note), E'\n' ORDER BY id) FROM todos")
status=0
for c in phone laptop; do
    rows=$(sqlite3 "$work/$c.db" "SELECT group_concat(id || '|' || title || '|' || done || coalesce('|' || note, ''), char(10)) FROM (SELECT * FROM todos ORDER BY id)")
    if [ "$rows" = "$server_rows" ]; then echo "  $c = server"; else echo "  $c DIFFERS"; status=1; fi
done
if [ $status -eq 0 ]; then
    echo
    echo "CONVERGED: PostgreSQL and both SQLite clients hold identical rows."
    echo "  - edits to different columns of 'buy milk' (done on the phone, note on the laptop) both survived;"
    echo "  - the phone's delete of 'call mum' beat the laptop's concurrent rename;"
    echo "  - both renamed 'book flights': the later write (the laptop's, to Lisbon) won everywhere;"
    echo "  - rows added on the phone and on the server reached everyone."
fi
exit $status
