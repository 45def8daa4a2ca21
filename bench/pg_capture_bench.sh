#!/usr/bin/env bash
# Capture cost of local writes on PostgreSQL: a tracked table against a plain
# one, side by side in one database, alternating which goes first.
#   1. INSERT ... SELECT of ROWS rows x 8 non-key columns, one statement
#   2. UPDATE of one column of every row, one statement
#   3. single-row upsert (INSERT ... ON CONFLICT DO UPDATE), pgbench 1 client
#   4. single-row UPDATE, pgbench 1 client
#   5. CPU per one-row statement: 5 000 one-row UPDATEs and upserts in one
#      transaction (the capture's own cost, without per-transaction work)
# Needs a running server the caller set up (fsync=off for comparable figures)
# with lwwsync installed: PGHOST/PGPORT/PGDATABASE/PGUSER as for psql.
#   bench/pg_capture_bench.sh            (ROWS=100000 REPS=3 SECONDS_TPS=10)
# Prints the medians; never a test.
set -euo pipefail
ROWS=${ROWS:-100000}
REPS=${REPS:-3}
SECONDS_TPS=${SECONDS_TPS:-10}
PSQL=(psql -X -q -v ON_ERROR_STOP=1)

"${PSQL[@]}" <<'SQL'
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS lwwsync CASCADE;
DROP SCHEMA IF EXISTS lwwsync CASCADE;
CREATE EXTENSION lwwsync;
SQL

schema() {  # $1: table name
    echo "DROP TABLE IF EXISTS $1; CREATE TABLE $1(id int8 PRIMARY KEY, name text, qty int4, price float8,
          flag int4, ts text, code text, n int8, w float8);"
}
fill="SELECT i, 'user ' || i, (i % 1000)::int4, i * 0.25, (i % 2)::int4, '2025-01-01T00:00:00Z',
      'C' || (i % 97), i * 3, i / 7.0 FROM generate_series(1, $ROWS) AS i"

# CPU ms the backend spent on one statement (/proc/self/schedstat: the
# machine is shared, so wall time says more about the neighbours).
timed() {  # $1: SQL
    "${PSQL[@]}" -At -c "DO \$\$ DECLARE c0 numeric := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1); BEGIN
        EXECUTE \$q\$ $1 \$q\$;
        RAISE NOTICE 'ms=%', round((split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::numeric - c0) / 1e6, 1);
        END \$\$" 2>&1 | sed -n 's/.*ms=//p'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

declare -A ins upd
for rep in $(seq 1 "$REPS"); do
    order="plain tracked"
    [ $((rep % 2)) -eq 0 ] && order="tracked plain"
    for kind in $order; do
        "${PSQL[@]}" -c "$(schema b_$kind)"
        [ "$kind" = tracked ] && "${PSQL[@]}" -At -c "SELECT lww_track('b_tracked')" >/dev/null
        "${PSQL[@]}" -c "CHECKPOINT"
        ins[$kind]+="$(timed "INSERT INTO b_$kind $fill") "
        "${PSQL[@]}" -c "VACUUM ANALYZE b_$kind"
        upd[$kind]+="$(timed "UPDATE b_$kind SET qty = qty + 1") "
    done
done

# Single-row writes: pgbench, one client, plain and tracked in turn.
"${PSQL[@]}" -c "$(schema s_plain) $(schema s_tracked)
    INSERT INTO s_plain SELECT * FROM ($fill) AS f LIMIT 10000;
    INSERT INTO s_tracked SELECT * FROM s_plain;"
"${PSQL[@]}" -At -c "SELECT lww_track('s_tracked')" >/dev/null
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
for kind in plain tracked; do
    cat >"$W/upsert_$kind.sql" <<EOF
\set id random(1, 20000)
INSERT INTO s_$kind VALUES (:id, 'u', 1, 2.5, 1, 'x', 'c', 3, 4.5)
  ON CONFLICT (id) DO UPDATE SET qty = s_$kind.qty + 1, name = excluded.name;
EOF
    cat >"$W/update_$kind.sql" <<EOF
\set id random(1, 10000)
UPDATE s_$kind SET qty = qty + 1 WHERE id = :id;
EOF
done
tps() { pgbench -n -c 1 -T "$SECONDS_TPS" -f "$1" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }
declare -A ups upds
for rep in $(seq 1 "$REPS"); do
    for kind in plain tracked; do
        ups[$kind]+="$(tps "$W/upsert_$kind.sql") "
        upds[$kind]+="$(tps "$W/update_$kind.sql") "
    done
done

declare -A loop_upd loop_ups
for rep in $(seq 1 "$REPS"); do
    for kind in plain tracked; do
        loop_upd[$kind]+="$(timed "DO \$d\$ BEGIN FOR i IN 1..5000 LOOP
            UPDATE s_$kind SET qty = qty + 1 WHERE id = i; END LOOP; END \$d\$") "
        loop_ups[$kind]+="$(timed "DO \$d\$ BEGIN FOR i IN 1..5000 LOOP
            INSERT INTO s_$kind VALUES (i * 2, 'u', 1, 2.5, 1, 'x', 'c', 3, 4.5)
              ON CONFLICT (id) DO UPDATE SET qty = s_$kind.qty + 1, name = excluded.name; END LOOP; END \$d\$") "
    done
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
printf '| case | plain | tracked | ratio |\n|---|---:|---:|---:|\n'
printf '| INSERT ... SELECT %s rows x 8 cols (ms) | %s | %s | %sx |\n' "$ROWS" "$(med "${ins[plain]}")" \
    "$(med "${ins[tracked]}")" "$(ratio "$(med "${ins[tracked]}")" "$(med "${ins[plain]}")")"
printf '| UPDATE one column of every row (ms) | %s | %s | %sx |\n' "$(med "${upd[plain]}")" \
    "$(med "${upd[tracked]}")" "$(ratio "$(med "${upd[tracked]}")" "$(med "${upd[plain]}")")"
us() { awk -v a="$1" 'BEGIN {printf "%.1f", a * 1000 / 5000}'; }
printf '| one-row UPDATE, CPU per statement (us) | %s | %s | %sx |\n' "$(us "$(med "${loop_upd[plain]}")")" \
    "$(us "$(med "${loop_upd[tracked]}")")" "$(ratio "$(med "${loop_upd[tracked]}")" "$(med "${loop_upd[plain]}")")"
printf '| one-row upsert, CPU per statement (us) | %s | %s | %sx |\n' "$(us "$(med "${loop_ups[plain]}")")" \
    "$(us "$(med "${loop_ups[tracked]}")")" "$(ratio "$(med "${loop_ups[tracked]}")" "$(med "${loop_ups[plain]}")")"
printf '| single-row upsert, 1 client (tps) | %s | %s | %s |\n' "$(med "${ups[plain]}")" \
    "$(med "${ups[tracked]}")" "$(ratio "$(med "${ups[tracked]}")" "$(med "${ups[plain]}")")"
printf '| single-row UPDATE, 1 client (tps) | %s | %s | %s |\n' "$(med "${upds[plain]}")" \
    "$(med "${upds[tracked]}")" "$(ratio "$(med "${upds[tracked]}")" "$(med "${upds[plain]}")")"
