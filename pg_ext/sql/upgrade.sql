-- upgrade: every released version updates in place to the current one, and
-- a fresh install (0.1 plus the upgrade chain: one source of truth) has the
-- same objects as an upgraded one.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS lwwsync CASCADE;
DROP SCHEMA IF EXISTS lwwsync CASCADE;
RESET client_min_messages;
CREATE ROLE regress_upg_reader;
CREATE FUNCTION members() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT pg_describe_object(classid, objid, 0) FROM pg_depend
     WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'lwwsync') AND deptype = 'e' ORDER BY 1
$$;

-- Fresh.
CREATE EXTENSION lwwsync;
SELECT extversion = lww_version() AS versions_agree, lww_version() FROM pg_extension WHERE extname = 'lwwsync';
CREATE TABLE fresh_members AS SELECT * FROM members();
DROP EXTENSION lwwsync;

-- From 0.1, with data: a tracked table, its metadata (readable by PUBLIC in
-- 0.1 and 0.2) and a peer's cursor.
CREATE EXTENSION lwwsync VERSION '0.1';
CREATE TABLE t(id int PRIMARY KEY, v text);
GRANT SELECT ON t TO regress_upg_reader;
SELECT lww_track('t');
INSERT INTO t VALUES (1, 'one'), (2, 'two');
SELECT format('lwwsync.%I', 'm_' || 't'::regclass::oid) AS meta \gset
-- (lww_track of 0.1 and 0.2 granted this; the code loaded now no longer does.)
GRANT SELECT ON :meta TO PUBLIC;
SELECT has_table_privilege('regress_upg_reader', :'meta', 'SELECT') AS meta_public_in_01;
INSERT INTO lwwsync.peers(node, received, floor) VALUES ('00000000-0000-4000-8000-0000000000ff', 7, 7);
ALTER EXTENSION lwwsync UPDATE TO '0.2';
ALTER EXTENSION lwwsync UPDATE TO '0.3';
ALTER EXTENSION lwwsync UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'lwwsync';
-- The same objects as a fresh install.
(SELECT * FROM members() EXCEPT SELECT * FROM fresh_members)
UNION ALL (SELECT * FROM fresh_members EXCEPT SELECT * FROM members());
-- Metadata is its owner's now; the data and the metadata survived.
SELECT has_table_privilege('regress_upg_reader', :'meta', 'SELECT') AS meta_public_in_03;
SELECT * FROM t ORDER BY id;
-- 0.5: captured per statement (transition tables, ALWAYS), row by row in
-- replica mode only, in which lww_apply writes (REPLICA).
SELECT tgname, tgenabled, tgtype & 1 = 1 AS per_row
  FROM pg_trigger WHERE tgrelid = 't'::regclass AND NOT tgisinternal ORDER BY 1;
SELECT jsonb_path_query_array(lww_changes(0)::jsonb, '$.tables[0].rows[*].key[0]') AS keys;
-- The 0.2 cursor waits, without a principal, for its node's principal to claim it.
SELECT node, role, subject, received FROM lwwsync.peers;
SELECT lww_seq() AS before \gset
UPDATE t SET v = 'uno' WHERE id = 1;
SELECT jsonb_path_query_array(lww_changes(:before)::jsonb, '$.tables[0].rows[*].key[0]') AS changed_after_upgrade;
-- 0.4: registers know their attributes, and the event trigger follows ALTER TABLE.
SELECT columns, attnums FROM lwwsync.tables WHERE name = 't';
ALTER TABLE t ADD COLUMN w text DEFAULT 'x';
ALTER TABLE t RENAME COLUMN v TO v2;
SELECT columns, attnums FROM lwwsync.tables WHERE name = 't';
SELECT lww_seq() AS before \gset
INSERT INTO t VALUES (3, 'three', 'y');
SELECT jsonb_path_query_array(lww_changes(:before)::jsonb, '$.tables[0].columns') AS columns_sent;
-- 0.6: the conflict log, readable by the database's owner.
SELECT has_table_privilege('regress_upg_reader', 'lww_conflicts', 'SELECT') AS reader_sees_conflicts;

-- A database not yet updated to 0.6 has no conflict log to switch on.
SET client_min_messages = warning;
DROP EXTENSION lwwsync CASCADE;
RESET client_min_messages;
CREATE EXTENSION lwwsync VERSION '0.5';
SELECT lww_config('conflict_log', 1);
ALTER EXTENSION lwwsync UPDATE;
SELECT lww_config('conflict_log', 1);
SELECT lww_config('conflict_log', 0);

SET client_min_messages = warning;
DROP EXTENSION lwwsync CASCADE;
RESET client_min_messages;
DROP TABLE t, fresh_members;
DROP FUNCTION members();
DROP ROLE regress_upg_reader;
CREATE EXTENSION lwwsync;
