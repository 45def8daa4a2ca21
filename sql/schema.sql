-- schema: ALTER TABLE and DROP TABLE of tracked tables (docs/SCHEMA.md).
-- The event trigger keeps lwwsync in step in the DDL's own transaction; no
-- write fails because of a DDL, a DDL on one table never touches another,
-- registers for tables and columns a peer lacks wait in lwwsync.pending
-- and land when it adds them; key changes are refused with a hint.
-- Two databases of their own, synced over postgresql://.
SELECT current_database() AS regress_db \gset
CREATE DATABASE lww_schema_main;
CREATE DATABASE lww_schema_peer;
\c lww_schema_main
CREATE EXTENSION lwwsync;
SELECT current_database() AS main_db \gset
SELECT 'postgresql:///lww_schema_peer?host=' || current_setting('unix_socket_directories')
       || '&port=' || current_setting('port') AS url_peer \gset
CREATE FUNCTION schema_registers(tbl text) RETURNS text LANGUAGE sql AS $$
    SELECT array_to_string(columns, ',') || ' @ ' || array_to_string(attnums, ',') FROM lwwsync.tables WHERE name = tbl
$$;
-- Rows of a change set, stamps left out.
CREATE FUNCTION schema_cs_rows(cs text) RETURNS TABLE(tbl text, key jsonb, row_reg boolean, cols jsonb) LANGUAGE sql AS $$
    SELECT t->>'name', r->'key', coalesce((r->>'row')::boolean, false),
           (SELECT jsonb_agg(jsonb_build_array(t->'columns'->((c->>0)::int), c->1) ORDER BY c->>0)
              FROM jsonb_array_elements(r->'cols') c)
      FROM jsonb_array_elements(cs::jsonb->'tables') t, jsonb_array_elements(t->'rows') r ORDER BY 1, 2
$$;

CREATE TABLE doc(id int PRIMARY KEY, title text, body text, note text);
CREATE TABLE other(id int PRIMARY KEY, v text);
SELECT lww_track('doc'), lww_track('other');
INSERT INTO doc VALUES (1, 't1', 'b1', 'n1'), (2, 't2', 'b2', 'n2');
INSERT INTO other VALUES (1, 'o1');
SELECT schema_registers('doc');

\c lww_schema_peer
CREATE EXTENSION lwwsync;
CREATE TABLE doc(id int PRIMARY KEY, title text, body text, note text);
CREATE TABLE other(id int PRIMARY KEY, v text);
SELECT lww_track('doc'), lww_track('other');
\c :main_db
SELECT s->'received'->'applied' AS received FROM lww_sync(:'url_peer') s;

-- ---------------------------------------------------------- DROP COLUMN
-- The register slot is retired: later registers move down one slot and keep their stamps.
UPDATE doc SET note = 'n1 edited' WHERE id = 1;
SELECT lww_seq() AS before_drop \gset
ALTER TABLE doc DROP COLUMN body;
SELECT schema_registers('doc');
-- Writes to this table and to every other go on.
INSERT INTO doc VALUES (3, 't3', 'n3');
UPDATE doc SET title = 't1 after drop' WHERE id = 1;
INSERT INTO other VALUES (2, 'o2');
SELECT * FROM schema_cs_rows(lww_changes(:before_drop));
-- The peer, still with "body", edits it: the registers wait in lwwsync.pending here.
\c lww_schema_peer
UPDATE doc SET body = 'peer body', title = 'peer title' WHERE id = 2;
\c :main_db
SELECT s->'sent' AS sent, s->'received' AS received FROM lww_sync(:'url_peer') s;
SELECT * FROM doc ORDER BY id;
SELECT tbl, columns, registers, role FROM lwwsync.pending;
\c lww_schema_peer
SELECT * FROM doc ORDER BY id;
ALTER TABLE doc DROP COLUMN body;
\c :main_db

-- ---------------------------------------------------- RENAME, ALTER TYPE
ALTER TABLE doc RENAME COLUMN title TO heading;
ALTER TABLE doc ALTER COLUMN note TYPE varchar(40);
SELECT schema_registers('doc');
UPDATE doc SET heading = 'renamed' WHERE id = 3;
SELECT * FROM doc ORDER BY id;
\c lww_schema_peer
ALTER TABLE doc RENAME COLUMN title TO heading;
\c :main_db
SELECT lww_sync(:'url_peer') IS NOT NULL AS synced;
\c lww_schema_peer
SELECT * FROM doc ORDER BY id;
\c :main_db

