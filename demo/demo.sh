#!/usr/bin/env bash
# Two devices edit the same data offline, then converge with lww_sync.
set -euo pipefail
cd "$(dirname "$0")/.."
EXT="$PWD/lwwsync"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
phone="$dir/phone.db" laptop="$dir/laptop.db"
q() { sqlite3 -bail -cmd ".load $EXT" "$@"; }
show() { printf '\n--- %s\n' "$1"; sqlite3 -header -column "$2" "SELECT * FROM todos ORDER BY id"; }

for db in "$phone" "$laptop"; do
    q "$db" "CREATE TABLE todos(id INTEGER PRIMARY KEY, title TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, note TEXT);
             SELECT lww_track('todos');" >/dev/null
done

echo "phone  node: $(q "$phone" 'SELECT lww_node_id()')"
echo "laptop node: $(q "$laptop" 'SELECT lww_node_id()')"

q "$phone" "INSERT INTO todos(id, title) VALUES (1, 'buy milk'), (2, 'call mum'), (3, 'book flights');"
echo; echo "phone syncs with laptop: $(q "$phone" "SELECT lww_sync('file:$laptop')")"

echo; echo "Both go offline and edit the same rows:"
echo "  phone : marks 'buy milk' done, deletes 'call mum', adds 'pay rent'"
echo "  laptop: adds a note to 'buy milk', renames 'call mum', renames 'book flights'"
q "$phone" "UPDATE todos SET done = 1 WHERE id = 1; DELETE FROM todos WHERE id = 2;
            INSERT INTO todos(id, title) VALUES (4, 'pay rent');"
sleep 0.01
q "$laptop" "UPDATE todos SET note = 'oat milk' WHERE id = 1; UPDATE todos SET title = 'call mum (sunday)' WHERE id = 2;
             UPDATE todos SET title = 'book flights to Lisbon' WHERE id = 3;"
show "phone (offline)" "$phone"
show "laptop (offline)" "$laptop"

echo; echo "laptop syncs with phone: $(q "$laptop" "SELECT lww_sync('file:$phone')")"
show "phone (after sync)" "$phone"
show "laptop (after sync)" "$laptop"

a=$(sqlite3 "$phone" "SELECT group_concat(quote(id)||quote(title)||quote(done)||quote(note), '|') FROM (SELECT * FROM todos ORDER BY id)")
b=$(sqlite3 "$laptop" "SELECT group_concat(quote(id)||quote(title)||quote(done)||quote(note), '|') FROM (SELECT * FROM todos ORDER BY id)")
echo
if [ "$a" = "$b" ]; then
    echo "CONVERGED: both databases hold identical rows."
    echo "(edits to different columns of 'buy milk' both survived; the delete of 'call mum' beat the concurrent rename)"
else
    echo "DIVERGED"; exit 1
fi
