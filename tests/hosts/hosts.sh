#!/usr/bin/env bash
# The hosts apps load lwwsync into (issue 13, item 9): Node.js with
# better-sqlite3 (its own bundled SQLite) and Python's sqlite3 module, each a
# device syncing over HTTP through lwwsync-server with a PostgreSQL server.
# Each writes its own rows and syncs; after a second round every device and
# the server hold the same rows byte for byte, and a bad token is refused.
#
# better-sqlite3 is built from source against this Node.js (npm, about 3
# minutes the first time) into build/hosts/ and reused after that.
# KEEP=1 keeps the files. Prints "ok - …"/"not ok - …" and "N passed, M failed".
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
EXT="$ROOT/lwwsync.so"
GATEWAY="$ROOT/server/lwwsync-server"
. scripts/test_lib.sh
. scripts/free_port.sh

for bin in "$EXT" "$GATEWAY"; do [ -f "$bin" ] || die "setup" "$bin not built (make all)"; done
for cmd in psql curl openssl node npm /usr/bin/python3; do command -v $cmd >/dev/null || die "setup" "$cmd not installed (scripts/deps.sh)"; done

# better-sqlite3 12, built from source against this Node's headers.
NODE_DIR="$ROOT/build/hosts"
if ! (cd "$NODE_DIR" 2>/dev/null && node -e "require('better-sqlite3')" 2>/dev/null); then
    mkdir -p "$NODE_DIR"
    echo "# building better-sqlite3@12 from source (npm, a few minutes)"
    (cd "$NODE_DIR" && [ -f package.json ] || echo '{"name":"lwwsync-hosts","private":true}' >"$NODE_DIR/package.json"
     cd "$NODE_DIR" && npm_config_build_from_source=true npm install --no-audit --no-fund --nodedir=/usr better-sqlite3@12) \
        >"$NODE_DIR/npm.log" 2>&1 || die "setup" "npm install better-sqlite3@12: $(tail -3 "$NODE_DIR/npm.log")"
fi
if /usr/bin/python3 -c "import sqlite3, sys; sys.exit(0 if hasattr(sqlite3.connect(':memory:'), 'enable_load_extension') else 1)"; then
    ok "Python's sqlite3 (/usr/bin/python3) can load extensions"
else
    die "setup" "/usr/bin/python3's sqlite3 cannot load extensions"
fi

W=$(mktemp -d /tmp/lwwsync-hosts.XXXXXX)
chmod 755 "$W"
GW_PID=""
cleanup() {
    [ -n "$GW_PID" ] && { kill -9 "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null; }
    scripts/pg_cluster.sh stop "$W/pg" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "# kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

PGPORT=$(free_port) GWPORT=$(free_port)
scripts/pg_cluster.sh start "$W/pg" "$PGPORT" >/dev/null || die "setup" "cannot start PostgreSQL"
psql -X -h "$W/pg" -p "$PGPORT" -U postgres -d postgres -qc "CREATE DATABASE app" || die "setup" "createdb"
pg() { psql -X -h "$W/pg" -p "$PGPORT" -U postgres -d app -Atq -v ON_ERROR_STOP=1 "$@"; }
pg >/dev/null <<'SQL' || die "setup" "schema"
CREATE EXTENSION lwwsync;
CREATE TABLE notes(id text PRIMARY KEY, body text NOT NULL, n bigint NOT NULL);
SELECT lww_track('notes');
CREATE ROLE authenticator LOGIN NOINHERIT;
CREATE ROLE app_user NOLOGIN;
GRANT app_user TO authenticator;
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO app_user;
INSERT INTO notes SELECT 'server-' || i, 'from server ✓ ' || i, i FROM generate_series(0, 4) i;
SQL

SECRET="hosts-secret-that-is-at-least-32-characters-long"
jwt() { jwt_hs256 "$SECRET" "$1"; }
TOKEN=$(jwt "{\"role\":\"app_user\",\"sub\":\"device\",\"exp\":$(( $(date +%s) + 3600 ))}")
"$GATEWAY" --db-uri "host=$W/pg port=$PGPORT dbname=app user=authenticator" --server-port "$GWPORT" \
    --jwt-secret "$SECRET" --db-pool 2 >>"$W/gw.log" 2>&1 &
GW_PID=$!
wait_gateway "$GWPORT" || die "setup" "gateway: $(tail -2 "$W/gw.log")"
URL="http://127.0.0.1:$GWPORT/rpc/lww_exchange"

py()   { /usr/bin/python3 tests/hosts/python_host.py "$W/python.db" "$ROOT/lwwsync" "$URL" "$TOKEN" python "$1" 2>>"$W/python.err"; }
nodejs() { (cd "$NODE_DIR" && NODE_PATH="$NODE_DIR/node_modules" node "$ROOT/tests/hosts/node_host.js" "$W/node.db" "$ROOT/lwwsync.so" "$URL" "$TOKEN" node "$1") 2>>"$W/node.err"; }
server_rows() { pg -c "SELECT id || '|' || body || '|' || n FROM notes ORDER BY id COLLATE \"C\""; }

# Round 1: each device pushes its rows and pulls what the server holds.
out=$(py 3) || die "python: first sync" "$(tail -3 "$W/python.err")"
expect "python: pulled the server's rows" "$(grep -c '^server-' <<<"$out")" 5
expect "python: pushed its rows" "$(pg -c "SELECT count(*) FROM notes WHERE id LIKE 'python-%'")" 3
out=$(nodejs 4) || die "node: first sync" "$(tail -3 "$W/node.err")"
expect "node: pulled the server's and python's rows" "$(grep -cE '^(server|python)-' <<<"$out")" 8
expect "node: pushed its rows" "$(pg -c "SELECT count(*) FROM notes WHERE id LIKE 'node-%'")" 4
expect_match "node: better-sqlite3 sees the refused token as SQLITE_PERM" "$(cat "$W/node.err")" \
    'bad token refused \(SQLITE_PERM\): lww_sync: the server at .* refused the credentials'
expect_match "python: the refused token raises sqlite3.OperationalError, SQLITE_PERM" "$(cat "$W/python.err")" \
    'bad token refused \(OperationalError SQLITE_PERM\): lww_sync: the server at .* refused the credentials'

# Round 2: a server-side edit, then both devices sync again (no new rows).
pg -c "UPDATE notes SET body = 'edited on the server ✓' WHERE id = 'python-1'" >/dev/null
py_rows=$(py 0) || die "python: second sync" "$(tail -3 "$W/python.err")"
node_rows=$(nodejs 0) || die "node: second sync" "$(tail -3 "$W/node.err")"
srv=$(server_rows)
expect "server holds every device's rows" "$(wc -l <<<"$srv")" 12
expect "python converged with the server, byte for byte" "$(sha256sum <<<"$py_rows")" "$(sha256sum <<<"$srv")"
expect "node converged with the server, byte for byte" "$(sha256sum <<<"$node_rows")" "$(sha256sum <<<"$srv")"
expect "the server's edit reached both" "$(grep -c '^python-1|edited on the server ✓|1$' <<<"$py_rows$(printf '\n')$node_rows")" 2
expect "node's better-sqlite3 bundles its own SQLite" \
    "$( (cd "$NODE_DIR" && node -e "const D=require('better-sqlite3'); console.log(new D(':memory:').prepare('SELECT sqlite_version() AS v').get().v !== '$(sqlite3 --version | cut -d' ' -f1)')"))" true
finish