-- ------------------------------------------- ADD COLUMN ... DEFAULT, server first
-- Every living row gets the new register at the backfill stamp: the value
-- travels, and any real write of the column wins over it.
SELECT lww_seq() AS before_add \gset
ALTER TABLE doc ADD COLUMN prio int DEFAULT 42;
SELECT schema_registers('doc');
SELECT * FROM schema_cs_rows(lww_changes(:before_add));
SELECT DISTINCT coalesce(c->>2, r->'stamp'->>0)::bigint AS backfill_hlc FROM jsonb_array_elements(lww_changes(:before_add)::jsonb->'tables') t,
       jsonb_array_elements(t->'rows') r, jsonb_array_elements(r->'cols') c;
UPDATE doc SET prio = 5 WHERE id = 2;
-- A peer without the column keeps syncing and holds the registers.
SELECT s->'received' AS received FROM lww_sync(:'url_peer') s;
\c lww_schema_peer
SELECT tbl, columns, registers FROM lwwsync.pending ORDER BY id;
-- It upgrades and, before syncing, edits the new column: the held registers
-- land on the ALTER, and the edit beats the server's backfill.
ALTER TABLE doc ADD COLUMN prio int DEFAULT 42;
SELECT count(*) AS still_held FROM lwwsync.pending;
UPDATE doc SET prio = 7 WHERE id = 1;
SELECT * FROM doc ORDER BY id;
\c :main_db
SELECT lww_sync(:'url_peer') IS NOT NULL AS synced;
SELECT * FROM doc ORDER BY id;
\c lww_schema_peer
SELECT * FROM doc ORDER BY id;
\c :main_db

-- ------------------------------------------------- ADD COLUMN, client first
\c lww_schema_peer
ALTER TABLE doc ADD COLUMN tag text;
UPDATE doc SET tag = 'urgent' WHERE id = 1;
INSERT INTO doc VALUES (4, 'four', NULL, 1, 'new');
\c :main_db
-- The server takes the rest and holds "tag" (four rows: the update, the insert, two backfills).
SELECT s->'received'->'pending' AS held FROM lww_sync(:'url_peer') s;
SELECT * FROM doc ORDER BY id;
ALTER TABLE doc ADD COLUMN tag text;
SELECT count(*) AS still_held FROM lwwsync.pending WHERE tbl = 'doc' AND columns = '{tag}';
SELECT * FROM doc ORDER BY id;

-- ------------------------------------------------------ refused: the key
ALTER TABLE doc DROP CONSTRAINT doc_pkey;
ALTER TABLE doc ALTER COLUMN id TYPE bigint;
ALTER TABLE doc RENAME COLUMN id TO doc_id;
ALTER TABLE doc ADD COLUMN id2 int NOT NULL DEFAULT 0, DROP CONSTRAINT doc_pkey, ADD PRIMARY KEY (id, id2);
-- Nothing of them happened.
SELECT schema_registers('doc');
INSERT INTO doc VALUES (5, 'five', NULL, 1, NULL);

-- ----------------------------------------------------------- DROP TABLE
-- Untracked, its metadata dropped; the peer's registers for it wait here.
SELECT meta AS other_meta FROM lwwsync.tables WHERE name = 'other' \gset
DROP TABLE other;
SELECT count(*) AS tracked FROM lwwsync.tables WHERE name = 'other';
SELECT to_regclass(:'other_meta') IS NULL AS metadata_dropped;
\c lww_schema_peer
UPDATE other SET v = 'o1 from peer' WHERE id = 1;
\c :main_db
SELECT s->'received'->'pending' AS held FROM lww_sync(:'url_peer') s;
-- Created and tracked again, it takes what was held.
CREATE TABLE other(id int PRIMARY KEY, v text);
SELECT lww_track('other');
SELECT * FROM other ORDER BY id;
SELECT count(*) AS still_held FROM lwwsync.pending WHERE tbl = 'other';

