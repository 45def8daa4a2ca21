#!/usr/bin/env bash
# What a tracked UPDATE costs in SQLite and what bounds it (issue 12, item 3):
# the text-key shape (id TEXT PRIMARY KEY, a TEXT, b INTEGER, c REAL), ROWS
# rows, `UPDATE t SET b = b + 1` of every row, in one WAL file per case, each
# case against the plain table's time in the same run. The cases peel the
# capture apart: an empty trigger (SQLite's per-row trigger program), an
# UPDATE of a metadata row by its text key with and without the change
# sequence's index, an append to a log instead, and lwwsync itself (plus its
# tracked INSERT, and the fold of its capture log). A measurement, never a test.
# EXT=path/to/lwwsync (no .so) measures another build.
#   bench/capture_floor.sh            100 000 rows, median of 3
# Environment: ROWS, REPS.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXT="${EXT:-$ROOT/lwwsync}"
ROWS=${ROWS:-100000}
REPS=${REPS:-3}
W=$(mktemp -d /tmp/lwwsync-capture.XXXXXX)
trap 'rm -rf "$W"' EXIT

SHAPE="CREATE TABLE t(id TEXT PRIMARY KEY, a TEXT, b INTEGER, c REAL);"
FILL="INSERT INTO t SELECT 'key-' || value, 'a' || value, value, value * 0.5 FROM generate_series(1, $ROWS);"
META="CREATE TABLE m(k0 TEXT PRIMARY KEY, gen INTEGER, hlc INTEGER, node INTEGER, row_seq INTEGER, max_seq INTEGER, cols BLOB)"
META_FILL="INSERT INTO m SELECT 'key-' || value, 1, 1 << 40, 0, value, value, NULL FROM generate_series(1, $ROWS);"
META_UPDATE="UPDATE m SET cols = x'0001', max_seq = max_seq + $ROWS * 2 WHERE k0 = NEW.id;"

# seconds of the last timed statement of a script run by sqlite3 (.timer)
timed() {  # setup-sql timed-sql
    rm -f "$W"/c.db*
    printf '%s\n' ".load $EXT" "PRAGMA journal_mode = WAL;" "$1" ".timer on" "$2" |
        sqlite3 "$W/c.db" 2>&1 | awk '/^Run Time/ {t = $4} END {print t}'
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
measure() {  # setup-sql timed-sql -> median seconds
    for _ in $(seq "$REPS"); do timed "$1" "$2"; done | median
}

UPD="UPDATE t SET b = b + 1;"
declare -a NAMES SECS
add() { NAMES+=("$1"); SECS+=("$(measure "$2" "$3")"); }
add "plain UPDATE (no trigger)" "$SHAPE $FILL" "$UPD"
add "an empty AFTER UPDATE trigger" "$SHAPE $FILL CREATE TRIGGER u AFTER UPDATE ON t BEGIN SELECT 1; END;" "$UPD"
add "trigger appends (seq, key) to a log table" \
    "$SHAPE $FILL CREATE TABLE lg(seq INTEGER PRIMARY KEY, k TEXT); CREATE TRIGGER u AFTER UPDATE ON t BEGIN INSERT INTO lg(k) VALUES (NEW.id); END;" "$UPD"
add "trigger updates a metadata row by key (WITHOUT ROWID, no seq index)" \
    "$SHAPE $FILL $META WITHOUT ROWID; $META_FILL CREATE TRIGGER u AFTER UPDATE ON t BEGIN $META_UPDATE END;" "$UPD"
add "the same with the seq index (lwwsync's layout, no lwwsync functions)" \
    "$SHAPE $FILL $META WITHOUT ROWID; CREATE INDEX ms ON m(max_seq); $META_FILL CREATE TRIGGER u AFTER UPDATE ON t BEGIN $META_UPDATE END;" "$UPD"
add "the same, metadata as a rowid table" \
    "$SHAPE $FILL $META; CREATE INDEX ms ON m(max_seq); $META_FILL CREATE TRIGGER u AFTER UPDATE ON t BEGIN $META_UPDATE END;" "$UPD"
add "lwwsync: tracked table" "$SHAPE SELECT lww_track('t'); $FILL" "$UPD"
# Since schema 5 a tracked UPDATE appends to lww_log; the first read folds it
# into the metadata. lww_changes(0, 1) reads one row: its time is the fold's.
add "lwwsync: the first lww_changes after it (folds the log)" \
    "$SHAPE SELECT lww_track('t'); $FILL $UPD" "SELECT length(lww_changes(0, 1));"
INS_PLAIN=$(measure "$SHAPE" "$FILL")
INS_TRACKED=$(measure "$SHAPE SELECT lww_track('t');" "$FILL")

echo "== SQLite capture floor, text key, $ROWS rows, median of $REPS, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" log -1 --format=%h)"
echo "| UPDATE of column b of every row | s | × plain |"
echo "|---|---:|---:|"
for i in "${!NAMES[@]}"; do
    awk -v n="${NAMES[$i]}" -v s="${SECS[$i]}" -v p="${SECS[0]}" 'BEGIN {printf "| %s | %.3f | %.1f× |\n", n, s, s / p}'
done
awk -v a="$INS_PLAIN" -v b="$INS_TRACKED" 'BEGIN {printf "| INSERT of %s rows: plain / tracked | %.3f / %.3f | %.2f× |\n", "'"$ROWS"'", a, b, b / a}'
