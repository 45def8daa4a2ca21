#!/usr/bin/env bash
# What tombstones cost and what a purge gives back, measured side by side
# (issue 11): ROWS keys inserted and deleted in a SQLite "server" file, then
# a fresh device syncs the (empty) table from it (file: sync), before and
# after lww_purge(0); and the re-snapshot of a device that was offline past
# the purge (it holds every row; ROWS/10 of them were deleted and purged).
#   bench/purge_bench.sh           100 000 keys
# Environment: ROWS, KEEP=1 keeps the files. A measurement, never a test.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXT="$ROOT/lwwsync.so"
ROWS=${ROWS:-100000}
W=$(mktemp -d /tmp/lwwsync-purgebench.XXXXXX)
trap '[ -n "${KEEP:-}" ] && echo "# kept $W" || rm -rf "$W"' EXIT
sq() { local db=$1; shift; sqlite3 -bail "$W/$db.db" ".load $EXT" "$@"; }
ms() { date +%s%3N; }
json() { sed -nE "s/.*\"$1\":([0-9]+).*/\1/p" <<<"$2" | head -1; }
SCHEMA="CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, n INTEGER); SELECT lww_track('t');"

sq s "$SCHEMA" >/dev/null
sq s "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $ROWS)
      INSERT INTO t SELECT i, 'row ' || i, i FROM g; DELETE FROM t;" >/dev/null
size() { stat -c %s "$W/$1.db"; }
sq s "VACUUM" >/dev/null
echo "# $ROWS keys inserted and deleted: $(sq s "SELECT count(*) FROM t") rows, $(sq s "SELECT count(*) FROM lww__t") tombstones, file $(size s) bytes"

sq a "$SCHEMA" >/dev/null
t0=$(ms); out=$(sq a "SELECT lww_sync('file:$W/s.db')"); t1=$(ms)
before_ms=$((t1 - t0)); before_rows=$(json pulled "$out"); before_bytes=$(json bytes_received "$out"); before_batches=$(json batches "$out")

t0=$(ms); purged=$(sq s "SELECT lww_purge(0)"); t1=$(ms)
purge_ms=$((t1 - t0))
sq s "VACUUM" >/dev/null
sq b "$SCHEMA" >/dev/null
t0=$(ms); out=$(sq b "SELECT lww_sync('file:$W/s.db')"); t1=$(ms)
after_ms=$((t1 - t0)); after_rows=$(json pulled "$out"); after_bytes=$(json bytes_received "$out"); after_batches=$(json batches "$out")

printf '%-44s %12s %12s\n' "fresh device, empty table" "tombstones" "purged"
printf '%-44s %12s %12s\n' "rows pulled" "$before_rows" "$after_rows"
printf '%-44s %12s %12s\n' "bytes received" "$before_bytes" "$after_bytes"
printf '%-44s %12s %12s\n' "round trips" "$before_batches" "$after_batches"
printf '%-44s %12s %12s\n' "sync ms" "$before_ms" "$after_ms"
echo "lww_purge(0): $purged tombstones in $purge_ms ms; server file now $(size s) bytes"

# Re-snapshot: a device holding ROWS rows that went offline; a tenth of them
# deleted elsewhere and purged; its next sync probes and drops them.
sq s2 "$SCHEMA" >/dev/null
sq s2 "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $ROWS)
       INSERT INTO t SELECT i, 'row ' || i, i FROM g" >/dev/null
sq d "$SCHEMA" >/dev/null
sq d "SELECT lww_sync('file:$W/s2.db')" >/dev/null
sq e "$SCHEMA" >/dev/null
sq e "SELECT lww_sync('file:$W/s2.db')" >/dev/null
sq e "DELETE FROM t WHERE id % 10 = 0" >/dev/null
sq e "SELECT lww_sync('file:$W/s2.db')" >/dev/null
sq s2 "SELECT lww_purge(0)" >/dev/null
t0=$(ms); out=$(sq d "SELECT lww_sync('file:$W/s2.db')"); t1=$(ms)
echo "re-snapshot of a device holding $ROWS rows: dropped $(json dropped "$out") in $((t1 - t0)) ms," \
    "$(json batches "$out") round trips, $(json bytes_sent "$out") bytes sent," \
    "rows equal: $([ "$(sq d "SELECT count(*), sum(id) FROM t")" == "$(sq s2 "SELECT count(*), sum(id) FROM t")" ] && echo yes || echo NO)"
