#!/usr/bin/env bash
# Schema changes rolled out across engines (docs/SCHEMA.md): one PostgreSQL
# server and two SQLite clients syncing over lww_sync('postgresql://…'),
# every DDL made while peers hold unsynced edits, server-first and
# client-first. After every peer has the same schema and synced, all hold the
# same rows (compared as text, row by row).
#
# Needs: PostgreSQL 15 (scripts/pg_cluster.sh), the sqlite3 CLI, lwwsync.so
# built with libpq. Builds and installs like types_roundtrip.sh unless
# LWWSYNC_SKIP_INSTALL=1; PORT picks the cluster's port (default: a free one).
# Prints one line per check and ends with "N passed, M failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

if [ "${LWWSYNC_SKIP_INSTALL:-0}" != 1 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    make -s lwwsync.so >/dev/null || { echo "cannot build lwwsync.so"; echo "0 passed, 1 failed"; exit 1; }
    { make -C pg_ext -s >/dev/null && $SUDO make -C pg_ext -s install >/dev/null; } ||
        { echo "cannot build/install the PostgreSQL extension"; echo "0 passed, 1 failed"; exit 1; }
fi
command -v sqlite3 >/dev/null || { echo "sqlite3 CLI not found"; echo "0 passed, 1 failed"; exit 1; }

WORK=$(mktemp -d /tmp/lwwsync-rollout.XXXXXX)
chmod 755 "$WORK"
PGDIR="$WORK/pg"
. scripts/free_port.sh
PORT=${PORT:-$(free_port)} || { echo "no free port"; echo "0 passed, 1 failed"; exit 1; }
cleanup() {
    scripts/pg_cluster.sh stop "$PGDIR" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
scripts/pg_cluster.sh start "$PGDIR" "$PORT" ||
    { echo "cannot start PostgreSQL"; tail -5 "$PGDIR/server.log" 2>/dev/null; echo "0 passed, 1 failed"; exit 1; }

passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { if [ "$2" == "$3" ]; then ok "$1"; else fail "$1 (got '$2', want '$3')"; fi; }
contains() { case "$2" in *"$3"*) ok "$1" ;; *) fail "$1 (got '$2', want it to contain '$3')" ;; esac; }

pg() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PORT" -U postgres -d app "$@"; }
lite() { local db=$1; shift; sqlite3 -batch "$WORK/$db.db" ".load ./lwwsync" "$@"; }
URL="postgresql:///app?host=$PGDIR&port=$PORT&user=postgres"
sync() { lite "$1" "SELECT lww_sync('$URL');"; }
rows_pg() { pg -c "SELECT * FROM $1 ORDER BY 1"; }
rows_lite() { lite "$1" "SELECT * FROM $2 ORDER BY 1;"; }
# converged TABLE: the server and both clients hold the same rows
converged() {
    local want; want=$(rows_pg "$1")
    check "$2: client a holds the server's $1" "$(rows_lite a "$1")" "$want"
    check "$2: client b holds the server's $1" "$(rows_lite b "$1")" "$want"
}

psql -X -q -h "$PGDIR" -p "$PORT" -U postgres -d postgres -c "CREATE DATABASE app" || exit 1
pg <<'SQL' >/dev/null
CREATE EXTENSION lwwsync;
CREATE TABLE doc(id int PRIMARY KEY, title text, note text);
SELECT lww_track('doc');
INSERT INTO doc VALUES (1, 'one', 'n1'), (2, 'two', 'n2'), (3, 'three', 'n3');
SQL
for c in a b; do
    lite $c "CREATE TABLE doc(id INTEGER PRIMARY KEY, title TEXT, note TEXT); SELECT lww_track('doc');" >/dev/null
    sync $c >/dev/null
done
converged doc "start"

# ---------------------------------------------------------------- server first: ADD COLUMN ... DEFAULT
pg -c "ALTER TABLE doc ADD COLUMN prio int DEFAULT 42"
pg -c "UPDATE doc SET prio = 5 WHERE id = 2"
lite a "UPDATE doc SET title = 'one (a, offline)' WHERE id = 1;"
out=$(sync a)
contains "a client without prio keeps syncing and holds its registers" "$out" '"pending":3'
check "the server took the client's edit" "$(pg -c "SELECT title FROM doc WHERE id = 1")" "one (a, offline)"
sync b >/dev/null
# a upgrades through lww_alter and edits the new column before syncing; b with a plain ALTER.
lite a "SELECT lww_alter('ALTER TABLE doc ADD COLUMN prio INTEGER DEFAULT 42'); UPDATE doc SET prio = 7 WHERE id = 1;" >/dev/null
lite b "ALTER TABLE doc ADD COLUMN prio INTEGER DEFAULT 42;"
for c in a b a; do sync $c >/dev/null; done
converged doc "add column, server first"
check "the offline edit of the new column beat the backfill" "$(pg -c "SELECT prio FROM doc WHERE id = 1")" "7"
check "the server's write of the new column reached everyone" "$(rows_lite b doc | sed -n 2p)" "2|two|n2|5"

