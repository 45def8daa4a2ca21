#!/usr/bin/env bash
# Issue 12's last row: applying a pull of CHANGES changed rows into a ROWS-row
# SQLite client, against a plain UPDATE of the same rows in the same file
# (the physical floor: the same pages touched, no lwwsync). The pull is a
# real change set: a copy of the client changes the rows and lww_changes
# hands them over. Each measurement runs in a fresh sqlite3 process on a
# fresh copy of the file; median of REPS. A measurement, never a test.
#   bench/pull_apply.sh              1 000 000 rows, 1 000 changed, median of 5
# Environment: ROWS, CHANGES, REPS, EXT (path to lwwsync without .so).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXT="${EXT:-$ROOT/lwwsync}"
ROWS=${ROWS:-1000000}
CHANGES=${CHANGES:-1000}
REPS=${REPS:-5}
STEP=$((ROWS / CHANGES))
W=$(mktemp -d /tmp/lwwsync-pull.XXXXXX)
trap 'rm -rf "$W"' EXIT
q() { local db=$1; shift; printf '%s\n' ".load $EXT" "$@" | sqlite3 "$W/$db"; }

# The client: ROWS rows of 6 mixed columns, tracked, WAL.
q a.db "PRAGMA journal_mode = WAL;" \
    "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL, d TEXT, e BLOB);" \
    "INSERT INTO t SELECT value, 'text ' || value, value, value * 0.5, printf('%08d', value), randomblob(24) FROM generate_series(1, $ROWS);" \
    "SELECT lww_track('t');" >/dev/null
# Another device (a copy with its own node id) changes CHANGES rows.
cp "$W/a.db" "$W/b.db"
WHERE="id IN (SELECT value * $STEP FROM generate_series(1, $CHANGES))"
CHANGE="UPDATE t SET a = 'changed ' || id, b = b + 1 WHERE $WHERE;"
q b.db "SELECT lww_reset_node();" "CREATE TEMP TABLE s AS SELECT lww_seq() AS v;" "$CHANGE" \
    "SELECT writefile('$W/pull.json', lww_changes((SELECT v FROM s)));" >/dev/null
# The floor: the same UPDATE, the capture triggers dropped.
cp "$W/a.db" "$W/plain.db"
q plain.db "SELECT 'DROP TRIGGER ' || quote(name) || ';' FROM sqlite_master WHERE type = 'trigger'" |
    { cat; } > "$W/drop.sql"
sqlite3 "$W/plain.db" < "$W/drop.sql"

timed() {  # db sql -> seconds
    cp "$W/$1" "$W/run.db"
    rm -f "$W/run.db-wal" "$W/run.db-shm"
    printf '%s\n' ".load $EXT" ".timer on" "$2" | sqlite3 "$W/run.db" 2>&1 | awk '/^Run Time/ {t = $4} END {print t}'
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
APPLY="SELECT length(lww_apply(CAST(readfile('$W/pull.json') AS TEXT)));"
A=$(for _ in $(seq "$REPS"); do timed a.db "$APPLY"; done | median)
P=$(for _ in $(seq "$REPS"); do timed plain.db "$CHANGE"; done | median)
ROWS_IN=$(printf '%s\n' ".load $EXT" "SELECT json_array_length(CAST(readfile('$W/pull.json') AS TEXT), '\$.tables[0].rows');" | sqlite3 "$W/a.db")
echo "== pull applied into a $ROWS-row SQLite client, $ROWS_IN changed rows, median of $REPS, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" log -1 --format=%h)"
awk -v a="$A" -v p="$P" -v n="$ROWS_IN" 'BEGIN {printf "| lww_apply of the pull | plain UPDATE of the same rows | ratio |\n|---:|---:|---:|\n| %.4f s | %.4f s | %.2f× |\n", a, p, a / p}'
