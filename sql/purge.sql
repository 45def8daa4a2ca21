-- purge: tombstones older than the horizon go (lww_purge, and by themselves
-- during sync); a caller whose cursor is older than the highest purged
-- sequence re-snapshots first (docs/PROTOCOL.md, "Purge and re-snapshot").
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS lwwsync CASCADE;
RESET client_min_messages;
CREATE EXTENSION lwwsync;
CREATE TABLE pt(id int PRIMARY KEY, v text);
SELECT lww_track('pt');
INSERT INTO pt SELECT g, 'v' || g FROM generate_series(1, 6) g;
DELETE FROM pt WHERE id IN (1, 2);
SELECT format('lwwsync.%I', 'm_' || 'pt'::regclass::oid) AS meta \gset
SELECT count(*) FILTER (WHERE lwwsync.meta_gen(st) % 2 = 0) AS tombstones, count(*) AS meta_rows FROM :meta;

-- The default horizon is 30 days: nothing that young goes.
SELECT lww_config('tombstone_ttl_ms');
SELECT lww_purge() AS purged_default, lww_purge(3600000) AS purged_hour;
SELECT lww_purge(0) AS purged_all;
SELECT count(*) FILTER (WHERE lwwsync.meta_gen(st) % 2 = 0) AS tombstones, count(*) AS meta_rows FROM :meta;
SELECT lww_purge(0) AS purged_again;
SELECT (SELECT value::bigint FROM lwwsync.state WHERE key = 'purged_upto') AS horizon \gset
SELECT :horizon > 0 AS has_horizon, :horizon <= lww_seq() AS within_sequences;
SELECT lww_purge(-1);
SELECT lww_config('tombstone_ttl_ms', -1);

-- A caller whose cursor is older than the horizon: told to re-snapshot
-- (nothing pulled, nothing applied), or refused when it does not know the rule.
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","received":"1","horizon":"0"}')::jsonb AS resp \gset
SELECT (:'resp'::jsonb)->'resnapshot' AS resnapshot, (:'resp'::jsonb) ? 'pull' AS pulled,
       ((:'resp'::jsonb)->>'horizon')::bigint = :horizon AS states_horizon;
DO $$ BEGIN
    PERFORM lww_exchange('{"format":"lwwsync.exchange","version":1,
      "node":"00000000-0000-4000-8000-0000000000d1","received":"1"}');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE '%', regexp_replace(SQLERRM, 'horizon [0-9]+', 'horizon H');
END $$;
-- Reconciled against the horizon: served as usual.
SELECT (lww_exchange(format('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","received":"1","horizon":"%s"}', :horizon)::json)::jsonb) ? 'pull' AS pulled;
-- A fresh caller (cursor 0) reconciles nothing and says so.
SELECT (lww_exchange(format('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d2","received":"0","horizon":"%s"}', :horizon)::json)::jsonb) ? 'pull' AS pulled;

