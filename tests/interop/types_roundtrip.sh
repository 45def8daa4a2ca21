#!/usr/bin/env bash
# Interop round trip of every common PostgreSQL type:
#   pg1 --lww_changes/lww_apply--> SQLite --lww_changes/lww_apply--> pg2
#   pg1 --lww_sync('postgresql://')--> pg3
# A value written in pg1 arrives in pg2 equal to the original (same value,
# same text form) when the SQLite table declares the column as docs/TYPES.md
# says; pg3 gets every value exactly, including the ones SQLite cannot hold.
# The documented SQLite losses (NaN -> NULL, -0.0 in a REAL column,
# numeric in a NUMERIC column, reals in a TEXT column) are checked as such.
#
# Needs: PostgreSQL 15 (scripts/pg_cluster.sh), the sqlite3 CLI.
# Builds lwwsync.so and installs the PostgreSQL extension (sudo when not
# root) unless LWWSYNC_SKIP_INSTALL=1. Prints one line per check and ends
# with "N passed, M failed"; exits non-zero on any failure.
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

WORK=$(mktemp -d /tmp/lwwsync-interop.XXXXXX)
chmod 755 "$WORK"
PGDIR="$WORK/pg"
. scripts/free_port.sh
PORT=$(free_port) || { echo "no free port"; echo "0 passed, 1 failed"; exit 1; }
cleanup() {  # KEEP=1 keeps the files (change sets, SQLite database) for a look
    scripts/pg_cluster.sh stop "$PGDIR" >/dev/null 2>&1
    if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
scripts/pg_cluster.sh start "$PGDIR" "$PORT" ||
    { echo "cannot start PostgreSQL"; cat "$PGDIR/server.log" 2>/dev/null | tail -5; echo "0 passed, 1 failed"; exit 1; }

passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   - $*"; }
fail() { failed=$((failed + 1)); echo "FAIL - $*"; }
# check DESCRIPTION GOT WANT
check() { if [ "$2" == "$3" ]; then ok "$1"; else fail "$1 (got '$2', want '$3')"; fi; }

pg() {  # pg DB [psql args...]; SQL on stdin or -c
    local db=$1; shift
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PORT" -U postgres -d "$db" "$@"
}
lite() { sqlite3 -batch "$WORK/lite.db" ".load ./lwwsync" "$@"; }
die() { fail "$*"; echo "$passed passed, $failed failed"; exit 1; }

# ---------------------------------------------------------------- schemas
PG_SCHEMA=$(cat <<'SQL'
CREATE EXTENSION lwwsync;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE ty(
    id int PRIMARY KEY,
    i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric,
    tx text, vc varchar(5), ch char(4), by bytea, bo bool, u uuid,
    d date, tm time, ts timestamp, tz timestamptz, iv interval,
    js json, jb jsonb, ta text[], ia int[], e mood, dm posint);
CREATE TABLE lossy(
    id int PRIMARY KEY,
    f8_real float8, f8_text float8, f8_nan float8, f4_nan float4,
    n_numeric numeric, n_text numeric, bo bool, tz timestamptz);
SELECT lww_track('ty'), lww_track('lossy');
SQL
)
for db in pg1 pg2 pg3; do
    pg postgres -c "CREATE DATABASE $db" || die "create database $db"
    pg "$db" <<<"$PG_SCHEMA" >/dev/null || die "schema of $db"
done
# The SQLite side: exact columns for ty (INTEGER for integers and bool, no
# declared type for reals, TEXT for numeric and text forms, BLOB for bytea),
# and the lossy declarations in "lossy".
lite "CREATE TABLE ty(id INTEGER PRIMARY KEY, i2 INTEGER, i4 INTEGER, i8 INTEGER, f4, f8, n TEXT,
          tx TEXT, vc TEXT, ch TEXT, by BLOB, bo INTEGER, u TEXT, d TEXT, tm TEXT, ts TEXT, tz TEXT, iv TEXT,
          js TEXT, jb TEXT, ta TEXT, ia TEXT, e TEXT, dm INTEGER);
      CREATE TABLE lossy(id INTEGER PRIMARY KEY, f8_real REAL, f8_text TEXT, f8_nan, f4_nan,
          n_numeric NUMERIC, n_text TEXT, bo INTEGER, tz TEXT);
      SELECT lww_track('ty'), lww_track('lossy');" >/dev/null || die "SQLite schema"

