-- api: the public SQL API of lwwsync in PostgreSQL.
-- Node ids, stamps and timestamps differ on every run: only facts derived from
-- them are printed. Change sequences are compared, not printed.
CREATE EXTENSION lwwsync;
SELECT lww_version();
SELECT current_database() AS main_db \gset

-- A change set without its stamps: one line per row change, column registers
-- reduced to [column, value].
CREATE FUNCTION cs_rows(cs text)
RETURNS TABLE(tbl text, key jsonb, gen int, row_reg boolean, cols jsonb)
LANGUAGE sql AS $$
    SELECT t->>'name', r->'key', (r->>'gen')::int, coalesce((r->>'row')::boolean, false),
           (SELECT jsonb_agg(jsonb_build_array(c->0, c->1) ORDER BY (c->>0)::int)
              FROM jsonb_array_elements(r->'cols') c)
    FROM jsonb_array_elements((cs::jsonb)->'tables') t, jsonb_array_elements(t->'rows') r
    ORDER BY 1, 2, 3
$$;
-- The error a statement raises, node ids masked; 'ok' when it succeeds.
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLERRM, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;

-- ---------------------------------------------------------------- node id
SELECT lww_node_id() IS NOT NULL AS has_id,
       lww_node_id()::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_v4,
       lww_node_id() = lww_node_id() AS same_twice;
SELECT lww_node_id() AS node_a \gset
\c
SELECT lww_node_id() = :'node_a' AS same_in_new_session;

-- ---------------------------------------------------------------- lww_track
CREATE TABLE items(id int PRIMARY KEY, name text, qty int, note text);
INSERT INTO items VALUES (1, 'apple', 5, NULL), (2, 'pear', 3, 'ripe');
SELECT lww_track('items');          -- the two rows already there get stamps
SELECT name, key_columns, columns FROM lwwsync.tables;
SELECT * FROM cs_rows(lww_changes(0));
-- Idempotent: nothing new to stamp, nothing said.
SELECT lww_track('items');
SELECT count(*) FROM cs_rows(lww_changes(0));
SELECT tgname FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal ORDER BY 1;

-- Refusals.
\set VERBOSITY terse
CREATE TABLE nopk(a int, b text);
SELECT lww_track('nopk');
CREATE VIEW items_view AS SELECT * FROM items;
SELECT lww_track('items_view');
SELECT lww_track('no_such_table');
\set VERBOSITY default
SELECT count(*) AS tracked FROM lwwsync.tables;

-- Another schema, quoted names, a composite key: the wire name is
-- "schema.table" outside public.
CREATE SCHEMA inv;
CREATE TABLE inv.stock(sku text, site int, level int, PRIMARY KEY (site, sku));
INSERT INTO inv.stock VALUES ('A-1', 1, 10);
SELECT lww_track('inv.stock');
CREATE TABLE inv."Bin List"(id int PRIMARY KEY, label text);
SELECT lww_track('inv."Bin List"');
SET search_path = inv, public;
CREATE TABLE shelf(id int PRIMARY KEY, label text);
SELECT lww_track('shelf');          -- found through search_path, named inv.shelf
RESET search_path;
SELECT name, key_columns, columns FROM lwwsync.tables ORDER BY name;
SELECT lww_seq() AS s \gset
INSERT INTO inv.stock VALUES ('B-2', 2, 20);
INSERT INTO inv."Bin List" VALUES (1, 'top');
SELECT * FROM cs_rows(lww_changes(:s));

