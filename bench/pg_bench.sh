#!/usr/bin/env bash
# What tracking a table costs on the Postgres server, plain table vs tracked
# table side by side in one throwaway cluster (fsync off), issue 10's table:
#   - single-row upsert, pgbench 1 client, with 1, 10 000 and 100 000 nodes in
#     lwwsync.nodes (the tracked table holds registers stamped by some of them);
#   - latency of one single-row INSERT and of lww_changes returning one row,
#     each the first statement of a fresh session, 100 000 nodes known;
#   - INSERT … SELECT of ROWS rows × 8 columns, UPDATE of one column of every
#     row, lww_apply of those rows (lww_changes of another database) vs COPY;
#   - pgbench, 8 clients, one single-row UPDATE + one single-row upsert.
# A benchmark: never a test, never run by CI; a MISS is information.
#   bench/pg_bench.sh            ~5 min on 2 cores (T=10 s per pgbench run, REPS=3)
#   bench/pg_bench.sh --quick    ~2 min (T=3, REPS=1, LAT_REPS=3)
# Environment: PG_BIN (default: pg_config --bindir), PORT (5780), T, REPS,
# LAT_REPS, ROWS (100000), KEEP=1 keeps the cluster directory.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --quick ]; then : "${T:=3}" "${REPS:=1}" "${LAT_REPS:=3}"; fi
BIN=${PG_BIN:-$(pg_config --bindir)}
PORT=${PORT:-5780}
T=${T:-10}
REPS=${REPS:-3}
LAT_REPS=${LAT_REPS:-5}
ROWS=${ROWS:-100000}
T0=$(date +%s) STARTED=$(date -u "+%F %H:%M UTC")

die() { echo "pg_bench: $*" >&2; exit 1; }
say() { echo "# $*" >&2; }
[ -x "$BIN/pgbench" ] && [ -x "$BIN/initdb" ] || die "no pgbench/initdb in $BIN (set PG_BIN)"
[ -f "$($BIN/pg_config --sharedir)/extension/lwwsync.control" ] ||
    die "lwwsync is not installed in $BIN/.. (make -C pg_ext PG_CONFIG=$BIN/pg_config install)"
ss -Htan 2>/dev/null | awk '{print $4}' | grep -q ":$PORT\$" && die "port $PORT is in use (PORT=…)"

D=$(mktemp -d /tmp/lwwsync-pgfleet.XXXXXX)
chmod 755 "$D"
[ "$(id -u)" -eq 0 ] && chown postgres "$D"
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
cleanup() {
    as_pg "'$BIN/pg_ctl' -D '$D/data' -m fast -w stop >/dev/null 2>&1" || true
    if [ -n "${KEEP:-}" ]; then say "kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE
# Checkpoints pushed out of the way: a checkpoint landing in one side's timing
# but not the other's would skew the ratio.
as_pg "'$BIN/initdb' -D '$D/data' -A trust -U postgres --no-sync >/dev/null &&
       '$BIN/pg_ctl' -D '$D/data' -o \"-p $PORT -k '$D' -c listen_addresses='' -c fsync=off -c shared_buffers=256MB -c max_wal_size=8GB -c checkpoint_timeout=1h\" -l '$D/log' -w start >/dev/null" ||
    die "cannot start PostgreSQL: $(tail -3 "$D/log" 2>/dev/null)"

pg() { local db=$1; shift; "$BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$D" -p "$PORT" -U postgres -d "$db" "$@"; }
median() { sort -g | awk '{a[NR]=$1} END {if (!NR) print "nan"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# Milliseconds of the statement SQL, the first of a fresh session. An error
# stops the run: a failing statement is fast, not a measure.
ms() {  # db SQL
    local out
    out=$(printf '\\timing on\n%s\n' "$2" | pg "$1" 2>&1) || die "$2: $out"
    awk '/^Time:/ {t = $2} END {if (t == "") print "nan"; else print t}' <<<"$out"
}
# tps of a pgbench run: db clients script-file
tps() {
    local out
    out=$("$BIN/pgbench" -n -h "$D" -p "$PORT" -U postgres -c "$2" -j "$(($2 < 2 ? 1 : 2))" -T "$T" -f "$3" "$1" 2>&1) ||
        { say "pgbench failed: $(tail -3 <<<"$out")"; echo nan; return; }
    awk '/^tps = / {printf "%.0f\n", $3; exit}' <<<"$out"
}

ROWS_OUT=()
# row MEASURE PLAIN TRACKED KIND(tps|time|none) TARGET
row() {
    local r="nan" res=""
    case $4 in
    tps) r=$(awk -v p="$2" -v t="$3" 'BEGIN {if (p + 0 > 0 && t != "nan") printf "%.3g", t / p; else print "nan"}')
         res=$(awk -v r="$r" -v g="$5" 'BEGIN {if (r == "nan") print "?"; else if (r >= g) print "PASS"; else printf "MISS (%.2f below)", g - r}')
         ROWS_OUT+=("| $1 | $2 tps | $3 tps | $r | ≥ $5 | $res |") ;;
    time) r=$(awk -v p="$2" -v t="$3" 'BEGIN {if (p + 0 > 0 && t != "nan") printf "%.2f", t / p; else print "nan"}')
          res=$(awk -v r="$r" -v g="$5" 'BEGIN {if (r == "nan") print "?"; else if (r <= g) print "PASS"; else printf "MISS (%.2f× over)", r / g}')
          ROWS_OUT+=("| $1 | $2 ms | $3 ms | ${r}× | ≤ $5× | $res |") ;;
    none) ROWS_OUT+=("| $1 | ${2:+$2 ms} | $3 ms | | | |") ;;
    esac
    echo "${ROWS_OUT[-1]}" >&2
}

