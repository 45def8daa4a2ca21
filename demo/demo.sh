#!/usr/bin/env bash
# lwwsync demo: a PostgreSQL server and two SQLite clients (a phone and a
# laptop) edit the same to-do list, partly offline, and converge.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
EXT="$ROOT/lwwsync"
work=$(mktemp -d /tmp/lwwsync-demo.XXXXXX)
chmod 755 "$work"
PORT=${DEMO_PORT:-5544}
cleanup() { scripts/pg_cluster.sh stop "$work/pg" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

scripts/pg_cluster.sh start "$work/pg" "$PORT"
SERVER="postgresql:///postgres?host=$work/pg&port=$PORT&user=postgres"
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
SQL

say "2. Two clients create the same table and sync once"
for db in "$phone" "$laptop"; do
    lite "$db" "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, note TEXT);
                SELECT lww_track('todos');" >/dev/null
    echo "$(basename "$db" .db): $(lite "$db" "SELECT lww_sync('$SERVER')")"
done

say "3. Offline, everyone edits the same rows"
echo "  phone : marks 'buy milk' done, deletes 'call mum', adds 'pay rent'"
lite "$phone" "UPDATE todos SET done = 1 WHERE id = 1; DELETE FROM todos WHERE id = 2;
               INSERT INTO todos(id, title) VALUES (4, 'pay rent');"
sleep 0.01
echo "  laptop: notes 'oat milk' on 'buy milk', renames 'call mum' and 'book flights'"
lite "$laptop" "UPDATE todos SET note = 'oat milk' WHERE id = 1; UPDATE todos SET title = 'call mum (sunday)' WHERE id = 2;
                UPDATE todos SET title = 'book flights to Lisbon' WHERE id = 3;"
sleep 0.01
echo "  server: someone adds 'water plants' in the web app"
pg -c "INSERT INTO todos(id, title) VALUES (5, 'water plants')"
show_all

say "4. Back online: each client syncs with the server (phone twice, to pick up the laptop's edits)"
echo "laptop: $(lite "$laptop" "SELECT lww_sync('$SERVER')")"
echo "phone : $(lite "$phone" "SELECT lww_sync('$SERVER')")"
echo "laptop: $(lite "$laptop" "SELECT lww_sync('$SERVER')")"
show_all

say "5. Same rows everywhere?"
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
    echo "  - rows added on the phone and on the server reached everyone."
fi
exit $status