-- ---------------------------------------------------------------- triggers
-- INSERT: a new row at generation 1 with every column.
SELECT lww_seq() AS s \gset
INSERT INTO items VALUES (3, 'plum', 7, NULL);
SELECT * FROM cs_rows(lww_changes(:s));
-- UPDATE: only the columns whose value changed (IS DISTINCT FROM).
SELECT lww_seq() AS s \gset
UPDATE items SET name = 'apple', qty = 6 WHERE id = 1;
SELECT * FROM cs_rows(lww_changes(:s));
SELECT lww_seq() AS s \gset
UPDATE items SET note = NULL WHERE id = 1;      -- NULL to NULL: no change
UPDATE items SET qty = qty WHERE id = 3;        -- same value: no change
SELECT lww_seq() = :s AS nothing_stamped;
SELECT * FROM cs_rows(lww_changes(:s));
UPDATE items SET note = 'sweet' WHERE id IN (1, 3);
SELECT * FROM cs_rows(lww_changes(:s));
-- DELETE: the row register at generation 2, no columns.
SELECT lww_seq() AS s \gset
DELETE FROM items WHERE id = 2;
SELECT * FROM cs_rows(lww_changes(:s));
-- Re-insert of a deleted key: generation 3, every column again.
SELECT lww_seq() AS s \gset
INSERT INTO items VALUES (2, 'pear', 4, NULL);
SELECT * FROM cs_rows(lww_changes(:s));
-- Key change: a delete of the old key and an insert of the new one.
SELECT lww_seq() AS s \gset
UPDATE items SET id = 10 WHERE id = 3;
SELECT * FROM cs_rows(lww_changes(:s));
SELECT lww_seq() AS s \gset
UPDATE inv.stock SET site = 3 WHERE sku = 'A-1';
SELECT * FROM cs_rows(lww_changes(:s));
-- Stamps: the row's base stamp is a decimal string, node index 0 = origin.
SELECT r->'stamp'->>0 ~ '^[0-9]+$' AS hlc_is_decimal_string,
       (r->'stamp'->>0)::numeric > ((extract(epoch FROM now()) * 1000 - 60000)::bigint::numeric * 65536) AS hlc_is_recent,
       r->'stamp'->1 AS node_index,
       (cs::jsonb)->'nodes'->>0 = :'node_a' AS node0_is_origin,
       (cs::jsonb)->>'origin' = :'node_a' AS origin_is_self
FROM (SELECT lww_changes(:s) AS cs) c,
     jsonb_array_elements((cs::jsonb)->'tables'->0->'rows') r
ORDER BY r->'key'->>1;
-- The whole text of a change set is real text (usable by any SQL function).
SELECT lww_changes(0) ~ '^\{"format":"lwwsync\.changeset","version":1,' AS starts_right,
       md5(lww_changes(0)) = md5(lww_changes(0) || '') AS stable_text;

-- ---------------------------------------------------------------- lww_changes
SELECT cs::jsonb - 'tables' - 'nodes' - 'origin' - 'upto' AS envelope,
       (cs::jsonb)->>'upto' = lww_seq()::text AS upto_is_last_sequence,
       jsonb_array_length((cs::jsonb)->'tables') AS tables
FROM (SELECT lww_changes(0) AS cs) c;
SELECT count(*) FROM cs_rows(lww_changes(lww_seq()));    -- nothing after the last sequence
SELECT (lww_changes(lww_seq())::jsonb)->'tables' AS empty_tables;

-- Paging: lww_changes(since, max_rows) cuts the batch after max_rows rows;
-- "complete": false says more follows. The next page passes the same since
-- and after = the previous upto.
CREATE TABLE pages(id int PRIMARY KEY, v text);
SELECT lww_track('pages');
SELECT lww_seq() AS p0 \gset
INSERT INTO pages SELECT g, 'v' || g FROM generate_series(1, 5) g;
UPDATE pages SET v = 'w1' WHERE id = 1;        -- row 1 now ends after row 5
SELECT lww_changes(:p0, 2) AS pg1 \gset
SELECT (:'pg1'::jsonb)->'complete' AS complete, (:'pg1'::jsonb)->>'after' AS after,
       ((:'pg1'::jsonb)->>'upto')::bigint < lww_seq() AS upto_before_end;
SELECT key, gen, row_reg, cols FROM cs_rows(:'pg1');
SELECT lww_changes(:p0, 2, ((:'pg1'::jsonb)->>'upto')::bigint) AS pg2 \gset
SELECT (:'pg2'::jsonb)->'complete' AS complete, (:'pg2'::jsonb)->>'after' = (:'pg1'::jsonb)->>'upto' AS after_is_prev_upto;
SELECT key, gen, row_reg, cols FROM cs_rows(:'pg2');
SELECT lww_changes(:p0, 2, ((:'pg2'::jsonb)->>'upto')::bigint) AS pg3 \gset
SELECT (:'pg3'::jsonb)->'complete' AS complete, (:'pg3'::jsonb)->>'upto' = lww_seq()::text AS upto_is_end;
SELECT key, gen, row_reg, cols FROM cs_rows(:'pg3');
SELECT lww_changes(:p0, 100) AS pg_all \gset
SELECT (:'pg_all'::jsonb) ? 'complete' AS has_complete, count(*) AS rows FROM cs_rows(:'pg_all');
\set VERBOSITY terse
SELECT lww_changes(-1);
SELECT lww_changes(0, 0);
SELECT lww_changes(5, 1, 4);
\set VERBOSITY default