say "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), lwwsync $(pg postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'lwwsync'"), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
say "T=$T s per pgbench run, REPS=$REPS, LAT_REPS=$LAT_REPS, ROWS=$ROWS, cluster $D port $PORT"

# ------------------------------------------------------------------ fleet: per-transaction costs
pg postgres -c "CREATE DATABASE fleet"
pg fleet >/dev/null <<'SQL'
CREATE EXTENSION lwwsync;
CREATE TABLE up_plain(id int PRIMARY KEY, v int NOT NULL, t text);
CREATE TABLE up_track(id int PRIMARY KEY, v int NOT NULL, t text);
CREATE TABLE pb_plain(id int PRIMARY KEY, v int NOT NULL, w int NOT NULL, t text);
CREATE TABLE pb_track(id int PRIMARY KEY, v int NOT NULL, w int NOT NULL, t text);
CREATE TABLE ins_plain(id int PRIMARY KEY, v int NOT NULL, t text);
CREATE TABLE ins_track(id int PRIMARY KEY, v int NOT NULL, t text);
SELECT lww_track('up_track'), lww_track('pb_track'), lww_track('ins_track');
INSERT INTO up_plain SELECT i, 0, 'row ' || i FROM generate_series(1, 10000) i;
INSERT INTO up_track SELECT * FROM up_plain;
INSERT INTO pb_plain SELECT i, 0, 0, 'row ' || i FROM generate_series(1, 100000) i;
INSERT INTO pb_track SELECT * FROM pb_plain;
-- A change set from four of the interned nodes, stamping rows lo..hi of a
-- table one second ahead (so they win over the local inserts): the tracked
-- tables then hold registers of foreign node indexes, as on a real hub.
CREATE FUNCTION stamp_by(nodes uuid[], tbl text, cols text, lo int, hi int) RETURNS jsonb LANGUAGE sql AS $$
  SELECT lww_apply(json_build_object('format', 'lwwsync.changeset', 'version', 1, 'origin', nodes[1],
      'since', '0', 'upto', '1', 'nodes', nodes,
      'tables', json_build_array(json_build_object('name', tbl, 'key', json_build_array('id'),
          'columns', cols::json, 'rows', (
          SELECT json_agg(json_build_object('key', json_build_array(i), 'gen', 1,
                 'stamp', json_build_array((((extract(epoch FROM clock_timestamp()) * 1000)::bigint + 1000) << 16)::text, i % 4),
                 'cols', json_build_array(json_build_array(0, i + 1))))
            FROM generate_series(lo, hi) i))))::text) $$;
VACUUM ANALYZE;
SQL