-- The re-snapshot's question: which of these rows does the server hold
-- (a row or a tombstone)? The indexes of those it does not.
SELECT (lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","probe":{"table":"pt","keys":[[1],[3],[7],[2]]}}')::jsonb)->'absent' AS absent;
SELECT (lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","probe":{"table":"elsewhere","keys":[[1]]}}')::jsonb)->'absent' AS absent_unknown_table;
-- Which keys exist is told only to callers that may read the table and
-- whom no row-level security limits: others keep their rows.
CREATE ROLE regress_purge_blind;
SET ROLE regress_purge_blind;
SELECT (lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d9","probe":{"table":"pt","keys":[[1],[3],[7],[2]]}}')::jsonb)->'absent' AS absent_without_select;
RESET ROLE;
DROP ROLE regress_purge_blind;
-- Hostile probes are refused whole.
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","probe":{"table":"pt","keys":[[1,2]]}}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","probe":{"table":"pt","keys":[["one"]]}}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","probe":{"table":"pt","keys":[[null]]}}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","received":"0","probe":{"table":"pt","keys":[]}}');
SELECT lww_exchange(format('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","probe":{"table":"pt","keys":[%s]}}',
  (SELECT string_agg('[' || g || ']', ',') FROM generate_series(0, 10000) g))::json);

-- A purged key inserted again starts above the purged generation: a peer
-- may still hold the row at it (row by row and per statement;
-- a key never seen starts there too: the floor is the table's).
INSERT INTO pt VALUES (1, 'again');
INSERT INTO pt VALUES (2, 'again'), (7, 'new');
SELECT k0 AS id, lwwsync.meta_gen(st) AS gen FROM :meta WHERE k0 IN (1, 2, 7) ORDER BY k0;
DELETE FROM pt WHERE id IN (1, 2, 7);

-- During sync: a pushing round trip purges what is past tombstone_ttl_ms
-- (here: everything), after its batch landed.
DELETE FROM pt WHERE id = 3;
SELECT lww_config('tombstone_ttl_ms', 0);
SELECT ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text AS hlc \gset
SELECT (lww_exchange(format('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d3","received":"0","horizon":"%s",
  "push":{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000d3",
    "since":"0","upto":"1","nodes":["00000000-0000-4000-8000-0000000000d3"],
    "tables":[{"name":"pt","key":["id"],"columns":["v"],"rows":[
      {"key":[40],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"from d3"]]}]}]}}', :horizon, :'hlc')::json)::jsonb)->'applied'->'applied' AS applied;
SELECT count(*) FILTER (WHERE lwwsync.meta_gen(st) % 2 = 0) AS tombstones_left FROM :meta;
SELECT (SELECT value::bigint FROM lwwsync.state WHERE key = 'purged_upto') > :horizon AS horizon_rose;
SELECT * FROM pt ORDER BY id;
-- Its generation 1 was below the floor of the table (2: keys 1 and 2 were
-- purged): the insert was adopted after the floor, stamped here, so it
-- travels back whole to its sender too.
SELECT k0 AS id, f.gen, f.node = 0 AS stamped_here FROM :meta, lwwsync.meta_fields(st) f WHERE k0 = 40;
SELECT lww_config('tombstone_ttl_ms', 2592000000);
-- An insert whose sender left a column out (a register stamped here, which
-- a feed never sends back) is adopted whole: that column is stamped here
-- too (no register apart from the row's) and goes out with its DEFAULT.
SELECT value AS horizon_now FROM lwwsync.state WHERE key = 'purged_upto' \gset
SELECT (lww_exchange(format('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d4","received":"0","horizon":"%s",
  "push":{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000d4",
    "since":"0","upto":"1","nodes":["00000000-0000-4000-8000-0000000000d4"],
    "tables":[{"name":"pt","key":["id"],"columns":["v"],"rows":[
      {"key":[41],"gen":1,"stamp":["%s",0],"row":true,"cols":[]}]}]}}', :'horizon_now', :'hlc')::json)::jsonb)->'applied'->'applied' AS applied;
SELECT k0 AS id, f.gen, f.node = 0 AS stamped_here, coalesce(length(f.cols), 0) AS column_registers_apart
  FROM :meta, lwwsync.meta_fields(st) f WHERE k0 IN (40, 41) ORDER BY k0;
SELECT * FROM pt WHERE id = 41;

-- Pushes from below the floor that are not an insert resurrect nothing: a
-- column change of a key this database purged is lost (no partial row), a
-- delete of one is kept as a tombstone.
SELECT (SELECT value::bigint FROM lwwsync.state WHERE key = 'purged_upto') AS horizon \gset
SELECT (lww_exchange(format('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d3","horizon":"%s",
  "push":{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000d3",
    "since":"1","upto":"3","nodes":["00000000-0000-4000-8000-0000000000d3"],
    "tables":[{"name":"pt","key":["id"],"columns":["v"],"rows":[
      {"key":[1],"gen":1,"stamp":["%s",0],"cols":[[0,"edited offline"]]},
      {"key":[2],"gen":2,"stamp":["%s",0],"row":true}]}]}}', :horizon, :'hlc', :'hlc')::json)::jsonb)->'applied' AS applied;
SELECT count(*) AS rows_1_2, (SELECT string_agg(k0 || '@' || lwwsync.meta_gen(st), ',' ORDER BY k0) FROM :meta WHERE k0 IN (1, 2)) AS meta_1_2 FROM pt WHERE id IN (1, 2);

-- A probe with the caller's generations: a key held here only at a lower
-- generation than the caller's (deleted here, purged, inserted again) is
-- absent for it; hostile generations are refused.
SELECT (lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","probe":{"table":"pt","keys":[[40],[40],[5]],"gens":[3,5,1]}}')::jsonb)->'absent' AS absent_by_generation;
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","probe":{"table":"pt","keys":[[40]],"gens":[0]}}');
SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000d1","probe":{"table":"pt","keys":[[40]],"gens":[1,1]}}');

-- Only whom the database's owner grants it may purge.
CREATE ROLE regress_purge_nobody;
SET ROLE regress_purge_nobody;
SELECT lww_purge(0);
RESET ROLE;
DROP ROLE regress_purge_nobody;
SELECT lww_untrack('pt');
DROP TABLE pt;
