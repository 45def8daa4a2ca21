#!/usr/bin/env bash
# Issue 12's last row: applying a pull of CHANGES changed rows into a ROWS-row
# SQLite client, against a plain UPDATE of the same rows in the same file
# (the physical floor: the same pages touched, no lwwsync). The pull is a
# real change set: a copy of the client changes the rows and lww_changes
# hands them over. Each measurement runs in a fresh sqlite3 process on a
# fresh copy of the file; median of REPS. A measurement, never a test.
# Two measurements: the first pull into the freshly written file (every
# metadata row it touches grows by the pulled registers, and its page, packed
# full by the sequential insert, splits), and the next pull, of the rows
# beside those, into pages the first pull already split (a device's steady
# state).
#   bench/pull_apply.sh              1 000 000 rows, 1 000 changed, median of 5
# Environment: ROWS, CHANGES, REPS, EXT (path to lwwsync without .so), ORDER
# (random: see changed_on_b), KEEP=1
# keeps the files.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXT="${EXT:-$ROOT/lwwsync}"
ROWS=${ROWS:-1000000}
CHANGES=${CHANGES:-1000}
REPS=${REPS:-5}
STEP=$((ROWS / CHANGES))
W=$(mktemp -d /tmp/lwwsync-pull.XXXXXX)
[ -n "${KEEP:-}" ] && echo "kept $W" >&2 || trap 'rm -rf "$W"' EXIT
q() { local db=$1; shift; printf '%s\n' ".load $EXT" "$@" | sqlite3 "$W/$db"; }

# The client: ROWS rows of 6 mixed columns, tracked, WAL.
q a.db "PRAGMA journal_mode = WAL;" \
    "CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c REAL, d TEXT, e BLOB);" \
    "INSERT INTO t SELECT value, 'text ' || value, value, value * 0.5, printf('%08d', value), randomblob(24) FROM generate_series(1, $ROWS);" \
    "SELECT lww_track('t');" \
    "SELECT lww_config('detect_copies', 0);" >/dev/null  # every run copies the file: no new node id each time
# Another device (a copy with its own node id) changes CHANGES rows, twice:
# pull 1 the rows STEP apart, pull 2 the row after each of those.
cp "$W/a.db" "$W/b.db"
where() { echo "id IN (SELECT value * $STEP + $1 FROM generate_series(1, $CHANGES))"; }
change() { echo "UPDATE t SET a = 'changed $1 ' || id, b = b + 1 WHERE $(where "$1");"; }
# ORDER=random: the other device changes the rows one by one in a random
# order, so the pull comes in an order unrelated to the keys (the plain
# UPDATE stays the same statement).
changed_on_b() {
    if [ "${ORDER:-}" = random ]; then
        echo "BEGIN;"
        seq 1 "$CHANGES" | shuf | awk -v s="$STEP" -v n="$1" \
            '{printf "UPDATE t SET a = %s || id, b = b + 1 WHERE id = %d;\n", "'"'changed $1 '"'", $1 * s + n}'
        echo "COMMIT;"
    else
        change "$1"
    fi
}
q b.db "SELECT lww_reset_node();" >/dev/null
for n in 0 1; do
    q b.db "CREATE TEMP TABLE s AS SELECT lww_seq() AS v;" "$(changed_on_b $n)" \
        "SELECT writefile('$W/pull$n.json', lww_changes((SELECT v FROM s)));" >/dev/null
done
# The floor: the same UPDATE, the capture triggers dropped.
cp "$W/a.db" "$W/plain.db"
q plain.db "SELECT 'DROP TRIGGER ' || quote(name) || ';' FROM sqlite_master WHERE type = 'trigger'" |
    { cat; } > "$W/drop.sql"
sqlite3 "$W/plain.db" < "$W/drop.sql"
apply() { echo "SELECT length(lww_apply(CAST(readfile('$W/pull$1.json') AS TEXT)));"; }
# The steady state's starting files: pull 1 already applied (or updated).
cp "$W/a.db" "$W/a1.db"; q a1.db "$(apply 0)" >/dev/null
cp "$W/plain.db" "$W/plain1.db"; q plain1.db "$(change 0)" >/dev/null

timed() {  # db sql -> seconds
    cp "$W/$1" "$W/run.db"
    rm -f "$W/run.db-wal" "$W/run.db-shm"
    printf '%s\n' ".load $EXT" ".timer on" "$2" | sqlite3 "$W/run.db" 2>&1 | awk '/^Run Time/ {t = $4} END {print t}'
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
pair() {  # label apply-db plain-db n
    local a p
    a=$(for _ in $(seq "$REPS"); do timed "$2" "$(apply "$4")"; done | median)
    p=$(for _ in $(seq "$REPS"); do timed "$3" "$(change "$4")"; done | median)
    awk -v l="$1" -v a="$a" -v p="$p" 'BEGIN {printf "| %s | %.4f s | %.4f s | %.2f× |\n", l, a, p, a / p}'
}
ROWS_IN=$(printf '%s\n' ".load $EXT" "SELECT json_array_length(CAST(readfile('$W/pull0.json') AS TEXT), '\$.tables[0].rows');" | sqlite3 "$W/a.db")
echo "== pull applied into a $ROWS-row SQLite client, $ROWS_IN changed rows${ORDER:+ (changed in $ORDER order)}, median of $REPS, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" log -1 --format=%h 2>/dev/null)"
echo "| pull | lww_apply of the pull | plain UPDATE of the same rows | ratio |"
echo "|---|---:|---:|---:|"
pair "first, into the freshly written file" a.db plain.db 0
pair "next, into pages the first one split" a1.db plain1.db 1