cat >"$D/upsert_plain.sql" <<'EOF'
\set id random(1, 10000)
INSERT INTO up_plain VALUES (:id, 1, 'x') ON CONFLICT (id) DO UPDATE SET v = up_plain.v + 1;
EOF
sed 's/up_plain/up_track/g' "$D/upsert_plain.sql" >"$D/upsert_track.sql"
cat >"$D/mixed_plain.sql" <<'EOF'
\set a random(1, 100000)
\set b random(1, 100000)
UPDATE pb_plain SET v = v + 1 WHERE id = :a;
INSERT INTO pb_plain VALUES (:b, 1, 1, 'x') ON CONFLICT (id) DO UPDATE SET w = pb_plain.w + 1;
EOF
sed 's/pb_plain/pb_track/g' "$D/mixed_plain.sql" >"$D/mixed_track.sql"

# Both sides of a pgbench measure into PL and TR, the order alternating between calls.
FLIP=0
pair_tps() {  # clients script-stem
    if [ $((FLIP++ % 2)) -eq 0 ]; then
        PL=$(tps fleet "$1" "$D/$2_plain.sql"); TR=$(tps fleet "$1" "$D/$2_track.sql")
    else
        TR=$(tps fleet "$1" "$D/$2_track.sql"); PL=$(tps fleet "$1" "$D/$2_plain.sql")
    fi
}
# Median latency of a single-row INSERT as the first statement of a fresh session.
insert_latency() {  # table first-id
    local i
    for i in $(seq "$LAT_REPS"); do
        ms fleet "INSERT INTO $1 VALUES ($(($2 + i)), 1, 'fresh session');"
    done | median
}
changes_latency() {  # lww_changes returning the last change (a one-row set)
    local s i n
    s=$(pg fleet -c "SELECT lww_seq() - 1")
    n=$(pg fleet -c "SELECT lww_changes($s)" | grep -o '{"key":' | wc -l)
    [ "$n" -eq 1 ] || say "WARNING: lww_changes($s) returned $n rows, not 1"
    for i in $(seq "$LAT_REPS"); do ms fleet "SELECT length(lww_changes($s));"; done | median
}
nodes_to() {  # total number of nodes wanted in lwwsync.nodes; then four of the newest stamp rows
    pg fleet -c "INSERT INTO lwwsync.nodes(id) SELECT gen_random_uuid() FROM generate_series(1, $1 - (SELECT count(*) FROM lwwsync.nodes))"
    local stats
    stats=$(pg fleet <<SQL
SELECT stamp_by(ARRAY(SELECT id FROM lwwsync.nodes ORDER BY idx DESC LIMIT 4), 'up_track', '["v","t"]', $2, $3);
SELECT stamp_by(ARRAY(SELECT id FROM lwwsync.nodes ORDER BY idx DESC LIMIT 4), 'pb_track', '["v","w","t"]', $2 * 10, $3 * 10);
VACUUM ANALYZE;
SQL
)
    say "lwwsync.nodes: $(pg fleet -c "SELECT count(*) FROM lwwsync.nodes") rows; foreign stamps applied: $(tr '\n' ' ' <<<"$stats")"
}

say "1 node known (the server's own)"
pair_tps 1 upsert
row "single-row upsert, 1 client, 1 node known" "$PL" "$TR" tps 0.7
pair_tps 8 mixed
PL8=$PL TR8=$TR   # printed beside the 100 000-node run below
LAT_INS_1P=$(insert_latency ins_plain 0) LAT_INS_1T=$(insert_latency ins_track 0)
LAT_CH_1=$(changes_latency)

nodes_to 10000 1 500
pair_tps 1 upsert
row "single-row upsert, 1 client, 10 000 nodes known" "$PL" "$TR" tps 0.7

nodes_to 100000 501 1000
pair_tps 1 upsert
row "single-row upsert, 1 client, 100 000 nodes known" "$PL" "$TR" tps 0.7
row "one-row INSERT, fresh session, 100 000 nodes known" "$(insert_latency ins_plain 1000)" "$(insert_latency ins_track 1000)" time 2
row "\`lww_changes\` of one row, fresh session, 100 000 nodes known" "" "$(changes_latency)" none
row "pgbench 8 clients, UPDATE + upsert, 1 node known" "$PL8" "$TR8" tps 0.7
pair_tps 8 mixed
row "pgbench 8 clients, UPDATE + upsert, 100 000 nodes known" "$PL" "$TR" tps 0.7

