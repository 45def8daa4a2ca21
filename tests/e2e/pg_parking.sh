#!/usr/bin/env bash
# Issue 9 over real syncs (lww_sync postgresql:// between two databases of
# one cluster, "srv" and "cli"): rows that cannot apply are parked, never
# block a sync, and peers converge once the cause is gone.
#   - a child and its parent written together on the client reach the server
#     in one batch (parents first);
#   - an orphan: the server deletes a parent while the client, offline, adds
#     a child under it. Both sides park (the server the child, the client the
#     parent's tombstone), every later sync succeeds; the server re-inserts
#     the parent and both converge with parent and child;
#   - the app's ordinary trigger does not fire for merged rows, an ALWAYS
#     trigger's write is captured and reaches the other side.
# PORT=N picks the cluster's port (default 5900-5999). Prints "N passed, M failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. scripts/test_lib.sh
PORT=${PORT:-$((5900 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 100))}
D=$(mktemp -d /tmp/lwwsync-parking.XXXXXX)
chmod 755 "$D"
trap 'scripts/pg_cluster.sh stop "$D" >/dev/null 2>&1; rm -rf "$D"' EXIT
scripts/pg_cluster.sh start "$D" "$PORT" >/dev/null || die "setup" "cannot start Postgres on port $PORT"
q() { local db=$1; shift; psql -X -h "$D" -p "$PORT" -U postgres -d "$db" -Atq -v ON_ERROR_STOP=1 "$@"; }
URL="postgresql:///srv?host=$D&port=$PORT&user=postgres"
for db in srv cli; do
    q postgres -c "CREATE DATABASE $db" || die "setup" "createdb $db"
    q "$db" <<'SQL' >/dev/null || die "setup" "schema $db"
CREATE EXTENSION lwwsync;
CREATE TABLE parent(id int PRIMARY KEY, v text);
CREATE TABLE child(id int PRIMARY KEY, parent int NOT NULL REFERENCES parent, v text, n int NOT NULL DEFAULT 0);
CREATE TABLE audit(id int PRIMARY KEY, what text);
-- an ordinary trigger: counts local updates of a child
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.n := OLD.n + 1; RETURN NEW; END $$;
CREATE TRIGGER bump BEFORE UPDATE ON child FOR EACH ROW EXECUTE FUNCTION bump();
-- an ALWAYS trigger: audits every new parent, merged ones too
CREATE FUNCTION audit_parent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit VALUES (NEW.id, 'parent ' || NEW.id) ON CONFLICT (id) DO NOTHING; RETURN NULL; END $$;
CREATE TRIGGER audit_parent AFTER INSERT ON parent FOR EACH ROW EXECUTE FUNCTION audit_parent();
SELECT lww_track('parent'), lww_track('child'), lww_track('audit');
SQL
done
q srv -c "ALTER TABLE parent ENABLE ALWAYS TRIGGER audit_parent"
sync() { q cli -c "SELECT lww_sync('$URL')" 2>&1; }
state() { q "$1" -c "SELECT (SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM parent) || ' / ' ||
                             coalesce((SELECT string_agg(id || ':' || parent || ':' || v || ':' || n, ',' ORDER BY id) FROM child), '-')"; }
parked() { q "$1" -c "SELECT coalesce(string_agg(\"table\" || key::text, ',' ORDER BY \"table\", key::text), '-') FROM lww_rejected"; }

# 1. Parent and child written together on the client: one batch, parents first.
q cli -c "BEGIN; INSERT INTO child VALUES (1, 1, 'c1'); INSERT INTO parent VALUES (1, 'p1'); COMMIT" 2>/dev/null ||
    q cli -c "INSERT INTO parent VALUES (1, 'p1'); INSERT INTO child VALUES (1, 1, 'c1')"
out=$(sync)
expect_match "sync of a parent and its child succeeds" "$out" '"rows"'
expect "the server holds both" "$(state srv)" "1:p1 / 1:1:c1:0"
expect "nothing parked on the server" "$(parked srv)" "-"

# 2. Triggers: a local update bumps n; merged, it arrives as written.
q cli -c "UPDATE child SET v = 'c1 edited' WHERE id = 1"
sync >/dev/null
expect "an ordinary trigger fires for the local update only" "$(state srv) | $(state cli)" \
    "1:p1 / 1:1:c1 edited:1 | 1:p1 / 1:1:c1 edited:1"
# The server's ALWAYS audit trigger fired for the merged parent; its write synced back.
expect "an ALWAYS trigger's write reaches the other side" "$(q cli -c "SELECT string_agg(what, ',') FROM audit")" "parent 1"

# 3. The orphan.
q srv -c "INSERT INTO parent VALUES (2, 'p2')"
sync >/dev/null
q srv -c "DELETE FROM audit WHERE id = 2; DELETE FROM parent WHERE id = 2"
q cli -c "INSERT INTO child VALUES (2, 2, 'orphan', 0)"
out=$(sync)
expect_match "the sync with the orphan succeeds" "$out" '"rows"'
expect "the server parked the orphan child" "$(parked srv)" "child[2]"
expect "the client parked the parent's tombstone (still referenced there)" "$(parked cli)" "parent[2]"
q cli -c "INSERT INTO parent VALUES (3, 'p3')"
out=$(sync)
expect_match "the next sync succeeds too" "$out" '"rows"'
expect "and carries the rest" "$(q srv -c "SELECT v FROM parent WHERE id = 3")" "p3"
# The server brings the parent back: the orphan applies there, the client's
# parked tombstone is superseded.
q srv -c "INSERT INTO parent VALUES (2, 'p2 again')"
sync >/dev/null
sync >/dev/null
expect "the server applied the orphan" "$(parked srv)" "-"
expect "the client dropped the superseded tombstone" "$(parked cli)" "-"
expect "both converge" "$(state srv)" "$(state cli)"
expect "with parent and child" "$(state srv)" "1:p1,2:p2 again,3:p3 / 1:1:c1 edited:1,2:2:orphan:0"
finish
