#!/usr/bin/env bash
# The cost of the trust checks on the Postgres server, side by side in one
# run: lww_apply and lww_changes of 10 000 rows as a superuser (a relay: no
# principal checks) and as an ordinary role with table grants (node binding,
# foreign-stamp filter, per-table rights, the equivalent-SQL checks), on a
# throwaway cluster. Medians of REPS runs; never part of the tests.
#   bench/pg_apply_bench.sh            (PG_BIN=… to use another PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PG_BIN:-$(pg_config --bindir)}
REPS=${REPS:-5}
. scripts/free_port.sh
PORT=$(free_port)
D=$(mktemp -d /tmp/lwwsync-pgbench.XXXXXX)
chmod 755 "$D"
[ "$(id -u)" -eq 0 ] && chown postgres "$D"
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
as_pg "'$BIN/initdb' -D '$D/data' -A trust -U postgres --no-sync >/dev/null &&
       '$BIN/pg_ctl' -D '$D/data' -o \"-p $PORT -k '$D' -c listen_addresses='' -c fsync=off -c shared_buffers=256MB\" -l '$D/log' -w start >/dev/null"
trap 'as_pg "'"'$BIN/pg_ctl'"' -D '"'$D/data'"' -m fast -w stop >/dev/null"; rm -rf "$D"' EXIT
P="psql -X -q -At -h $D -p $PORT -U postgres"
$P <<'SQL' >/dev/null
CREATE EXTENSION lwwsync;
CREATE ROLE dev;
CREATE TABLE t(id int PRIMARY KEY, a text, b int, c float8);
SELECT lww_track('t');
GRANT SELECT, INSERT, UPDATE, DELETE ON t TO dev;
INSERT INTO t SELECT i, 'row ' || i, i, i * 0.5 FROM generate_series(1, 100000) i;
-- Change sets of another node: 10 000 new keys; 10 000 updates of existing rows.
CREATE FUNCTION cs(rows text) RETURNS text LANGUAGE sql AS $$
  SELECT '{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-00000000000d","since":"0","upto":"1",'
      || '"nodes":["00000000-0000-4000-8000-00000000000d"],"tables":[{"name":"t","key":["id"],"columns":["a","b","c"],"rows":['
      || rows || ']}]}' $$;
CREATE TABLE sets AS
  SELECT 'insert' AS kind, cs(string_agg(format('{"key":[%s],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"x%s"],[1,%s],[2,{"real":1.5}]]}',
         i, (extract(epoch from now()) * 1000)::bigint << 16, i, i), ',')) AS j FROM generate_series(200001, 210000) i
  UNION ALL
  SELECT 'update', cs(string_agg(format('{"key":[%s],"gen":1,"stamp":["%s",0],"cols":[[1,%s]]}',
         i, ((extract(epoch from now()) * 1000)::bigint + 1000) << 16, i + 7), ',')) FROM generate_series(1, 10000) i;
-- A child table: 10 000 new rows, each with a foreign key to t (issue 9:
-- the receiver checks it, locking the parent FOR KEY SHARE).
CREATE TABLE ch(id int PRIMARY KEY, t int NOT NULL REFERENCES t, v text);
SELECT lww_track('ch');
GRANT SELECT, INSERT, UPDATE, DELETE ON ch TO dev;
INSERT INTO sets
  SELECT 'child', replace(replace(cs(string_agg(format('{"key":[%s],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,%s],[1,"c%s"]]}',
         i, (extract(epoch from now()) * 1000)::bigint << 16, i, i), ',')), '"name":"t"', '"name":"ch"'), '["a","b","c"]', '["t","v"]')
    FROM generate_series(1, 10000) i;
-- The same with one row whose parent is missing: parked, the batch redone row by row.
INSERT INTO sets
  SELECT 'orphan', replace(replace(cs(string_agg(format('{"key":[%s],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,%s],[1,"c%s"]]}',
         i, (extract(epoch from now()) * 1000)::bigint << 16, CASE WHEN i = 25000 THEN 999999 ELSE i END, i), ',')),
         '"name":"t"', '"name":"ch"'), '["a","b","c"]', '["t","v"]')
    FROM generate_series(20001, 30000) i;
GRANT SELECT ON sets TO dev;
-- An untracked table of the same shape and rows, for the COPY lww_apply is compared with.
CREATE TABLE plain(id int PRIMARY KEY, a text, b int, c float8);
INSERT INTO plain SELECT * FROM t;
SQL
# The 10 000 new rows of 'insert' as a file, for the COPY they are compared with.
$P -c "COPY (SELECT i, 'x' || i, i, 1.5 FROM generate_series(200001, 210000) i) TO '$D/rows.copy'" >/dev/null
ms() {  # role, SQL: milliseconds of one run, rolled back
    printf 'BEGIN;\nSET ROLE %s;\n\\timing on\n%s\n\\timing off\nROLLBACK;\n' "$1" "$2" | $P 2>&1 | awk '/^Time:/ {t = $2} END {print t}'
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
echo "# lwwsync trust checks on PostgreSQL: $REPS runs each, median ms ($(date -u +%FT%TZ), $(nproc) cores)"
printf '%-44s %10s %10s %7s\n' case superuser "role" ratio
for c in "apply 10 000 new rows|SELECT length(lww_apply(j)::text) FROM sets WHERE kind = 'insert';" \
         "apply 10 000 updates of existing rows|SELECT length(lww_apply(j)::text) FROM sets WHERE kind = 'update';" \
         "apply 10 000 new child rows (foreign key)|SELECT length(lww_apply(j)::text) FROM sets WHERE kind = 'child';" \
         "... one of them without its parent (parked)|SELECT length(lww_apply(j)::text) FROM sets WHERE kind = 'orphan';" \
         "lww_changes of 10 000 rows (a pull)|SELECT length(lww_changes(0, 10000, 50000));"; do
    name=${c%%|*} sql=${c#*|}
    su=$(for _ in $(seq "$REPS"); do ms postgres "$sql"; done | median)
    ro=$(for _ in $(seq "$REPS"); do ms dev "$sql"; done | median)
    printf '%-44s %10s %10s %6.2fx\n' "$name" "$su" "$ro" "$(echo "$ro / $su" | bc -l)"
    [ "$name" = "apply 10 000 new rows" ] && apply_su=$su
done
# The target of issue 10: lww_apply of new rows within 4x a COPY of the
# same rows into an untracked table of the same shape and rows (and, for
# comparison, into the tracked table, whose capture trigger stamps them).
copy=$(for _ in $(seq "$REPS"); do ms postgres "COPY plain FROM '$D/rows.copy';"; done | median)
tracked=$(for _ in $(seq "$REPS"); do ms postgres "COPY t FROM '$D/rows.copy';"; done | median)
printf '%-44s %10s\n' "COPY of the 10 000 new rows, untracked" "$copy" "COPY of the same into the tracked t" "$tracked"
printf 'lww_apply of the 10 000 new rows (superuser) / COPY untracked: %.2fx\n' "$(echo "$apply_su / $copy" | bc -l)"