# ------------------------------------------------------------------ bulk: set-based work
# Per rep a fresh source database (INSERT … SELECT, then UPDATE, on a plain and
# a tracked table) and a fresh destination (lww_apply of the source's change
# set into the empty tracked table vs COPY of the same rows into a plain one).
COLS="id int8 PRIMARY KEY, c_int int4, c_big int8, c_text text, c_num numeric(12,2), c_ts timestamptz, c_bool bool, c_dbl float8, c_json jsonb"
GEN="SELECT i, (i * 7919 % 100000)::int4, i * 1000003, 'user ' || i || ' ' || substr(md5(i::text), 1, 8 + (i % 20)::int),
       (i % 50000) + 0.25 * (i % 4), timestamptz '2024-01-01 00:00:00+00' + i * interval '37 seconds', i % 3 = 0,
       i / 7.0::float8, jsonb_build_object('k', i % 100, 'tag', 't' || (i % 13))
     FROM generate_series(1::int8, $ROWS) i"
FP="SELECT count(*) || ' ' || md5(string_agg(t::text, '|' ORDER BY id))"
declare -a INS_P INS_T UPD_P UPD_T APP_C APP_T
for r in $(seq "$REPS"); do
    say "bulk rep $r/$REPS"
    pg postgres -c "CREATE DATABASE src$r" -c "CREATE DATABASE dst$r"
    for db in src$r dst$r; do
        pg $db -c "CREATE EXTENSION lwwsync" -c "CREATE TABLE b($COLS)" -c "CREATE TABLE b_plain($COLS)" -c "SELECT lww_track('b')" >/dev/null
    done
    if [ $((r % 2)) -eq 1 ]; then order="b_plain b"; else order="b b_plain"; fi
    for tb in $order; do
        v=$(ms src$r "INSERT INTO $tb $GEN;")
        if [ $tb = b ]; then INS_T+=("$v"); else INS_P+=("$v"); fi
    done
    for tb in $order; do
        v=$(ms src$r "UPDATE $tb SET c_int = c_int + 1;")
        if [ $tb = b ]; then UPD_T+=("$v"); else UPD_P+=("$v"); fi
    done
    [ "$(pg src$r -c "$FP FROM b t")" = "$(pg src$r -c "$FP FROM b_plain t")" ] || say "WARNING: plain and tracked differ after the UPDATE (rep $r)"
    # The same rows twice: a change set and a COPY file, both read server-side.
    pg src$r -c "SELECT lww_changes(0, $((ROWS + 1)))" >"$D/cs$r.json"
    pg src$r -c "COPY b TO '$D/rows$r.copy'"
    chmod 644 "$D/cs$r.json"
    say "change set: $(stat -c %s "$D/cs$r.json") bytes ($(($(stat -c %s "$D/cs$r.json") / ROWS)) per row)"
    pg dst$r -c "CREATE TABLE cs AS SELECT pg_read_file('$D/cs$r.json') AS j"
    a=$(ms dst$r "SELECT length(lww_apply(j)::text) FROM cs;") c=$(ms dst$r "COPY b_plain FROM '$D/rows$r.copy';")
    APP_T+=("$a") APP_C+=("$c")
    [ "$(pg dst$r -c "$FP FROM b t")" = "$(pg dst$r -c "$FP FROM b_plain t")" ] || say "WARNING: lww_apply and COPY produced different rows (rep $r)"
    pg postgres -c "DROP DATABASE src$r" -c "DROP DATABASE dst$r"
    rm -f "$D/cs$r.json" "$D/rows$r.copy"
done
med() { printf '%s\n' "$@" | median; }
row "INSERT … SELECT of $ROWS rows × 8 columns, one statement" "$(med "${INS_P[@]}")" "$(med "${INS_T[@]}")" time 2
row "UPDATE of one column of every row" "$(med "${UPD_P[@]}")" "$(med "${UPD_T[@]}")" time 2.5
row "\`lww_apply\` of those rows (plain: \`COPY\` of the same rows)" "$(med "${APP_C[@]}")" "$(med "${APP_T[@]}")" time 4

echo
echo "lwwsync on PostgreSQL, plain vs tracked table, run started $STARTED, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), T=$T s, REPS=$REPS (median), LAT_REPS=$LAT_REPS"
echo
echo "| measure | plain | tracked | ratio | target | result |"
echo "|---|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS_OUT[@]}"
echo
echo "Context, 1 node known: one-row INSERT in a fresh session plain $LAT_INS_1P ms, tracked $LAT_INS_1T ms; lww_changes of one row $LAT_CH_1 ms."
echo "Ran $(($(date +%s) - T0)) s."
