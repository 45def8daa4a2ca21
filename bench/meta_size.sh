#!/usr/bin/env bash
# Metadata bytes per row next to the data's, both engines, for the benchmark
# table (integer key + 8 columns: 2 text, 2 real, 2 integer, a 16-64 byte
# blob, a nullable text; bench/bench.cpp's shape), ROWS rows inserted and
# tracked. A measurement, never a test. SQLite: dbstat (pages of the table
# and of the metadata table with their indexes, after VACUUM). Postgres: a
# throwaway cluster, pg_total_relation_size after VACUUM FULL.
#   bench/meta_size.sh            100 000 rows
# Environment: ROWS, PG_PORT (default a free port), KEEP=1 keeps the files.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/free_port.sh
ROWS=${ROWS:-100000}
EXT="$ROOT/lwwsync.so"
W=$(mktemp -d /tmp/lwwsync-metasize.XXXXXX)
chmod 755 "$W"
PG_PORT=${PG_PORT:-$(free_port)}
trap 'scripts/pg_cluster.sh stop "$W/pg" >/dev/null 2>&1; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT

# The same rows in both engines (a deterministic function of i).
ROW_SQL="i, 'user ' || i || ' ' || substr('abcdefghijklmnopqrstuvwxyz', 1 + i % 20, 6 + i % 7),
  'u' || i || '@example.org', (i % 9973) * 0.37, (i % 101) / 7.0, (i * 7919) % 100000, i % 13,
  %BLOB%, CASE WHEN i % 3 = 0 THEN NULL ELSE 'note ' || (i % 977) END"

# ---------------------------------------------------------------- SQLite
sq_rows=${ROW_SQL//%BLOB%/randomblob(16 + i % 49)}
sqlite3 "$W/t.db" >/dev/null <<SQL
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, email TEXT, price REAL, score REAL, qty INTEGER, c2 INTEGER,
               payload BLOB, note TEXT);
WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $ROWS)
INSERT INTO t SELECT $sq_rows FROM g;
SQL
sqlite3 "$W/t.db" ".load $EXT" "SELECT lww_track('t');" >/dev/null
sqlite3 "$W/t.db" "VACUUM;"
sq_bytes() {  # pages of the tables whose name matches, with their indexes
    sqlite3 "$W/t.db" "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE $1 OR tbl_name IN (SELECT name FROM sqlite_master WHERE type = 'table' AND ($1)))"
}
SQ_DATA=$(sq_bytes "name = 't'")
SQ_META=$(sq_bytes "name LIKE 'lww\\_\\_%' ESCAPE '\\'")  # lww__<table>: its metadata
# After a write to one column of every row: registers with their own stamps.
sqlite3 "$W/t.db" ".load $EXT" "UPDATE t SET c2 = c2 + 1;" >/dev/null
sqlite3 "$W/t.db" "VACUUM;"
SQ_META2=$(sq_bytes "name LIKE 'lww\\_\\_%' ESCAPE '\\'")
SQ_ALL_META=$(sqlite3 "$W/t.db" "SELECT group_concat(name || ' ' || s, ', ') FROM (SELECT name, sum(pgsize) s FROM dbstat WHERE name <> 't' AND name NOT LIKE 'sqlite_%' GROUP BY name ORDER BY s DESC LIMIT 6)")

# ---------------------------------------------------------------- Postgres
scripts/pg_cluster.sh start "$W/pg" "$PG_PORT" >/dev/null || { echo "cannot start Postgres"; exit 1; }
pg() { psql -X -h "$W/pg" -p "$PG_PORT" -U postgres -d postgres -Atq -v ON_ERROR_STOP=1 "$@"; }
pg_rows=${ROW_SQL//%BLOB%/substr(sha512(int4send(i)) || sha512(int4send(-i)), 1, 16 + i % 49)}
pg >/dev/null <<SQL
CREATE EXTENSION lwwsync;
CREATE TABLE t(id bigint PRIMARY KEY, name text, email text, price float8, score float8, qty bigint, c2 bigint,
               payload bytea, note text);
INSERT INTO t SELECT $pg_rows FROM generate_series(1, $ROWS) AS i;
SELECT lww_track('t');
SQL
META=$(pg -c "SELECT format('lwwsync.%I', 'm_' || 't'::regclass::oid)")
pg -c "VACUUM FULL t" -c "VACUUM FULL $META" >/dev/null
PG_DATA=$(pg -c "SELECT pg_total_relation_size('t')")
PG_META=$(pg -c "SELECT pg_total_relation_size('$META')")
pg -c "UPDATE t SET c2 = c2 + 1" >/dev/null
pg -c "VACUUM FULL $META" >/dev/null
PG_META2=$(pg -c "SELECT pg_total_relation_size('$META')")
PG_PARTS=$(pg -c "SELECT string_agg(c.relname || ' ' || pg_relation_size(c.oid), ', ' ORDER BY pg_relation_size(c.oid) DESC)
                  FROM pg_class c WHERE c.oid = '$META'::regclass OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = '$META'::regclass)
                     OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = '$META'::regclass)")
PG_COLS=$(pg -c "SELECT round(avg(pg_column_size(m.*))) || ' B/row (' || string_agg(DISTINCT a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ') || ')'
                 FROM $META m, pg_attribute a WHERE a.attrelid = '$META'::regclass AND a.attnum > 0 AND NOT a.attisdropped")

per() { awk "BEGIN {printf \"%.1f\", $1 / $ROWS}"; }
pct() { awk "BEGIN {printf \"%.0f\", 100 * $1 / $2}"; }
echo "== metadata size, $ROWS rows x 8 columns, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git log -1 --format=%h)"
echo "| engine | data B/row | metadata B/row: tracked / after one column of every row written | metadata / data | target |"
echo "|---|---:|---:|---:|---:|"
echo "| SQLite | $(per "$SQ_DATA") | $(per "$SQ_META") / $(per "$SQ_META2") | $(pct "$SQ_META" "$SQ_DATA") % / $(pct "$SQ_META2" "$SQ_DATA") % | <= 60 % |"
echo "| Postgres | $(per "$PG_DATA") | $(per "$PG_META") / $(per "$PG_META2") | $(pct "$PG_META" "$PG_DATA") % / $(pct "$PG_META2" "$PG_DATA") % | <= 60 % |"
echo "SQLite objects (bytes, largest first, besides t): $SQ_ALL_META"
echo "Postgres metadata relations after the write (bytes): $PG_PARTS"
echo "Postgres metadata row: $PG_COLS"