-- ---------------------------------------------------------------- lww_apply
-- A change set from another node, written by hand.
SELECT ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text AS hlc \gset
SELECT lww_seq() AS s \gset
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000b1","since":"0","upto":"3",
  "nodes":["00000000-0000-4000-8000-0000000000b1"],
  "tables":[{"name":"items","key":["id"],"columns":["name","qty","note"],"rows":[
    {"key":[20],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"fig"],[1,1],[2,null]]},
    {"key":[1],"gen":1,"stamp":["%s",0],"cols":[[2,"from b1"]]}]}]}', :'hlc', :'hlc'));
SELECT * FROM items ORDER BY id;
-- Merged registers take local sequences, so they flow on to other peers...
SELECT * FROM cs_rows(lww_changes(:s));
-- ...and keep the stamps and node they came with.
SELECT (cs::jsonb)->'nodes' ? '00000000-0000-4000-8000-0000000000b1' AS keeps_origin_node
FROM (SELECT lww_changes(:s) AS cs) c;
SELECT idx > 0 AS interned, id FROM lwwsync.nodes WHERE id = '00000000-0000-4000-8000-0000000000b1';
-- The same set again: idempotent, everything ignored as not newer.
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000b1","since":"0","upto":"3",
  "nodes":["00000000-0000-4000-8000-0000000000b1"],
  "tables":[{"name":"items","key":["id"],"columns":["name","qty","note"],"rows":[
    {"key":[20],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"fig"],[1,1],[2,null]]},
    {"key":[1],"gen":1,"stamp":["%s",0],"cols":[[2,"from b1"]]}]}]}', :'hlc', :'hlc'));
-- An older stamp loses to what the row holds; a delete (gen 2) wins the row.
SELECT lww_apply('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000b1","since":"0","upto":"4",
  "nodes":["00000000-0000-4000-8000-0000000000b1"],
  "tables":[{"name":"items","key":["id"],"columns":["qty"],"rows":[
    {"key":[1],"gen":1,"stamp":["65536",0],"cols":[[0,999]]},
    {"key":[20],"gen":2,"stamp":["65536",0],"row":true}]}]}');
SELECT * FROM items ORDER BY id;
-- Local writes after a merge stamp above it (the clock moved past every stamp seen).
SELECT lww_seq() AS s \gset
UPDATE items SET qty = 60 WHERE id = 1;
SELECT (r->'stamp'->>0)::numeric > :'hlc'::numeric AS local_after_merged
FROM jsonb_array_elements((lww_changes(:s)::jsonb)->'tables'->0->'rows') r;
-- An empty change set is fine.
SELECT lww_apply('{"format":"lwwsync.changeset","version":1,
  "origin":"00000000-0000-4000-8000-0000000000b1","since":"0","upto":"0","nodes":[],"tables":[]}');

-- ---------------------------------------------------------------- lww_exchange
-- One round trip: the caller pushes its batch and gets what it lacks.
SELECT ((extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16)::text AS hlc \gset
SELECT lww_exchange(format('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000c1","received":"0","limit":1000,
  "push":{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000c1",
    "since":"0","upto":"7","nodes":["00000000-0000-4000-8000-0000000000c1"],
    "tables":[{"name":"items","key":["id"],"columns":["name","qty","note"],"rows":[
      {"key":[30],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"kiwi"],[1,2],[2,"from c1"]]}]}]}}', :'hlc')::json)
  AS resp \gset
SELECT (:'resp'::jsonb)->>'format' AS format, (:'resp'::jsonb)->'version' AS version,
       (:'resp'::jsonb)->>'node' = :'node_a' AS node_is_server,
       (:'resp'::jsonb)->>'acked' AS acked,
       (:'resp'::jsonb)->'applied' AS applied;