# ---------------------------------------------------------------- client first: ADD COLUMN
lite a "SELECT lww_alter('ALTER TABLE doc ADD COLUMN tag TEXT'); UPDATE doc SET tag = 'urgent' WHERE id = 3;" >/dev/null
lite a "INSERT INTO doc VALUES (4, 'four', NULL, 1, 'new');"
out=$(sync a)
contains "the server holds the column it lacks" "$out" '"pending":'
check "the server took the row" "$(pg -c "SELECT id, title, prio FROM doc WHERE id = 4")" "4|four|1"
sync b >/dev/null
check "b, without tag, got the row" "$(rows_lite b doc | sed -n 4p)" "4|four||1"
pg -c "ALTER TABLE doc ADD COLUMN tag text"
check "the held values landed on the server's ALTER" "$(pg -c "SELECT tag FROM doc WHERE id IN (3, 4) ORDER BY id")" "urgent
new"
lite b "SELECT lww_alter('ALTER TABLE doc ADD COLUMN tag TEXT');" >/dev/null
for c in a b a; do sync $c >/dev/null; done
converged doc "add column, client first"

# ---------------------------------------------------------------- DROP COLUMN with unsynced edits
lite b "UPDATE doc SET note = 'n2 (b, offline)', title = 'two (b)' WHERE id = 2;"
pg -c "ALTER TABLE doc DROP COLUMN note"
pg -c "UPDATE doc SET title = 'three (server)' WHERE id = 3"
out=$(sync b)
contains "the server holds b's edit of the dropped column" "$out" '"pending":1'
check "and takes the rest of it" "$(pg -c "SELECT title FROM doc WHERE id = 2")" "two (b)"
for c in a b; do lite $c "SELECT lww_alter('ALTER TABLE doc DROP COLUMN note');" >/dev/null; done
for c in a b a; do sync $c >/dev/null; done
converged doc "drop column"

# ---------------------------------------------------------------- RENAME COLUMN
pg -c "ALTER TABLE doc RENAME COLUMN title TO heading"
for c in a b; do lite $c "SELECT lww_alter('ALTER TABLE doc RENAME COLUMN title TO heading');" >/dev/null; done
lite a "UPDATE doc SET heading = 'renamed by a' WHERE id = 4;"
for c in a b a; do sync $c >/dev/null; done
converged doc "rename column"

# ---------------------------------------------------------------- a new table, server first
pg <<'SQL' >/dev/null
CREATE TABLE tags(name text PRIMARY KEY, color text);
SELECT lww_track('tags');
INSERT INTO tags VALUES ('red', '#f00'), ('blue', '#00f');
UPDATE doc SET prio = 1 WHERE id = 1;
SQL
out=$(sync a)
contains "a client without the table keeps syncing" "$out" '"pending":4'
check "and gets the rest" "$(rows_lite a doc | sed -n 1p | cut -d'|' -f3)" "1"
lite a "CREATE TABLE tags(name TEXT PRIMARY KEY, color TEXT); SELECT lww_track('tags');" >/dev/null
lite b "CREATE TABLE tags(name TEXT PRIMARY KEY, color TEXT); SELECT lww_track('tags');" >/dev/null
for c in a b a; do sync $c >/dev/null; done
converged tags "new table"
converged doc "new table"
# Only b's edit of the column the server dropped first is still held (docs/SCHEMA.md).
check "nothing else is held anywhere" \
    "$(pg -c "SELECT tbl || ':' || array_to_string(columns, ',') FROM lwwsync.pending")/$(lite a "SELECT count(*) FROM lww_pending;")/$(lite b "SELECT count(*) FROM lww_pending;")" "doc:note/0/0"

# ---------------------------------------------------------------- key changes are refused
out=$(pg -c "ALTER TABLE doc ALTER COLUMN id TYPE bigint" 2>&1)
contains "a key type change is refused with what to do" "$out" "cannot change the type or collation of a primary-key column"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