-- ------------------------------------------------ trust and bounds
-- A caller (not a relay) may only bring its own registers into the pending store.
CREATE ROLE regress_schema_dev;
GRANT SELECT, INSERT, UPDATE, DELETE ON doc TO regress_schema_dev;
SET ROLE regress_schema_dev;
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000d1",
  "since":"0","upto":"1","tables":[{"name":"doc","key":["id"],"columns":["color"],"rows":[
   {"key":[1],"gen":1,"stamp":["%s",0],"cols":[[0,"mine"]]},
   {"key":[2],"gen":1,"stamp":["%s",1],"cols":[[0,"not mine"]]}]}],
  "nodes":["00000000-0000-4000-8000-0000000000d1","00000000-0000-4000-8000-0000000000d2"]}',
  (extract(epoch from now())::bigint * 1000) << 16, (extract(epoch from now())::bigint * 1000) << 16));
RESET ROLE;
SELECT tbl, columns, registers, role FROM lwwsync.pending WHERE origin = '00000000-0000-4000-8000-0000000000d1';
-- Bounded per origin node.
SELECT lww_config('pending_max_rows', 1);
SET ROLE regress_schema_dev;
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000d1",
  "since":"0","upto":"1","tables":[{"name":"doc","key":["id"],"columns":["color"],"rows":[
   {"key":[3],"gen":1,"stamp":["%s",0],"cols":[[0,"one too many"]]}]}],
  "nodes":["00000000-0000-4000-8000-0000000000d1"]}', (extract(epoch from now())::bigint * 1000) << 16));
RESET ROLE;
SELECT lww_config('pending_max_rows', 100000);
-- Held registers land with the rights of whoever runs the DDL.
ALTER TABLE doc ADD COLUMN color text;
SELECT id, color FROM doc ORDER BY id;
-- A held value the new column refuses stays held, with a warning; the ALTER stands.
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000d4",
  "since":"0","upto":"1","tables":[{"name":"doc","key":["id"],"columns":["size"],"rows":[
   {"key":[1],"gen":1,"stamp":["%1$s",0],"cols":[[0,"abc"]]}, {"key":[2],"gen":1,"stamp":["%1$s",0],"cols":[[0,"12"]]}]}],
  "nodes":["00000000-0000-4000-8000-0000000000d4"]}', (extract(epoch from now())::bigint * 1000) << 16)) -> 'pending' AS held;
ALTER TABLE doc ADD COLUMN size int;
SELECT id, size FROM doc WHERE id IN (1, 2) ORDER BY id;
SELECT tbl, columns FROM lwwsync.pending WHERE origin = '00000000-0000-4000-8000-0000000000d4';
-- A role that may not write the table when it appears cannot plant rows in it.
CREATE ROLE regress_schema_peek;
SET ROLE regress_schema_peek;
SELECT lww_apply(format('{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000d3",
  "since":"0","upto":"1","tables":[{"name":"later_t","key":["id"],"columns":["v"],"rows":[
   {"key":[1],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"planted"]]}]}],
  "nodes":["00000000-0000-4000-8000-0000000000d3"]}', (extract(epoch from now())::bigint * 1000) << 16));
RESET ROLE;
CREATE TABLE later_t(id int PRIMARY KEY, v text);
SELECT lww_track('later_t');
SELECT count(*) AS planted_rows FROM later_t;
SELECT count(*) AS still_held FROM lwwsync.pending WHERE tbl = 'later_t';

-- ------------------------------------------- re-tracking stamps only changes
-- lww_untrack remembers each row's values (hashed per register); lww_track
-- stamps only the registers that changed meanwhile, so a peer's newer write
-- to an unchanged column is never overwritten.
CREATE TABLE r(id int PRIMARY KEY, a text, b text);
SELECT lww_track('r');
INSERT INTO r VALUES (1, 'a1', 'b1'), (2, 'a2', 'b2'), (3, 'a3', 'b3');
SELECT lww_untrack('r');
UPDATE r SET a = 'a1 changed' WHERE id = 1;
UPDATE r SET b = b WHERE id = 2;
DELETE FROM r WHERE id = 3;
ALTER TABLE r ADD COLUMN c int DEFAULT 9;
ALTER TABLE r DROP COLUMN b;
SELECT lww_seq() AS before_retrack \gset
SELECT lww_track('r') AS stamped;
SELECT schema_registers('r');
-- Row 1: its changed column; rows 1 and 2: the new column at the backfill stamp; row 3: deleted.
SELECT * FROM schema_cs_rows(lww_changes(:before_retrack));
SELECT count(*) AS forgotten FROM lwwsync.untracked;

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE lww_schema_peer;
DROP DATABASE lww_schema_main;
DROP ROLE regress_schema_dev, regress_schema_peek;
RESET client_min_messages;