-- The pull holds every row the caller lacks, and not the row it pushed.
SELECT tbl, key, gen, row_reg FROM cs_rows((:'resp'::jsonb)->>'pull') WHERE tbl = 'items';
SELECT tbl, key, gen, row_reg, cols FROM cs_rows(((:'resp'::jsonb)->'pull')::text) WHERE key = '[30]';
SELECT * FROM items WHERE id = 30;
SELECT received, floor, synced_at IS NOT NULL AS synced FROM lwwsync.peers
WHERE node = '00000000-0000-4000-8000-0000000000c1';
-- The next round trip from the caller's cursor: nothing new either way.
SELECT lww_exchange(format('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000c1","received":"%s","limit":1000}',
  (:'resp'::jsonb)->'pull'->>'upto')::json) AS resp2 \gset
SELECT (:'resp2'::jsonb)->>'acked' AS acked, (:'resp2'::jsonb) ? 'applied' AS applied,
       (:'resp2'::jsonb)->'pull'->'tables' AS pull_tables;
-- A limit cuts the pull.
SELECT (lww_exchange('{"format":"lwwsync.exchange","version":1,
  "node":"00000000-0000-4000-8000-0000000000c2","received":"0","limit":2}')::jsonb)->'pull'->'complete' AS complete;

-- ---------------------------------------------------------------- lww_sync
-- Two databases of one instance, over postgresql://.
CREATE DATABASE lww_api_peer;
SELECT 'postgresql:///lww_api_peer?host=' || current_setting('unix_socket_directories')
       || '&port=' || current_setting('port') AS url_peer,
       'postgresql:///' || current_database() || '?host=' || current_setting('unix_socket_directories')
       || '&port=' || current_setting('port') AS url_main \gset
\c lww_api_peer
CREATE EXTENSION lwwsync;
SELECT lww_node_id() AS node_b \gset
SELECT :'node_b' <> :'node_a' AS distinct_nodes;
CREATE TABLE items(id int PRIMARY KEY, name text, qty int, note text);
INSERT INTO items VALUES (100, 'from peer', 1, NULL);
SELECT lww_track('items');
CREATE SCHEMA inv;
CREATE TABLE inv.stock(sku text, site int, level int, PRIMARY KEY (site, sku));
CREATE TABLE inv."Bin List"(id int PRIMARY KEY, label text);
CREATE TABLE inv.shelf(id int PRIMARY KEY, label text);
CREATE TABLE pages(id int PRIMARY KEY, v text);
SELECT lww_track('inv.stock'), lww_track('inv."Bin List"'), lww_track('inv.shelf'), lww_track('pages');
\c :main_db
SELECT lww_sync(:'url_peer') AS stats \gset
-- applied = registers that changed the receiving side.
SELECT (:'stats'::jsonb)->>'peer' = :'node_b' AS peer_named,
       (:'stats'::jsonb)->'sent'->'applied' AS sent_applied,
       (:'stats'::jsonb)->'received'->'applied' AS received_applied,
       ((:'stats'::jsonb)->>'batches')::int >= 2 AS batches_ok;
SELECT * FROM items ORDER BY id;
SELECT * FROM inv.stock ORDER BY site, sku;
SELECT node = :'node_b' AS peer, received > 0 AS has_cursor, synced_at IS NOT NULL AS synced
FROM lwwsync.peers WHERE node = :'node_b';
\c lww_api_peer
SELECT * FROM items ORDER BY id;
SELECT * FROM inv.stock ORDER BY site, sku;
SELECT node = :'node_a' AS peer, received > 0 AS has_cursor, synced_at IS NOT NULL AS synced
FROM lwwsync.peers ORDER BY node = :'node_a' DESC;
-- Concurrent edits to different columns of one row both survive; a delete
-- beats a concurrent update; the sync runs the other way round.
UPDATE items SET qty = 11 WHERE id = 1;
UPDATE items SET name = 'kiwi (peer)' WHERE id = 30;
\c :main_db
UPDATE items SET note = 'main' WHERE id = 1;
DELETE FROM items WHERE id = 30;
\c lww_api_peer
SELECT lww_sync(:'url_main') AS stats \gset
SELECT (:'stats'::jsonb)->>'peer' = :'node_a' AS peer_named,
       (:'stats'::jsonb)->'sent'->'applied' AS sent_applied,
       (:'stats'::jsonb)->'received'->'applied' AS received_applied;
SELECT * FROM items ORDER BY id;
\c :main_db
SELECT * FROM items ORDER BY id;
-- Up to date: a sync moves nothing.
SELECT s->'sent' AS sent, s->'received' AS received FROM lww_sync(:'url_peer') s;
-- The cursors hold: one new row on the peer is the one row that travels.
\c lww_api_peer
INSERT INTO items VALUES (101, 'one more', 1, NULL);
\c :main_db
SELECT s->'sent' AS sent, s->'received' AS received FROM lww_sync(:'url_peer') s;
SELECT * FROM items WHERE id = 101;
-- Writing over a write already received is no conflict (sent.overwrote 0),
-- over one not received yet it is (1). A Postgres client pushes everything
-- before it pulls: its pushes still tell the server what it holds of it.
UPDATE items SET note = 'main, after receiving 101' WHERE id = 101;
SELECT s->'sent'->'applied' AS applied, s->'sent'->'overwrote' AS overwrote FROM lww_sync(:'url_peer') s;
\c lww_api_peer
UPDATE items SET note = 'peer, not sent yet' WHERE id = 101;
SELECT pg_sleep(0.01);
\c :main_db
UPDATE items SET note = 'main, over the peer''s unsent write' WHERE id = 101;
SELECT s->'sent'->'applied' AS applied, s->'sent'->'overwrote' AS overwrote FROM lww_sync(:'url_peer') s;
\set VERBOSITY terse
SELECT lww_sync('ftp://example.invalid/x');
SELECT lww_sync(:'url_peer', '{"batch_rows": 0}');
\set VERBOSITY default
SELECT try(format('SELECT lww_sync(%L)', :'url_main')) AS sync_with_itself;
SELECT try(format('SELECT lww_sync(%L)', replace(:'url_peer', 'lww_api_peer', 'lww_no_such_db')))
       ~ '^lww_sync: cannot connect to peer: .*database "lww_no_such_db" does not exist' AS unreachable_peer;
-- Small batches give the same result. (Progress NOTICEs, every 10th round
-- trip, carry timings: muted here.)
INSERT INTO items SELECT g, 'bulk', g, NULL FROM generate_series(200, 230) g;
SET client_min_messages = warning;
SELECT ((s->>'batches')::int) > 5 AS many_batches, s->'sent'->'rows' AS sent_rows
FROM lww_sync(:'url_peer', '{"batch_rows": 4}') s;
SELECT count(*), sum(qty) FROM items WHERE id >= 200;
\c lww_api_peer
SELECT count(*), sum(qty) FROM items WHERE id >= 200;
SELECT md5(string_agg(format('%s|%s|%s|%s', id, name, qty, note), ',' ORDER BY id)) AS peer_items FROM items \gset
\c :main_db
SELECT md5(string_agg(format('%s|%s|%s|%s', id, name, qty, note), ',' ORDER BY id)) = :'peer_items' AS same_items FROM items;

-- ---------------------------------------------------------------- TRUNCATE
\set VERBOSITY terse
TRUNCATE items;
\set VERBOSITY default
SELECT count(*) FROM items;

-- ---------------------------------------------------------------- lww_untrack
SELECT lww_untrack('pages');
SELECT lww_untrack('pages');        -- not tracked (any more): false
SELECT count(*) FROM pages;         -- the data stays
SELECT tgname FROM pg_trigger WHERE tgrelid = 'pages'::regclass AND NOT tgisinternal;
SELECT lww_seq() AS s \gset
INSERT INTO pages VALUES (6, 'untracked');
SELECT lww_seq() = :s AS not_stamped;
SELECT name FROM lwwsync.tables ORDER BY name;
TRUNCATE pages;                     -- allowed again
-- Tracking it again resumes from the metadata lww_untrack kept: the row present
-- is written anew, the rows truncated meanwhile are recorded as deletes.
INSERT INTO pages VALUES (1, 'again');
SELECT lww_track('pages');
SELECT key, gen, row_reg, cols FROM cs_rows(lww_changes(0)) WHERE tbl = 'pages';

DROP DATABASE lww_api_peer;