# ---------------------------------------------------------------- pg1 writes
# Session settings far from the canonical ones.
pg pg1 <<'SQL' || die "pg1 writes"
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'iso_8601';
SET extra_float_digits = 0;
INSERT INTO ty VALUES
  (1, -32768, -2147483648, -9223372036854775808, '-Infinity', 'Infinity',
   '-1234567890123456789012345678901234567890.1234567890', 'héllo ☃ 𝄞 日本', 'ab', 'ab',
   '\x00ff0000017f', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '2024-02-29', '23:59:59.999999', '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789+05:30',
   '1 year 2 months 3 days 04:05:06.5', '{"b": 1,  "a" : [1, 2.50]}', '{"b": 1, "a": [1, 2.50]}',
   '{"a","b c",NULL,"\"q\"",""}', '{1,NULL,-3}', 'happy', 7),
  (2, 32767, 2147483647, 9223372036854775807, 'Infinity', '-Infinity',
   '1234567890123456789012345678901234567890', '', 'abcde', 'abcd', '\x', false,
   '00000000-0000-0000-0000-000000000000', 'infinity', '00:00', '-infinity', 'infinity',
   '-1 years +2 days -03:00:00.000001', '[]', '{}', '{}', '{}', 'sad', 2147483647),
  (3, 0, 0, 0, '-0', '-0', 'NaN', E'tab\tnewline\nend', NULL, NULL, '\x00', NULL, NULL,
   '4713-01-01 BC', '24:00', '1999-12-31 23:59:59.999999', '1970-01-01 00:00:00+00',
   '0', 'null', 'null', '{NULL}', '{{1,2},{3,4}}', 'ok', 1),
  (4, 1, -1, 9007199254740993, '1.1', '0.1', '0.000000000000000000000000000001', '00123', ' ', ' ',
   '\x0001', true, 'ffffffff-ffff-ffff-ffff-ffffffffffff', '2000-01-01', '12:00:00.5',
   '2000-01-01 00:00:00', '1999-12-31 23:59:59.999999-08', '-178000000 years',
   '{"n": 1e400}', '{"n": 12345678901234567890.123}', '{"ü","日"}', '{2147483647}', NULL, NULL),
  (5, NULL, NULL, -9007199254740992, '3.4028235e38', '0.30000000000000004', '1.10', '1e5', NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (6, NULL, NULL, NULL, '1.4e-45', '4.9e-324', 'Infinity', NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (7, NULL, NULL, NULL, NULL, '-1e300', '-0.000', NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO lossy VALUES
  (1, '-0', '0.30000000000000004', 'NaN', 'NaN',
   '1234567890123456789012345678901234567890.123', '1234567890123456789012345678901234567890.123',
   true, '2024-02-29 12:34:56.789+05:30'),
  (2, '2.5', '2.5', '1.5', '1.5', '1.10', '1.10', false, '1970-01-01 00:00:00+00');
SQL
SNAP_SETTINGS="SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex';"
SNAP_TY=$(pg pg1 -c "$SNAP_SETTINGS" -c "SELECT array_agg(ty ORDER BY id)::text FROM ty") || die "snapshot pg1"
SNAP_LOSSY=$(pg pg1 -c "$SNAP_SETTINGS" -c "SELECT array_agg(lossy ORDER BY id)::text FROM lossy") || die "snapshot pg1"

# ---------------------------------------------------------------- pg1 -> SQLite -> pg2
pg pg1 -c "SET TimeZone = 'Pacific/Chatham'" -c "SET DateStyle = 'German'" -c "SELECT lww_changes(0)" >"$WORK/cs_pg1.json" ||
    die "lww_changes on pg1"
r=$(lite "SELECT lww_apply(CAST(readfile('$WORK/cs_pg1.json') AS TEXT));") || die "lww_apply on SQLite"
check "SQLite applies pg1's change set" "$(echo "$r" | grep -o '"rows":[0-9]*')" '"rows":9'
lite "SELECT lww_changes(0);" >"$WORK/cs_lite.json" || die "lww_changes on SQLite"
r=$(pg pg2 -v cs="$(cat "$WORK/cs_lite.json")" <<'SQL'
SET TimeZone = 'America/Los_Angeles';
SET DateStyle = 'Postgres, MDY';
SELECT lww_apply(:'cs')->>'rows';
SQL
) || die "lww_apply on pg2"
check "pg2 applies SQLite's change set" "$r" "9"

# What SQLite holds: the storage class of each column of ty.
classes=$(lite "SELECT group_concat(c, ' ') FROM (SELECT DISTINCT typeof(i2)||':i2' c FROM ty UNION ALL
    SELECT DISTINCT typeof(i8)||':i8' FROM ty UNION ALL SELECT DISTINCT typeof(f8)||':f8' FROM ty UNION ALL
    SELECT DISTINCT typeof(n)||':n' FROM ty UNION ALL SELECT DISTINCT typeof(by)||':by' FROM ty UNION ALL
    SELECT DISTINCT typeof(bo)||':bo' FROM ty UNION ALL SELECT DISTINCT typeof(tz)||':tz' FROM ty UNION ALL
    SELECT DISTINCT typeof(ta)||':ta' FROM ty UNION ALL SELECT DISTINCT typeof(dm)||':dm' FROM ty
    ORDER BY c);")
check "SQLite storage classes of ty" "$classes" \
    "blob:by integer:bo integer:dm integer:i2 integer:i8 null:bo null:by null:dm null:i2 null:i8 null:ta null:tz real:f8 text:n text:ta text:tz"
check "SQLite holds bool as 0/1" "$(lite "SELECT group_concat(bo, ',') FROM (SELECT bo FROM ty WHERE bo IS NOT NULL ORDER BY id);")" "1,0,1"
check "SQLite holds bytea as blob, zero bytes kept" "$(lite "SELECT hex(by) FROM ty WHERE id = 1;")" "00FF0000017F"
check "SQLite holds timestamptz as UTC text" "$(lite "SELECT tz FROM ty WHERE id = 1;")" "2024-02-29 07:04:56.789+00"
check "SQLite holds numeric as exact text" "$(lite "SELECT n FROM ty WHERE id = 1;")" "-1234567890123456789012345678901234567890.1234567890"
# (SQLite SQL cannot show the sign of a zero; its change set can.)
check "SQLite keeps -0.0 in a column without declared type" \
    "$(lite "SELECT typeof(f4) || ' ' || typeof(f8) FROM ty WHERE id = 3;") $(grep -c '"key":\[3\],"gen":1,"stamp":\["[0-9]*",[0-9]*\],"row":true,"cols":\[\[0,0\],\[1,0\],\[2,0\],\[3,{"real":-0.0}\],\[4,{"real":-0.0}\]' "$WORK/cs_lite.json")" \
    "real real 1"
check "SQLite holds int8 extremes" "$(lite "SELECT group_concat(i8, ',') FROM (SELECT i8 FROM ty WHERE id IN (1, 2) ORDER BY id);")" \
    "-9223372036854775808,9223372036854775807"

# pg2 against pg1's snapshot: per column, equal values and equal text forms.
compare() {  # compare DB TABLE SNAPSHOT COLUMNS... -> lines "col|rows|same_value|same_text"
    local db=$1 table=$2 snap=$3; shift 3
    local values="" i=0 c
    for c in "$@"; do
        i=$((i + 1))
        local eq="a.$c IS NOT DISTINCT FROM b.$c"
        [ "$c" == js ] && eq="a.$c::text IS NOT DISTINCT FROM b.$c::text"
        values+="${values:+,}($i, '$c', $eq, a.$c::text IS NOT DISTINCT FROM b.$c::text)"
    done
    pg "$db" -v snap="$snap" <<SQL
$SNAP_SETTINGS
SET TimeZone = 'America/Los_Angeles';
SELECT v.col, count(*), bool_and(v.same_value), bool_and(v.same_text)
FROM unnest(:'snap'::$table[]) a FULL JOIN $table b USING (id),
     LATERAL (VALUES $values) v(ord, col, same_value, same_text)
GROUP BY v.ord, v.col ORDER BY v.ord;
SQL
}
TY_COLS=(id i2 i4 i8 f4 f8 n tx vc ch by bo u d tm ts tz iv js jb ta ia e dm)
declare -A TY_TYPE=([id]=int4 [i2]=int2 [i4]=int4 [i8]=int8 [f4]=float4 [f8]=float8 [n]=numeric [tx]=text
    [vc]="varchar(5)" [ch]="char(4)" [by]=bytea [bo]=bool [u]=uuid [d]=date [tm]=time [ts]=timestamp
    [tz]=timestamptz [iv]=interval [js]=json [jb]=jsonb [ta]="text[]" [ia]="int[]" [e]=enum [dm]=domain)
out=$(compare pg2 ty "$SNAP_TY" "${TY_COLS[@]}") || die "compare pg2"
for c in "${TY_COLS[@]}"; do
    line=$(echo "$out" | grep "^$c|")
    check "pg1 -> SQLite -> pg2: ${TY_TYPE[$c]} ($c) equal, value and text" "$line" "$c|7|t|t"
done
check "pg2 reads the instant pg1 wrote (other TimeZone)" \
    "$(pg pg2 -c "SET TimeZone = 'America/Los_Angeles'" -c "SELECT tz, tz = '2024-02-29 12:34:56.789+05:30' FROM ty WHERE id = 1")" \
    "2024-02-28 23:04:56.789-08|t"
check "pg2: -0.0 keeps its sign (untyped SQLite column)" \
    "$(pg pg2 -c "SELECT f4::text || ' ' || f8::text FROM ty WHERE id = 3")" "-0 -0"
check "pg2: float4 max and denormals exact" \
    "$(pg pg2 -c "SELECT string_agg(f4::text || '/' || f8::text, ' ' ORDER BY id) FROM ty WHERE id IN (5, 6)")" \
    "3.4028235e+38/0.30000000000000004 1e-45/5e-324"

# ---------------------------------------------------------------- pg1 -> pg3 directly
url="postgresql:///pg1?host=$PGDIR&port=$PORT"
r=$(pg pg3 -c "SELECT lww_sync('$url')->'received'->>'rows'") || die "lww_sync pg3 <- pg1"
check "pg3 pulls pg1 with lww_sync" "$r" "9"
out=$(compare pg3 ty "$SNAP_TY" "${TY_COLS[@]}") || die "compare pg3"
for c in "${TY_COLS[@]}"; do
    line=$(echo "$out" | grep "^$c|")
    check "pg1 -> pg3: ${TY_TYPE[$c]} ($c) equal, value and text" "$line" "$c|7|t|t"
done
LOSSY_COLS=(id f8_real f8_text f8_nan f4_nan n_numeric n_text bo tz)
out=$(compare pg3 lossy "$SNAP_LOSSY" "${LOSSY_COLS[@]}") || die "compare pg3 lossy"
for c in "${LOSSY_COLS[@]}"; do
    line=$(echo "$out" | grep "^$c|")
    check "pg1 -> pg3: lossy.$c exact (NaN, -0.0, 40 digits need no SQLite)" "$line" "$c|2|t|t"
done

# ---------------------------------------------------------------- the documented SQLite losses
check "SQLite stores NaN as NULL" "$(lite "SELECT typeof(f8_nan), typeof(f4_nan) FROM lossy WHERE id = 1;")" "null|null"
check "  ... so pg2 gets NULL for NaN" "$(pg pg2 -c "SELECT f8_nan IS NULL, f4_nan IS NULL FROM lossy WHERE id = 1")" "t|t"
check "SQLite REAL column: -0.0 loses its sign" \
    "$(lite "SELECT typeof(f8_real), f8_real = 0 FROM lossy WHERE id = 1;") $(grep -c '"key":\[1\],"gen":1,"stamp":\["[0-9]*",[0-9]*\],"row":true,"cols":\[\[0,{"real":0.0}\]' "$WORK/cs_lite.json")" \
    "real|1 1"
check "  ... so pg2 gets 0" "$(pg pg2 -c "SELECT f8_real::text FROM lossy WHERE id = 1")" "0"
check "SQLite TEXT column: a real keeps 15 digits" "$(lite "SELECT typeof(f8_text), f8_text FROM lossy WHERE id = 1;")" "text|0.3"
check "  ... so pg2 gets 0.3 for 0.30000000000000004" "$(pg pg2 -c "SELECT f8_text::text FROM lossy WHERE id = 1")" "0.3"
check "SQLite NUMERIC column: numeric becomes a real" \
    "$(lite "SELECT group_concat(typeof(n_numeric) || ':' || n_numeric, ' ') FROM (SELECT n_numeric FROM lossy ORDER BY id);")" \
    "real:1.23456789012346e+39 real:1.1"
check "  ... so pg2 loses digits and scale" \
    "$(pg pg2 -c "SELECT string_agg(n_numeric::text, ' ' ORDER BY id) FROM lossy")" \
    "1234567890123456800000000000000000000000 1.1"
check "SQLite TEXT column: numeric stays exact" \
    "$(pg pg2 -c "SELECT string_agg(n_text::text, ' ' ORDER BY id) FROM lossy")" \
    "1234567890123456789012345678901234567890.123 1.10"
check "SQLite holds bool as integer 0/1" "$(lite "SELECT group_concat(typeof(bo) || ':' || bo, ' ') FROM (SELECT bo FROM lossy ORDER BY id);")" \
    "integer:1 integer:0"
check "  ... and pg2 gets true/false back" "$(pg pg2 -c "SELECT string_agg(bo::text, ' ' ORDER BY id) FROM lossy")" "true false"
check "SQLite holds timestamptz as UTC text" "$(lite "SELECT group_concat(tz, ' | ') FROM (SELECT tz FROM lossy ORDER BY id);")" \
    "2024-02-29 07:04:56.789+00 | 1970-01-01 00:00:00+00"
check "  ... the same instants in pg2" \
    "$(pg pg2 -c "SELECT bool_and(tz = CASE id WHEN 1 THEN '2024-02-29 12:34:56.789+05:30'::timestamptz ELSE 'epoch' END) FROM lossy")" "t"

# ---------------------------------------------------------------- a server that talks
# client_min_messages = debug5 makes pg1 send DEBUG lines during every
# exchange. libpq's default would print them on the client's stderr (a
# host app's, for SQLite); lwwsync keeps them: an error tells the last
# ones, a Postgres client reports them as its own messages.
qurl="postgresql:///pg1?host=$PGDIR&port=$PORT&user=postgres&options=-c%20client_min_messages%3Ddebug5"
err=$(sqlite3 -batch "$WORK/quiet.db" ".load ./lwwsync" "SELECT lww_sync('$qurl') IS NOT NULL;" 2>&1 >/dev/null)
check "SQLite client: the server's DEBUG lines stay off the host app's stderr" "$err" ""
said=$(pg pg3 -c "SET client_min_messages = debug1" -c "SELECT lww_sync('$qurl') IS NOT NULL" 2>&1 | grep -c "lww_sync: the peer said: DEBUG")
check "Postgres client: the peer's DEBUG lines come as lww_sync's DEBUG1 messages" "$([ "$said" -gt 0 ] && echo yes)" "yes"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
